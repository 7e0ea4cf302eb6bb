/**
 * Numbers on the `viommu` command line and in shell lines: decimal or `0x` hex, underscores
 * allowed between digits. Refused on purpose, each with its own message: a negative number
 * (every ID, address and size in virtio-iommu is unsigned), a decimal with a leading zero
 * (`010` is 10 to some readers and octal 8 to others), and a value wider than its field.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { UsageError } from "./args.ts";

/**
 * Parses a non-negative integer written in decimal or `0x` hex into a bigint. Throws
 * {@link UsageError} naming `what` and the text.
 */
export function parseBig(text: string, what: string): bigint {
  const trimmed = text.trim();
  const clean = trimmed.replace(/(?<=[0-9a-fA-F])_(?=[0-9a-fA-F])/g, "");
  if (/^0[xX][0-9a-fA-F]+$/.test(clean) || /^(0|[1-9][0-9]*)$/.test(clean)) return BigInt(clean);
  if (/^-\s*(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(clean)) {
    throw new UsageError(`Invalid ${what} "${text}": must not be negative`);
  }
  if (/^0[0-9]+$/.test(clean)) {
    const decimal = clean.replace(/^0+/, "");
    const octal = /^[0-7]+$/.test(clean) ? ` or ${hex(parseInt(clean, 8))} for octal ${clean}` : "";
    throw new UsageError(
      `Invalid ${what} "${text}": a leading 0 is ambiguous; write ${decimal} for decimal${octal}`,
    );
  }
  throw new UsageError(`Invalid ${what} "${text}": expected a decimal or 0x hex number`);
}

/** Parses a 64-bit unsigned value (addresses, sizes, masks). */
export function parseU64(text: string, what: string): bigint {
  const value = parseBig(text, what);
  if (value > 0xffff_ffff_ffff_ffffn) {
    throw new UsageError(`Invalid ${what} "${text}": larger than 64 bits`);
  }
  return value;
}

/** Parses a 32-bit unsigned value (domain and endpoint IDs) into a number. */
export function parseU32(text: string, what: string): number {
  const value = parseBig(text, what);
  if (value > 0xffff_ffffn) throw new UsageError(`Invalid ${what} "${text}": larger than 32 bits`);
  return Number(value);
}

/** Parses an inclusive range `START-END` (each decimal or hex). */
export function parseRange(text: string, what: string): { start: bigint; end: bigint } {
  const parts = text.split("-");
  if (parts.length !== 2 || parts[0].trim() === "") {
    throw new UsageError(`Invalid ${what} "${text}": expected START-END, e.g. 0-0xffffffff`);
  }
  const start = parseU64(parts[0], `${what} start`);
  const end = parseU64(parts[1], `${what} end`);
  if (end < start) throw new UsageError(`Invalid ${what} "${text}": ends before it starts`);
  return { start, end };
}

/** Parses a comma-separated list of 32-bit values, e.g. `0,8,0x10`. */
export function parseU32List(text: string, what: string): number[] {
  const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) throw new UsageError(`Invalid ${what} "${text}": the list is empty`);
  return items.map((item) => parseU32(item, what));
}
