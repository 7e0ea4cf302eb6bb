/**
 * The memory both ring layouts set up the same way: a 16-bit view over the ring's region for
 * seq-cst loads and stores of the words the two sides hand each other (indices, flags, event
 * words), those loads and stores, and the optional region of indirect tables.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";

/** Whether this platform is little-endian, so 16-bit typed arrays match the wire format. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A 16-bit view over `region` for Atomics on its shared words, or null when the platform is
 * big-endian or the region is not 2-byte aligned (the queue then uses its DataView).
 */
export function ringWords(region: DmaRegion): Uint16Array | null {
  const bytes = region.bytes;
  return LITTLE_ENDIAN && bytes.byteOffset % 2 === 0
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 1)
    : null;
}

/**
 * A 32-bit view over `region` for seq-cst loads of a pair of 16-bit words at once, or null
 * when the platform is big-endian or the region is not 4-byte aligned.
 */
export function ringDwords(region: DmaRegion): Uint32Array | null {
  const bytes = region.bytes;
  return LITTLE_ENDIAN && bytes.byteOffset % 4 === 0
    ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2)
    : null;
}

/**
 * Allocates `bytes` of indirect tables (page-aligned), or returns null for 0 bytes. When the
 * allocation fails the queue's `ring` region is freed before the error is rethrown, so a queue
 * that could not be built holds nothing.
 */
export function allocTables(dma: DmaAllocator, ring: DmaRegion, bytes: number): DmaRegion | null {
  if (bytes === 0) return null;
  try {
    return dma.alloc(bytes, 4096);
  } catch (error) {
    dma.free(ring);
    throw error;
  }
}

/** Seq-cst 16-bit load at byte offset `off` of a ring region (its DataView without `words`). */
export function loadWord(words: Uint16Array | null, view: DataView, off: number): number {
  return words !== null ? Atomics.load(words, off >> 1) : view.getUint16(off, true);
}

/**
 * Seq-cst 32-bit little-endian load at byte offset `off` (4-byte aligned) of a ring region: two
 * adjacent 16-bit words in one access (its DataView without `dwords`).
 */
export function loadDword(dwords: Uint32Array | null, view: DataView, off: number): number {
  return dwords !== null ? Atomics.load(dwords, off >> 2) : view.getUint32(off, true);
}

/** Seq-cst 16-bit store at byte offset `off` of a ring region (its DataView without `words`). */
export function storeWord(
  words: Uint16Array | null,
  view: DataView,
  off: number,
  value: number,
): void {
  if (words !== null) Atomics.store(words, off >> 1, value);
  else view.setUint16(off, value, true);
}
