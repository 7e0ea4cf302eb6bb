/**
 * Flattened device tree blob reader (Devicetree Specification v0.4 §5): the header, the
 * structure block's tokens and the strings block, into a tree of nodes with raw property
 * values, and the two property decoders the topology needs (u32 cells, string lists). Every
 * offset, length and string in the blob is checked; malformed input throws
 * {@link TopologyError}. What the nodes mean for IOMMU topology is in `fdt.ts`.
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
