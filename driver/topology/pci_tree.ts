/**
 * The PCI hierarchy as data: devices with their current (OS) bus numbers, the bridges that
 * link buses into trees, the requester ID each function presents and the DMA alias the IOMMU
 * actually sees (seed 002), and the bus-number-free path of every device (seed 000, VT-d §8.3.1:
 * root bus + devfn path) that survives bus renumbering.
 *
 * @module
 */

import { hex, hexDigits } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";
import {
  PCI_CAP_ID_EXP,
  PCI_CAP_WALK_LIMIT,
  PCI_CFG_CAPABILITIES,
  PCI_CFG_HEADER_SIZE,
  PCI_CFG_HEADER_TYPE,
  PCI_CFG_SECONDARY_BUS,
  PCI_CFG_STATUS,
  PCI_CFG_SUBCLASS,
  PCI_CFG_VENDOR,
  PCI_STATUS_CAP_LIST,
} from "../../spec/pci.ts";

/** What a PCI function is, as far as DMA topology cares. */
export type PciDeviceType =
  | "endpoint"
  | "host-bridge"
  | "root-port"
  | "switch-upstream"
  | "switch-downstream"
  | "pcie-to-pci-bridge"
  | "pci-to-pcie-bridge"
  | "pci-bridge";

/** Types that have a secondary bus. */
export const BRIDGE_TYPES: ReadonlySet<PciDeviceType> = new Set<PciDeviceType>([
  "root-port",
  "switch-upstream",
  "switch-downstream",
  "pcie-to-pci-bridge",
  "pci-to-pcie-bridge",
  "pci-bridge",
]);

/** One PCI function as described by the caller (or read from sysfs). */
export interface PciDevice {
  /** PCI segment (domain), 0..0xffff. */
  segment: number;
  /** Bus number in the current (OS) numbering, 0..255. */
  bus: number;
  /** Device << 3 | function, 0..255. */
  devfn: number;
  /** What the function is. */
  type: PciDeviceType;
  /** Whether the function has a PCI Express capability (informational). */
  isPcie?: boolean;
  /** Secondary bus number of a bridge (current numbering). Required for bridge types. */
  secondaryBus?: number;
}

/** A device placed in the tree. */
export interface PciNode extends PciDevice {
  /** `SSSS:BB:DD.F`. */
  readonly bdf: string;
  /** Requester ID in current numbering: bus << 8 | devfn. */
  readonly rid: number;
  /** The bridge whose secondary bus this device is on; `null` on a root bus. */
  readonly parent: PciNode | null;
  /** Number of the root bus at the top of this device's branch. */
  readonly rootBus: number;
  /** Devfns from the root bus down to this device (VT-d device-scope path). */
  readonly path: readonly number[];
}

/** The requester ID a device's DMA carries when it reaches the root (seed 002). */
export interface DmaAlias {
  /** Bus number (current numbering) of the alias. */
  bus: number;
  /** Devfn of the alias. */
  devfn: number;
  /** bus << 8 | devfn. */
  rid: number;
  /** The bus-number-free key of the alias bus, for mapping it to another numbering. */
  busKey: string;
  /** Bridges that replaced the requester ID on the way up, nearest first. */
  via: PciNode[];
}

/** Formats a PCI address as `SSSS:BB:DD.F`. */
export function formatBdf(segment: number, bus: number, devfn: number): string {
  const seg = hexDigits(segment, 4);
  const b = hexDigits(bus, 2);
  const d = hexDigits(devfn >> 3, 2);
  return `${seg}:${b}:${d}.${devfn & 7}`;
}

/** Parses `SSSS:BB:DD.F` or `BB:DD.F` (segment 0). Throws `TypeError` for anything else. */
export function parseBdf(text: string): { segment: number; bus: number; devfn: number } {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text);
  if (m === null) throw new TypeError(`Cannot parse PCI address "${text}": expected SSSS:BB:DD.F`);
  const device = parseInt(m[3], 16);
  if (device > 31) throw new TypeError(`Cannot parse PCI address "${text}": device ${device} > 31`);
  return {
    segment: m[1] === undefined ? 0 : parseInt(m[1], 16),
    bus: parseInt(m[2], 16),
    devfn: (device << 3) | parseInt(m[4], 10),
  };
}

/** Key of bus `bus` in `segment` in a given numbering (internal lookups). */
function busId(segment: number, bus: number): number {
  return segment * 256 + bus;
}

/**
 * A validated PCI hierarchy. Parents are found through bridges' secondary bus numbers; a bus
 * no bridge claims is a root bus. Duplicates, out-of-range numbers, bridges without a secondary
 * bus and cycles are rejected with {@link TopologyError}.
 */
export class PciTree {
  #nodes: PciNode[];
  #byAddress = new Map<number, PciNode>();
  #bridgeOfBus = new Map<number, PciNode>();
  #busByKey = new Map<string, number>();
  #byPath = new Map<string, PciNode>();

  /** Builds the tree from a flat device list (any order). */
  constructor(devices: readonly PciDevice[]) {
    for (const device of devices) {
      checkDevice(device);
      const address = busId(device.segment, device.bus) * 256 + device.devfn;
      if (this.#byAddress.has(address)) {
        throw new TopologyError(
          "pci",
          "duplicate",
          `${formatBdf(device.segment, device.bus, device.devfn)} is listed twice`,
        );
      }
      this.#byAddress.set(address, device as PciNode);
      if (BRIDGE_TYPES.has(device.type)) {
        const key = busId(device.segment, device.secondaryBus!);
        const other = this.#bridgeOfBus.get(key);
        if (other !== undefined) {
          throw new TopologyError(
            "pci",
            "duplicate",
            `${formatBdf(device.segment, device.bus, device.devfn)} and ${
              formatBdf(other.segment, other.bus, other.devfn)
            } both claim secondary bus ${hex(device.secondaryBus!)}`,
          );
        }
        this.#bridgeOfBus.set(key, device as PciNode);
      }
    }
    // Place every device: parent, root bus and devfn path, with cycle detection.
    const placed = new Map<PciDevice, PciNode>();
    const place = (device: PciDevice): PciNode => {
      const done = placed.get(device);
      if (done !== undefined) return done;
      const chain: PciDevice[] = [];
      let cursor: PciDevice | undefined = device;
      while (cursor !== undefined && !placed.has(cursor)) {
        if (chain.includes(cursor)) {
          throw new TopologyError(
            "pci",
            "loop",
            `bridges above ${formatBdf(device.segment, device.bus, device.devfn)} form a cycle`,
          );
        }
        chain.push(cursor);
        cursor = this.#bridgeOfBus.get(busId(cursor.segment, cursor.bus));
      }
      let parent: PciNode | null = cursor === undefined ? null : placed.get(cursor)!;
      for (let i = chain.length - 1; i >= 0; i--) {
        const d = chain[i];
        const node: PciNode = {
          ...d,
          bdf: formatBdf(d.segment, d.bus, d.devfn),
          rid: (d.bus << 8) | d.devfn,
          parent,
          rootBus: parent === null ? d.bus : parent.rootBus,
          path: parent === null ? [d.devfn] : [...parent.path, d.devfn],
        };
        placed.set(d, node);
        parent = node;
      }
      return placed.get(device)!;
    };
    this.#nodes = devices.map(place);
    this.#nodes.sort((a, b) => a.segment - b.segment || a.bus - b.bus || a.devfn - b.devfn);
    this.#byAddress.clear();
    this.#bridgeOfBus.clear();
    for (const node of this.#nodes) {
      this.#byAddress.set(busId(node.segment, node.bus) * 256 + node.devfn, node);
      if (BRIDGE_TYPES.has(node.type)) {
        this.#bridgeOfBus.set(busId(node.segment, node.secondaryBus!), node);
      }
    }
    for (const node of this.#nodes) {
      this.#byPath.set(this.pathKey(node), node);
      this.#busByKey.set(this.busKey(node.segment, node.bus), node.bus);
      if (BRIDGE_TYPES.has(node.type)) {
        this.#busByKey.set(this.busKey(node.segment, node.secondaryBus!), node.secondaryBus!);
      }
    }
  }

  /** All devices, sorted by segment, bus, devfn. */
  get devices(): readonly PciNode[] {
    return this.#nodes;
  }

  /** The device at (segment, bus, devfn) in current numbering, or `undefined`. */
  find(segment: number, bus: number, devfn: number): PciNode | undefined {
    return this.#byAddress.get(busId(segment, bus) * 256 + devfn);
  }

  /** The device named `SSSS:BB:DD.F`, or `undefined`. */
  get(bdf: string): PciNode | undefined {
    const { segment, bus, devfn } = parseBdf(bdf);
    return this.find(segment, bus, devfn);
  }

  /** The bridge whose secondary bus is `bus`, or `undefined` for a root bus. */
  bridgeOf(segment: number, bus: number): PciNode | undefined {
    return this.#bridgeOfBus.get(busId(segment, bus));
  }

  /**
   * The bus-number-free key of a bus: `SSSS:RR` for root bus RR, else the key of the bridge
   * that creates it plus `/DD.F` for each devfn on the path, e.g. `0000:00/1c.0/00.0>`.
   */
  busKey(segment: number, bus: number): string {
    const bridge = this.bridgeOf(segment, bus);
    if (bridge === undefined) return `${hexDigits(segment, 4)}:${hexDigits(bus, 2)}`;
    return `${this.pathKey(bridge)}>`;
  }

  /** The bus-number-free key of a device: its root bus and devfn path, e.g. `0000:00/1c.0/00.0`. */
  pathKey(node: PciNode): string {
    const steps = node.path.map((devfn) => `${hexDigits(devfn >> 3, 2)}.${devfn & 7}`);
    return `${hexDigits(node.segment, 4)}:${hexDigits(node.rootBus, 2)}/${steps.join("/")}`;
  }

  /** The device with path key `key`, or `undefined`. */
  findByPath(key: string): PciNode | undefined {
    return this.#byPath.get(key);
  }

  /** The number this tree gives the bus with key `key`, or `undefined` if it has no such bus. */
  busNumber(key: string): number | undefined {
    return this.#busByKey.get(key);
  }

  /**
   * The requester ID the IOMMU sees for `node`'s DMA (seed 002; Linux
   * `pci_for_each_dma_alias`): walking up, a PCIe-to-PCI bridge replaces it with
   * (its secondary bus, devfn 0); a conventional PCI bridge or PCI-to-PCIe bridge replaces it
   * with its own (bus, devfn); root ports and switch ports forward it unchanged.
   */
  dmaAlias(node: PciNode): DmaAlias {
    let bus = node.bus;
    let devfn = node.devfn;
    const via: PciNode[] = [];
    for (let bridge = node.parent; bridge !== null; bridge = bridge.parent) {
      if (bridge.type === "pcie-to-pci-bridge") {
        bus = bridge.secondaryBus!;
        devfn = 0;
        via.push(bridge);
      } else if (bridge.type === "pci-bridge" || bridge.type === "pci-to-pcie-bridge") {
        bus = bridge.bus;
        devfn = bridge.devfn;
        via.push(bridge);
      }
    }
    return { bus, devfn, rid: (bus << 8) | devfn, busKey: this.busKey(node.segment, bus), via };
  }
}

function checkDevice(device: PciDevice): void {
  const name = `${device.segment}/${device.bus}/${device.devfn}`;
  for (
    const [field, value, max] of [
      ["segment", device.segment, 0xffff],
      ["bus", device.bus, 0xff],
      ["devfn", device.devfn, 0xff],
    ] as const
  ) {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new TopologyError(
        "pci",
        "invalid-range",
        `device ${name}: ${field} ${value} is out of range`,
      );
    }
  }
  if (BRIDGE_TYPES.has(device.type)) {
    const secondary = device.secondaryBus;
    if (
      secondary === undefined || !Number.isInteger(secondary) || secondary < 0 || secondary > 0xff
    ) {
      throw new TopologyError(
        "pci",
        "invalid-range",
        `bridge ${formatBdf(device.segment, device.bus, device.devfn)} has no valid secondary bus`,
      );
    }
  }
}

/**
 * Classifies a function from its config-space bytes (64 bytes at least; 256 to see PCIe
 * capabilities, which sysfs only shows to root). Without a visible PCI Express capability a
 * type-1 header is taken for a conventional PCI bridge. Throws {@link TopologyError} for a
 * short or absent config space or a capability list that overruns or loops.
 */
export function pciDeviceFromConfig(
  address: { segment: number; bus: number; devfn: number },
  config: Uint8Array,
): PciDevice {
  const name = formatBdf(address.segment, address.bus, address.devfn);
  if (config.length < 64) {
    throw new TopologyError(
      "pci",
      "truncated",
      `${name}: config space has ${config.length} bytes, need 64`,
    );
  }
  const view = new DataView(config.buffer, config.byteOffset, config.byteLength);
  if (view.getUint16(PCI_CFG_VENDOR, true) === 0xffff) {
    throw new TopologyError("pci", "not-found", `${name}: no function (vendor ID 0xffff)`);
  }
  const headerType = config[PCI_CFG_HEADER_TYPE] & 0x7f;
  const classCode = view.getUint16(PCI_CFG_SUBCLASS, true);
  const portType = pcieType(name, config);
  const device: PciDevice = { ...address, type: "endpoint", isPcie: portType !== null };
  if (headerType === 1) {
    device.secondaryBus = config[PCI_CFG_SECONDARY_BUS];
    device.type = portType === 4
      ? "root-port"
      : portType === 5
      ? "switch-upstream"
      : portType === 6
      ? "switch-downstream"
      : portType === 7
      ? "pcie-to-pci-bridge"
      : portType === 8
      ? "pci-to-pcie-bridge"
      : "pci-bridge";
  } else if (classCode === 0x0600) {
    device.type = "host-bridge";
  }
  return device;
}

/** The PCIe device/port type (PCIe capability register bits 7:4), or `null` if not visible. */
function pcieType(name: string, config: Uint8Array): number | null {
  if ((config[PCI_CFG_STATUS] & PCI_STATUS_CAP_LIST) === 0) return null;
  let pointer = config[PCI_CFG_CAPABILITIES] & 0xfc;
  for (let steps = 0; pointer !== 0; steps++) {
    if (steps >= PCI_CAP_WALK_LIMIT) {
      throw new TopologyError("pci", "loop", `${name}: capability list does not terminate`);
    }
    if (pointer < PCI_CFG_HEADER_SIZE) {
      throw new TopologyError(
        "pci",
        "overrun",
        `${name}: capability pointer ${hex(pointer)} is in the header`,
      );
    }
    if (pointer + 4 > config.length) return null; // Beyond what we were allowed to read.
    if (config[pointer] === PCI_CAP_ID_EXP) return (config[pointer + 2] >> 4) & 0xf;
    pointer = config[pointer + 1] & 0xfc;
  }
  return null;
}
