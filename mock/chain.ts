/**
 * Gather and scatter over a descriptor chain's segments. A request may arrive split across
 * any number of descriptors (virtio 1.3 §2.7.4: the device MUST NOT assume a framing), so the
 * mock reads the readable part into a scratch buffer and writes its answer through these.
 * Allocation-free.
 *
 * @module
 */

import type { SimulatedMemory } from "../transport/memory.ts";
import type { Chain } from "./device.ts";

/** Copies below this many bytes byte by byte; longer ones with a subarray and set(). */
const SHORT_COPY = 128;

/**
 * Copies `n` bytes of `src` from `from` into `dst` at `to`. Requests and their tails are a few
 * dozen bytes: a loop copies them without the subarray that set() needs, which allocated
 * about 200 bytes per request and made the mock's own cost depend on its caller's JIT state.
 */
function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (n >= SHORT_COPY) {
    dst.set(src.subarray(from, from + n), to);
    return;
  }
  for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
}

/**
 * Copies the first `length` bytes of the chain's readable part into `dst` (from 0) and
 * returns how many were copied (fewer when the readable part is shorter).
 */
export function gatherReadable(
  memory: SimulatedMemory,
  chain: Chain,
  dst: Uint8Array,
  length: number,
): number {
  let copied = 0;
  for (let i = 0; i < chain.readableCount && copied < length; i++) {
    const seg = chain.readable[i];
    const n = Math.min(seg.length, length - copied);
    copyBytes(memory.bytes, seg.offset, dst, copied, n);
    copied += n;
  }
  return copied;
}

/**
 * Writes `length` bytes of `src` (from 0) into the chain's writable part starting at byte
 * `offset` of that part; bytes past the writable part are not written.
 */
export function scatterWritable(
  memory: SimulatedMemory,
  chain: Chain,
  offset: number,
  src: Uint8Array,
  length: number,
): void {
  fillWritable(memory, chain, offset, src, length);
}

/** Zeroes `length` bytes of the chain's writable part starting at byte `offset` of it. */
export function zeroWritable(
  memory: SimulatedMemory,
  chain: Chain,
  offset: number,
  length: number,
): void {
  fillWritable(memory, chain, offset, null, length);
}

/** Copies `src` (or zeroes, when null) across the writable segments, from byte `offset`. */
function fillWritable(
  memory: SimulatedMemory,
  chain: Chain,
  offset: number,
  src: Uint8Array | null,
  length: number,
): void {
  let skip = offset;
  let done = 0;
  for (let i = 0; i < chain.writableCount && done < length; i++) {
    const seg = chain.writable[i];
    if (skip >= seg.length) {
      skip -= seg.length;
      continue;
    }
    const n = Math.min(seg.length - skip, length - done);
    const at = seg.offset + skip;
    if (src === null) memory.bytes.fill(0, at, at + n);
    else copyBytes(src, done, memory.bytes, at, n);
    done += n;
    skip = 0;
  }
}
