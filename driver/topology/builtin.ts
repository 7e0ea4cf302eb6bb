/**
 * The built-in topology description of the 2020 draft (seed 001, "virtio-iommu on x86 and
 * non-devicetree platforms"): an array of items in the virtio-iommu device config space,
 * announced by `topo_config {offset, num_items, item_length}` right after `probe_size`.
 *
 * The draft put feature bit 6 (`F_TOPOLOGY`) and `topo_config` at config offset 36; the published
 * spec (virtio 1.3 §5.13.3, §5.13.4) later gave bit 6 to `F_BYPASS_CONFIG` and offset 36 to
 * `bypass`. A driver therefore has to be told which layout a device uses: {@link TopologyLayout}
 * is `"spec"` by default (no built-in topology) and `"draft"` when asked.
 *
 * Item layouts (little-endian, read with 32-bit accesses only):
 * ```
 * PCI_RANGE (type 1, 12 bytes): le16 type @0, le16 hierarchy @2, le16 requester_start @4,
 *                               le16 requester_end @6, le32 endpoint_start @8
 * ENDPOINT  (type 2, 16 bytes): le16 type @0, le16 reserved @2, le32 endpoint @4,
 *                               le64 address @8
 * ```
 *
 * @module
 */

import { hasFeature } from "../../spec/features.ts";
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER } from "../../spec/status.ts";
import type { Transport } from "../../transport/transport.ts";
import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";

/** Which config layout a virtio-iommu device uses: the published spec, or the 2020 draft. */
export type TopologyLayout = "spec" | "draft";

/** Draft feature bit `VIRTIO_IOMMU_F_TOPOLOGY` (seed 001); the spec reuses bit 6 for BYPASS_CONFIG. */
export const DRAFT_F_TOPOLOGY = 6n;
/** Draft config offset of `topo_config.offset` (le32): after `probe_size` at 32. */
export const DRAFT_TOPO_OFFSET = 36;
/** Draft config offset of `topo_config.num_items` (le32). */
export const DRAFT_TOPO_NUM_ITEMS = 40;
/** Draft config offset of `topo_config.item_length` (le32). */
export const DRAFT_TOPO_ITEM_LENGTH = 44;
/** Size of the draft `virtio_iommu_config`: 36 + 3 * 4. Items may not start before it. */
export const DRAFT_CONFIG_SIZE = 48;

/** Item type of a PCI range (seed 001 `VIRTIO_IOMMU_TOPO_PCI_RANGE`). */
export const TOPO_PCI_RANGE = 1;
/** Item type of a single MMIO endpoint (seed 001 `VIRTIO_IOMMU_TOPO_ENDPOINT`). */
export const TOPO_ENDPOINT = 2;
/** Size of a PCI_RANGE item: 4 × le16 + le32. */
export const TOPO_PCI_RANGE_SIZE = 12;
/** Size of an ENDPOINT item: 2 × le16 + le32 + le64. */
export const TOPO_ENDPOINT_SIZE = 16;
/** The driver reads at most this many bytes of an item (the size of the draft's item union). */
export const TOPO_MAX_ITEM_READ = 16;
/**
 * Default bound of the config window the items must lie in: 4 KiB, the size of a virtio-pci
 * device-config region in QEMU and of the MMIO register page (config at 0x100).
 */
export const DEFAULT_CONFIG_WINDOW = 0x1000;

/** Where a layout keeps `topo_config`, or `null` when the layout has no built-in topology. */
export interface BuiltinTopologyLocation {
  /** The feature bit that announces the topology. */
  featureBit: bigint;
  /** Config offset of `topo_config.offset`. */
  offsetField: number;
  /** Config offset of `topo_config.num_items`. */
  numItemsField: number;
  /** Config offset of `topo_config.item_length`. */
  itemLengthField: number;
}

/** Returns where `layout` keeps `topo_config`; `null` for `"spec"`, which has none. */
export function builtinTopologyLocation(layout: TopologyLayout): BuiltinTopologyLocation | null {
  if (layout === "spec") return null;
  return {
    featureBit: DRAFT_F_TOPOLOGY,
    offsetField: DRAFT_TOPO_OFFSET,
    numItemsField: DRAFT_TOPO_NUM_ITEMS,
    itemLengthField: DRAFT_TOPO_ITEM_LENGTH,
  };
}

/** A PCI_RANGE item: requester IDs `requesterStart..requesterEnd` of PCI domain `hierarchy`. */
export interface BuiltinPciRange {
  /** Discriminant. */
  kind: "pci-range";
  /** Index of the item in the array. */
  index: number;
  /** PCI domain (segment) number. */
  hierarchy: number;
  /** First requester ID (BDF), inclusive. */
  requesterStart: number;
  /** Last requester ID (BDF), inclusive. */
  requesterEnd: number;
  /** Endpoint ID of `requesterStart`. */
  endpointStart: number;
}

/** An ENDPOINT item: one MMIO device whose registers start at `address`. */
export interface BuiltinEndpoint {
  /** Discriminant. */
  kind: "endpoint";
  /** Index of the item in the array. */
  index: number;
  /** Endpoint ID. */
  endpoint: number;
  /** First MMIO address, low 32 bits. */
  addressLo: number;
  /** First MMIO address, high 32 bits. */
  addressHi: number;
  /** First MMIO address. */
  address: bigint;
}

/** One understood item of the built-in topology. */
export type BuiltinItem = BuiltinPciRange | BuiltinEndpoint;

/** The parsed built-in topology. */
export interface BuiltinTopology {
  /** The understood items, in array order (first match wins). */
  items: BuiltinItem[];
  /** How many items had an unknown type and were skipped. */
  skipped: number;
}

/** Options of {@link readBuiltinTopology}. */
export interface ReadBuiltinOptions {
  /** Size of the config window; every item must lie inside it. Default {@link DEFAULT_CONFIG_WINDOW}. */
  configSize?: number;
}

/** Reads one aligned 32-bit little-endian config field at `offset`. */
export type ReadConfig32 = (offset: number) => number;

/**
 * Reads the built-in topology through `readConfig32` (32-bit accesses only). Returns `null`
 * when the layout has none or any `topo_config` field is zero (seed 001: no topology).
 * Throws {@link TopologyError} for an item length not a multiple of 4, a misaligned offset, an
 * array that leaves the config window, a short item, or an inverted or overflowing range.
 *
 * @example
 * ```ts
 * import { readBuiltinTopology } from "@viommu/viommu";
 * const words = new Map([[36, 48], [40, 1], [44, 12], [48, 1], [52, 0x00ff_0000], [56, 0]]);
 * const topo = readBuiltinTopology((off) => words.get(off) ?? 0, "draft");
 * console.assert(topo?.items[0].kind === "pci-range");
 * ```
 */
export function readBuiltinTopology(
  readConfig32: ReadConfig32,
  layout: TopologyLayout,
  options: ReadBuiltinOptions = {},
): BuiltinTopology | null {
  const location = builtinTopologyLocation(layout);
  if (location === null) return null;
  const windowSize = options.configSize ?? DEFAULT_CONFIG_WINDOW;
  if (!Number.isInteger(windowSize) || windowSize < 0 || windowSize > 0xffff_ffff) {
    throw new RangeError(`Cannot read built-in topology: config size ${windowSize} is invalid`);
  }
  const offset = readConfig32(location.offsetField) >>> 0;
  const numItems = readConfig32(location.numItemsField) >>> 0;
  const itemLength = readConfig32(location.itemLengthField) >>> 0;
  // Seed 001: `if (!offset || !num_items || !item_length) return 0;` — no topology.
  if (offset === 0 || numItems === 0 || itemLength === 0) return null;

  if (itemLength % 4 !== 0) {
    throw new TopologyError(
      "builtin",
      "misaligned",
      `item_length ${itemLength} is not a multiple of 4 (items are read with 32-bit accesses)`,
    );
  }
  if (offset % 4 !== 0) {
    throw new TopologyError("builtin", "misaligned", `offset ${hex(offset)} is not 4-byte aligned`);
  }
  if (offset < DRAFT_CONFIG_SIZE) {
    throw new TopologyError(
      "builtin",
      "overrun",
      `offset ${hex(offset)} overlaps the config fields (items start at ${
        hex(DRAFT_CONFIG_SIZE)
      } or later)`,
    );
  }
  // Overflow guard: num_items * item_length can exceed 2^53, so divide instead of multiplying.
  if (offset > windowSize || numItems > Math.floor((windowSize - offset) / itemLength)) {
    throw new TopologyError(
      "builtin",
      "overrun",
      `${numItems} items of ${itemLength} bytes at ${hex(offset)} overrun the ${
        hex(windowSize)
      }-byte config window`,
    );
  }

  const items: BuiltinItem[] = [];
  let skipped = 0;
  const readLength = Math.min(itemLength, TOPO_MAX_ITEM_READ);
  const words = [0, 0, 0, 0];
  for (let index = 0; index < numItems; index++) {
    const base = offset + index * itemLength; // ≤ windowSize by the guard above
    for (let w = 0; w < 4; w++) {
      words[w] = w * 4 < readLength ? readConfig32(base + w * 4) >>> 0 : 0;
    }
    const type = words[0] & 0xffff;
    if (type === TOPO_PCI_RANGE) {
      items.push(decodePciRange(index, words, readLength));
    } else if (type === TOPO_ENDPOINT) {
      items.push(decodeEndpoint(index, words, readLength));
    } else {
      skipped++; // Unknown item types are skipped so newer devices still work.
    }
  }
  return { items, skipped };
}

function decodePciRange(index: number, words: number[], readLength: number): BuiltinPciRange {
  requireLength(index, "PCI_RANGE", TOPO_PCI_RANGE_SIZE, readLength);
  const item: BuiltinPciRange = {
    kind: "pci-range",
    index,
    hierarchy: words[0] >>> 16,
    requesterStart: words[1] & 0xffff,
    requesterEnd: words[1] >>> 16,
    endpointStart: words[2],
  };
  if (item.requesterStart > item.requesterEnd) {
    throw new TopologyError(
      "builtin",
      "invalid-range",
      `item ${index}: requester_start ${hex(item.requesterStart)} is after requester_end ${
        hex(item.requesterEnd)
      }`,
    );
  }
  if (item.endpointStart + (item.requesterEnd - item.requesterStart) > 0xffff_ffff) {
    throw new TopologyError(
      "builtin",
      "overflow",
      `item ${index}: endpoint IDs from ${hex(item.endpointStart)} overflow 32 bits`,
    );
  }
  return item;
}

function decodeEndpoint(index: number, words: number[], readLength: number): BuiltinEndpoint {
  requireLength(index, "ENDPOINT", TOPO_ENDPOINT_SIZE, readLength);
  return {
    kind: "endpoint",
    index,
    endpoint: words[1],
    addressLo: words[2],
    addressHi: words[3],
    address: (BigInt(words[3]) << 32n) | BigInt(words[2]),
  };
}

function requireLength(index: number, name: string, need: number, have: number): void {
  if (have < need) {
    throw new TopologyError(
      "builtin",
      "truncated",
      `item ${index}: a ${name} item needs ${need} bytes, item_length allows ${have}`,
    );
  }
}

/** A PCI function named by segment and requester ID, e.g. the IOMMU itself. */
export interface PciRequester {
  /** PCI segment (domain). */
  segment: number;
  /** Requester ID: bus << 8 | devfn. */
  rid: number;
}

/**
 * The endpoint ID of PCI requester `rid` in `segment`: the first PCI_RANGE that contains it
 * wins, endpoint = rid − requester_start + endpoint_start. Returns `null` when no item matches
 * or when the requester is `options.self`, the IOMMU (it never translates itself).
 */
export function builtinPciEndpoint(
  topology: BuiltinTopology,
  requester: PciRequester,
  options: { self?: PciRequester } = {},
): number | null {
  const self = options.self;
  if (self !== undefined && self.segment === requester.segment && self.rid === requester.rid) {
    return null;
  }
  for (const item of topology.items) {
    if (item.kind !== "pci-range") continue;
    if (
      item.hierarchy === requester.segment && requester.rid >= item.requesterStart &&
      requester.rid <= item.requesterEnd
    ) {
      return requester.rid - item.requesterStart + item.endpointStart;
    }
  }
  return null;
}

/** The endpoint ID of the MMIO device at `address` (first ENDPOINT item that matches), or `null`. */
export function builtinMmioEndpoint(topology: BuiltinTopology, address: bigint): number | null {
  for (const item of topology.items) {
    if (item.kind === "endpoint" && item.address === address) return item.endpoint;
  }
  return null;
}

/** Options of {@link probeBuiltinTopology}. */
export interface ProbeBuiltinOptions extends ReadBuiltinOptions {
  /** The device's config layout. Default `"spec"`, which has no built-in topology. */
  layout?: TopologyLayout;
  /** How many status reads to wait for a reset to complete. Default 1000. */
  resetPolls?: number;
  /** How many times to retry when the config generation changes during the read. Default 4. */
  generationRetries?: number;
}

/**
 * Reads the built-in topology early, before any driver owns the device (seed 001 review):
 * 1) reset, 2) ACKNOWLEDGE, 3) DRIVER (virtio 1.3 §3.1.1 steps 1–3), read the device features and,
 * if the draft `F_TOPOLOGY` bit is offered, the topology (retrying while the config generation
 * changes, virtio 1.3 §2.5.1), then reset again so the real driver starts from a clean device.
 * Returns `null` for the `"spec"` layout without touching the device, or when no topology is
 * offered.
 */
export function probeBuiltinTopology(
  transport: Transport,
  options: ProbeBuiltinOptions = {},
): BuiltinTopology | null {
  const layout = options.layout ?? "spec";
  const location = builtinTopologyLocation(layout);
  if (location === null) return null;
  const polls = options.resetPolls ?? 1000;
  const retries = options.generationRetries ?? 4;
  resetDevice(transport, polls); // 1) Reset the device.
  try {
    transport.setStatus(STATUS_ACKNOWLEDGE); // 2) The guest has noticed the device.
    transport.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER); // 3) It knows how to drive it.
    const features = transport.readDeviceFeatures();
    if (!hasFeature(features, location.featureBit)) return null;
    for (let attempt = 0;; attempt++) {
      const before = transport.configGeneration();
      const topology = readBuiltinTopology(
        (offset) => transport.readConfig32(offset),
        layout,
        options,
      );
      if (transport.configGeneration() === before) return topology;
      if (attempt >= retries) {
        throw new TopologyError(
          "builtin",
          "device",
          `config generation kept changing over ${attempt + 1} reads of the topology`,
        );
      }
    }
  } finally {
    resetDevice(transport, polls); // Leave the device as we found it: reset.
  }
}

/** Writes 0 to the status and waits until the device reads back 0 (virtio 1.3 §4.1.4.3.2). */
function resetDevice(transport: Transport, polls: number): void {
  transport.setStatus(0);
  for (let i = 0; i < polls; i++) {
    if (transport.getStatus() === 0) return;
  }
  throw new TopologyError(
    "builtin",
    "device",
    `reset did not complete after ${polls} status reads`,
  );
}
