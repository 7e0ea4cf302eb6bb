/**
 * Flattened device tree (Devicetree Specification v0.4 §5) parser, reduced to what IOMMU
 * topology needs: `iommu-map` / `iommu-map-mask` on PCI host bridges (PCI IOMMU binding,
 * `Documentation/devicetree/bindings/pci/pci-iommu.txt`) and `iommus` on platform devices
 * (IOMMU binding, `iommu.txt`), which is how ARM and RISC-V guests describe a virtio-iommu.
 *
 * Blob layout (all big-endian):
 * ```
 * header (40): magic 0xd00dfeed @0, totalsize @4, off_dt_struct @8, off_dt_strings @12,
 *   off_mem_rsvmap @16, version @20, last_comp_version @24, boot_cpuid_phys @28,
 *   size_dt_strings @32, size_dt_struct @36
 * structure block: tokens, each 4-byte aligned: BEGIN_NODE(1) name\0 pad, END_NODE(2),
 *   PROP(3) len u32, nameoff u32, value pad, NOP(4), END(9)
 * strings block: NUL-terminated property names, referenced by nameoff
 * ```
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";

/** FDT header magic. */
export const FDT_MAGIC = 0xd00dfeed;
/** Size of the version-17 header. */
export const FDT_HEADER_SIZE = 40;
/** Token: start of a node, followed by its NUL-terminated name. */
export const FDT_BEGIN_NODE = 1;
/** Token: end of a node. */
export const FDT_END_NODE = 2;
/** Token: a property: len u32, nameoff u32, value. */
export const FDT_PROP = 3;
/** Token: nothing. */
export const FDT_NOP = 4;
/** Token: end of the structure block. */
export const FDT_END = 9;
/** Deepest node nesting the parser accepts. */
export const FDT_MAX_DEPTH = 64;

/** One node of the parsed tree. */
export interface FdtNode {
  /** Node name with unit address, e.g. `pcie@10000000` (empty for the root). */
  name: string;
  /** Full path, e.g. `/soc/pcie@10000000` (`/` for the root). */
  path: string;
  /** Properties by name; values are the raw big-endian bytes. */
  props: Map<string, Uint8Array>;
  /** Child nodes in blob order. */
  children: FdtNode[];
  /** The parent node, `null` for the root. */
  parent: FdtNode | null;
}

/**
 * Parses the structure of a flattened device tree blob into nodes. Throws
 * {@link TopologyError} on any malformed header, token, offset or string.
 */
export function parseFdt(bytes: Uint8Array): FdtNode {
  if (bytes.length < FDT_HEADER_SIZE) {
    throw new TopologyError(
      "fdt",
      "truncated",
      `${bytes.length} bytes is shorter than the ${FDT_HEADER_SIZE}-byte header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== FDT_MAGIC) {
    throw new TopologyError("fdt", "bad-magic", `magic is ${hex(magic)}, not ${hex(FDT_MAGIC)}`);
  }
  const totalSize = view.getUint32(4);
  if (totalSize > bytes.length) {
    throw new TopologyError(
      "fdt",
      "truncated",
      `totalsize ${totalSize} is more than the ${bytes.length} bytes given`,
    );
  }
  if (totalSize < FDT_HEADER_SIZE) {
    throw new TopologyError(
      "fdt",
      "bad-length",
      `totalsize ${totalSize} is shorter than the header`,
    );
  }
  const version = view.getUint32(20);
  const lastCompatible = view.getUint32(24);
  if (version < 17 || lastCompatible > 17) {
    throw new TopologyError(
      "fdt",
      "bad-version",
      `version ${version} (last compatible ${lastCompatible}) is not compatible with 17`,
    );
  }
  const structStart = view.getUint32(8);
  const structSize = view.getUint32(36);
  const stringsStart = view.getUint32(12);
  const stringsSize = view.getUint32(32);
  checkBlock("structure", structStart, structSize, totalSize);
  checkBlock("strings", stringsStart, stringsSize, totalSize);
  if (structStart % 4 !== 0 || structSize % 4 !== 0) {
    throw new TopologyError(
      "fdt",
      "misaligned",
      `structure block at ${structStart} of ${structSize} bytes is not 4-byte aligned`,
    );
  }
  const strings = new StringsBlock(bytes, stringsStart, stringsSize);
  return walkStructure(bytes, view, structStart, structStart + structSize, strings);
}

function checkBlock(name: string, start: number, size: number, total: number): void {
  if (start > total || size > total - start) {
    throw new TopologyError(
      "fdt",
      "overrun",
      `${name} block at ${start} of ${size} bytes overruns totalsize ${total}`,
    );
  }
}

class StringsBlock {
  #bytes: Uint8Array;
  #start: number;
  #size: number;
  #cache = new Map<number, string>();

  constructor(bytes: Uint8Array, start: number, size: number) {
    this.#bytes = bytes;
    this.#start = start;
    this.#size = size;
  }

  get(offset: number): string {
    const cached = this.#cache.get(offset);
    if (cached !== undefined) return cached;
    if (offset >= this.#size) {
      throw new TopologyError(
        "fdt",
        "bad-string",
        `property name offset ${offset} is outside the ${this.#size}-byte strings block`,
      );
    }
    const value = cString(this.#bytes, this.#start + offset, this.#start + this.#size);
    if (value === null) {
      throw new TopologyError("fdt", "bad-string", `property name at ${offset} is not terminated`);
    }
    this.#cache.set(offset, value);
    return value;
  }
}

/** The string at `start` up to its NUL, or `null` if no NUL comes before `end`. */
function cString(bytes: Uint8Array, start: number, end: number): string | null {
  let s = "";
  for (let i = start; i < end; i++) {
    if (bytes[i] === 0) return s;
    s += String.fromCharCode(bytes[i]);
  }
  return null;
}

function walkStructure(
  bytes: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  strings: StringsBlock,
): FdtNode {
  let pos = start;
  let root: FdtNode | null = null;
  let current: FdtNode | null = null;
  let depth = 0;
  while (true) {
    if (pos + 4 > end) {
      throw new TopologyError("fdt", "truncated", `structure block ends at ${pos} without FDT_END`);
    }
    const token = view.getUint32(pos);
    pos += 4;
    switch (token) {
      case FDT_BEGIN_NODE: {
        const name = cString(bytes, pos, end);
        if (name === null) {
          throw new TopologyError("fdt", "bad-string", `node name at ${pos} is not terminated`);
        }
        pos = align4(pos + name.length + 1);
        if (current === null && root !== null) {
          throw new TopologyError("fdt", "bad-token", `a second root node starts at ${pos}`);
        }
        if (++depth > FDT_MAX_DEPTH) {
          throw new TopologyError("fdt", "too-deep", `nodes nest deeper than ${FDT_MAX_DEPTH}`);
        }
        const path: string = current === null ? "/" : joinPath(current.path, name);
        const node: FdtNode = { name, path, props: new Map(), children: [], parent: current };
        if (current === null) root = node;
        else current.children.push(node);
        current = node;
        break;
      }
      case FDT_END_NODE:
        if (current === null) {
          throw new TopologyError("fdt", "bad-token", `FDT_END_NODE at ${pos - 4} closes no node`);
        }
        current = current.parent;
        depth--;
        break;
      case FDT_PROP: {
        if (current === null) {
          throw new TopologyError("fdt", "bad-token", `property at ${pos - 4} is outside any node`);
        }
        if (pos + 8 > end) {
          throw new TopologyError("fdt", "truncated", `property header at ${pos} is cut off`);
        }
        const length = view.getUint32(pos);
        const nameOffset = view.getUint32(pos + 4);
        pos += 8;
        if (length > end - pos) {
          throw new TopologyError(
            "fdt",
            "overrun",
            `property value of ${length} bytes at ${pos} overruns the structure block`,
          );
        }
        const name = strings.get(nameOffset);
        current.props.set(name, bytes.subarray(pos, pos + length));
        pos = align4(pos + length);
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END:
        if (current !== null || root === null) {
          throw new TopologyError(
            "fdt",
            "bad-token",
            root === null ? "FDT_END before any node" : `FDT_END inside node ${current!.path}`,
          );
        }
        return root;
      default:
        throw new TopologyError("fdt", "bad-token", `unknown token ${hex(token)} at ${pos - 4}`);
    }
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function joinPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** Reads property `name` of `node` as big-endian u32 cells, or `null` if absent. */
export function fdtCells(node: FdtNode, name: string): number[] | null {
  const value = node.props.get(name);
  if (value === undefined) return null;
  if (value.length % 4 !== 0) {
    throw new TopologyError(
      "fdt",
      "bad-length",
      `${node.path}: property ${name} has ${value.length} bytes, not a multiple of 4`,
    );
  }
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const cells: number[] = [];
  for (let i = 0; i < value.length; i += 4) cells.push(view.getUint32(i));
  return cells;
}

/** Reads property `name` as a list of NUL-terminated strings, or `null` if absent. */
export function fdtStrings(node: FdtNode, name: string): string[] | null {
  const value = node.props.get(name);
  if (value === undefined) return null;
  const out: string[] = [];
  let s = "";
  for (const byte of value) {
    if (byte === 0) {
      out.push(s);
      s = "";
    } else s += String.fromCharCode(byte);
  }
  if (s !== "") out.push(s);
  return out;
}

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
