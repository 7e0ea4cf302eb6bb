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
    dst.set(memory.bytes.subarray(seg.offset, seg.offset + n), copied);
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
    else memory.bytes.set(src.subarray(done, done + n), at);
    done += n;
    skip = 0;
  }
}
