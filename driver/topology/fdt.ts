/**
 * The IOMMU topology a flattened device tree (Devicetree Specification v0.4) describes:
 * `iommu-map` / `iommu-map-mask` on PCI host bridges (PCI IOMMU binding,
 * `Documentation/devicetree/bindings/pci/pci-iommu.txt`) and `iommus` on platform devices
 * (IOMMU binding, `iommu.txt`), which is how ARM and RISC-V guests describe a virtio-iommu.
 *
 * The blob itself is read by `fdt_blob.ts`, whose exports this module re-exports.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";
import { fdtCells, type FdtNode, fdtStrings, parseFdt } from "./fdt_blob.ts";

export {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_HEADER_SIZE,
  FDT_MAGIC,
  FDT_MAX_DEPTH,
  FDT_NOP,
  FDT_PROP,
  fdtCells,
  type FdtNode,
  fdtStrings,
  parseFdt,
} from "./fdt_blob.ts";

function singleCell(node: FdtNode, name: string): number | null {
  const cells = fdtCells(node, name);
  if (cells === null) return null;
  if (cells.length !== 1) {
    throw new TopologyError(
      "fdt",
      "bad-length",
      `${node.path}: property ${name} has ${cells.length} cells, expected 1`,
    );
  }
  return cells[0];
}

/** A node that is an IOMMU (it has `#iommu-cells`). */
export interface FdtIommu {
  /** Path of the IOMMU node. */
  path: string;
  /** Its phandle. */
  phandle: number;
  /** Its `#iommu-cells`. */
  cells: number;
  /** Its `compatible` strings, e.g. `virtio,mmio` or `pci1af4,1057`. */
  compatible: string[];
}

/** One `iommu-map` entry: RIDs `ridBase..ridBase+length-1` → IDs from `iommuBase`. */
export interface FdtIommuMapEntry {
  /** First RID (after masking), inclusive. */
  ridBase: number;
  /** Phandle of the IOMMU. */
  iommu: number;
  /** Endpoint ID of `ridBase`. */
  iommuBase: number;
  /** How many RIDs the entry covers. */
  length: number;
}

/** A PCI host bridge (a `device_type = "pci"` node whose parent is not PCI). */
export interface FdtPciHostBridge {
  /** Path of the host bridge node. */
  path: string;
  /** PCI segment: `linux,pci-domain` if present, else the bridge's index in blob order. */
  segment: number;
  /** `iommu-map-mask`, applied to the RID before lookup; 0xffffffff when absent. */
  mask: number;
  /** `iommu-map` entries in order (first match wins). Empty when the bridge has none. */
  map: FdtIommuMapEntry[];
}

/** A device with an `iommus` property. */
export interface FdtIommuClient {
  /** Path of the device node. */
  path: string;
  /** First `reg` address, when `#address-cells` of the parent is 1 or 2 and `reg` is present. */
  address: bigint | null;
  /** Each (IOMMU phandle, specifier cells) pair, in order. */
  iommus: { iommu: number; ids: number[] }[];
}

/** What the device tree says about IOMMU topology. */
export interface FdtTopology {
  /** IOMMU nodes. */
  iommus: FdtIommu[];
  /** PCI host bridges, with or without `iommu-map`. */
  hostBridges: FdtPciHostBridge[];
  /** Devices with an `iommus` property. */
  clients: FdtIommuClient[];
}

/**
 * Extracts the IOMMU topology from a parsed tree (or blob bytes): IOMMUs, PCI host bridges with
 * `iommu-map` and `iommu-map-mask`, and devices with `iommus`. Phandle references are checked
 * and so are cell counts; problems throw {@link TopologyError}.
 */
export function fdtTopology(tree: FdtNode | Uint8Array): FdtTopology {
  const root = tree instanceof Uint8Array ? parseFdt(tree) : tree;
  const nodes: FdtNode[] = [];
  const stack: FdtNode[] = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    nodes.push(node);
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
  }
  const byPhandle = new Map<number, FdtNode>();
  for (const node of nodes) {
    const phandle = singleCell(node, "phandle") ?? singleCell(node, "linux,phandle");
    if (phandle === null) continue;
    if (phandle === 0 || phandle === 0xffff_ffff) {
      throw new TopologyError(
        "fdt",
        "invalid-range",
        `${node.path}: phandle ${hex(phandle)} is reserved`,
      );
    }
    if (byPhandle.has(phandle)) {
      throw new TopologyError(
        "fdt",
        "duplicate",
        `${node.path} and ${byPhandle.get(phandle)!.path} share phandle ${hex(phandle)}`,
      );
    }
    byPhandle.set(phandle, node);
  }
  const out: FdtTopology = { iommus: [], hostBridges: [], clients: [] };
  for (const [phandle, node] of byPhandle) {
    const cells = singleCell(node, "#iommu-cells");
    if (cells === null) continue;
    if (cells > 8) {
      throw new TopologyError(
        "fdt",
        "invalid-range",
        `${node.path}: #iommu-cells ${cells} is too large`,
      );
    }
    out.iommus.push({
      path: node.path,
      phandle,
      cells,
      compatible: fdtStrings(node, "compatible") ?? [],
    });
  }
  const iommuCells = new Map(out.iommus.map((iommu) => [iommu.phandle, iommu.cells]));
  for (const node of nodes) {
    if (isPci(node) && !(node.parent !== null && isPci(node.parent))) {
      out.hostBridges.push(hostBridge(node, out.hostBridges.length, iommuCells));
    }
    if (node.props.has("iommus")) out.clients.push(client(node, iommuCells));
  }
  return out;
}

function isPci(node: FdtNode): boolean {
  const type = fdtStrings(node, "device_type");
  return type !== null && type[0] === "pci";
}

function reference(
  node: FdtNode,
  name: string,
  phandle: number,
  cells: Map<number, number>,
): number {
  const count = cells.get(phandle);
  if (count === undefined) {
    throw new TopologyError(
      "fdt",
      "unknown-reference",
      `${node.path}: ${name} refers to phandle ${hex(phandle)}, which is not an IOMMU`,
    );
  }
  return count;
}

function hostBridge(node: FdtNode, index: number, cells: Map<number, number>): FdtPciHostBridge {
  const raw = fdtCells(node, "iommu-map") ?? [];
  const map: FdtIommuMapEntry[] = [];
  // Each entry: (rid-base, iommu phandle, iommu-base, length); the binding requires
  // #iommu-cells = 1 on the target so that an entry is exactly 4 cells.
  if (raw.length % 4 !== 0) {
    throw new TopologyError(
      "fdt",
      "bad-length",
      `${node.path}: iommu-map has ${raw.length} cells, not a multiple of 4`,
    );
  }
  for (let i = 0; i < raw.length; i += 4) {
    const entry = { ridBase: raw[i], iommu: raw[i + 1], iommuBase: raw[i + 2], length: raw[i + 3] };
    if (reference(node, "iommu-map", entry.iommu, cells) !== 1) {
      throw new TopologyError(
        "fdt",
        "bad-length",
        `${node.path}: iommu-map target ${hex(entry.iommu)} must have #iommu-cells = 1`,
      );
    }
    if (
      entry.ridBase + entry.length > 0x1_0000_0000 || entry.iommuBase + entry.length > 0x1_0000_0000
    ) {
      throw new TopologyError(
        "fdt",
        "overflow",
        `${node.path}: iommu-map entry ${i / 4} (rid ${hex(entry.ridBase)}, length ${
          hex(entry.length)
        }) overflows 32 bits`,
      );
    }
    map.push(entry);
  }
  return {
    path: node.path,
    segment: singleCell(node, "linux,pci-domain") ?? index,
    mask: singleCell(node, "iommu-map-mask") ?? 0xffff_ffff,
    map,
  };
}

function client(node: FdtNode, cells: Map<number, number>): FdtIommuClient {
  const raw = fdtCells(node, "iommus") ?? [];
  const iommus: { iommu: number; ids: number[] }[] = [];
  for (let i = 0; i < raw.length;) {
    const count = reference(node, "iommus", raw[i], cells);
    if (i + 1 + count > raw.length) {
      throw new TopologyError(
        "fdt",
        "truncated",
        `${node.path}: iommus entry at cell ${i} needs ${count} specifier cells`,
      );
    }
    iommus.push({ iommu: raw[i], ids: raw.slice(i + 1, i + 1 + count) });
    i += 1 + count;
  }
  return { path: node.path, address: firstRegAddress(node), iommus };
}

function firstRegAddress(node: FdtNode): bigint | null {
  const reg = fdtCells(node, "reg");
  if (reg === null || node.parent === null) return null;
  const addressCells = singleCell(node.parent, "#address-cells") ?? 2;
  if (addressCells < 1 || addressCells > 2 || reg.length < addressCells) return null;
  return addressCells === 1 ? BigInt(reg[0]) : (BigInt(reg[0]) << 32n) | BigInt(reg[1]);
}

/** The result of a device-tree lookup. */
export interface FdtMatch {
  /** Endpoint ID. */
  endpointId: number;
  /** Phandle of the IOMMU. */
  iommu: number;
}

/**
 * Maps PCI `requester.rid` behind the host bridge of `requester.segment` through its `iommu-map`:
 * masked = rid & mask; first entry with ridBase ≤ masked < ridBase + length wins,
 * endpoint = masked − ridBase + iommuBase. `null` when nothing matches.
 */
export function fdtPciEndpoint(
  topology: FdtTopology,
  requester: { segment: number; rid: number },
): FdtMatch | null {
  const bridge = topology.hostBridges.find((candidate) => candidate.segment === requester.segment);
  if (bridge === undefined) return null;
  const masked = (requester.rid & bridge.mask) >>> 0;
  for (const entry of bridge.map) {
    if (masked >= entry.ridBase && masked - entry.ridBase < entry.length) {
      return { endpointId: masked - entry.ridBase + entry.iommuBase, iommu: entry.iommu };
    }
  }
  return null;
}
