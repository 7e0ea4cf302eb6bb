/**
 * The driver's own rules for the chains it adds, shared by every ring layout: u32 lengths and
 * address halves, at least one buffer, at most 2^32 bytes in a chain (§2.7.5.2, §2.8.4), no
 * chain longer than the queue, and the argument checks of queue construction. The hot path
 * calls {@link chainOk} (one cheap test); the `refuse*` functions work out the reason only for a
 * refusal, so the hot methods stay small enough to inline.
 *
 * @module
 */

import { MAX_QUEUE_SIZE } from "../../spec/split_ring.ts";
import { TWO_POW_32 } from "../../util/u64.ts";
import type { DmaBuffer, VirtqueueOptions } from "./virtqueue.ts";

/** Default number of entries of one indirect table. */
const DEFAULT_MAX_INDIRECT = 8;

/** Whether `n` is an integer in 0..2^32 − 1 (a valid u32). Allocation-free. */
export function isU32(n: number): boolean {
  return (n >>> 0) === n;
}

/**
 * Whether `add2` may add these buffers to a queue of `size`: u32 lengths and address halves, at
 * least one buffer, at most 2^32 bytes (§2.7.5.2), and room for both. Allocation-free.
 */
export function chainOk(
  rLo: number,
  rHi: number,
  rLen: number,
  wLo: number,
  wHi: number,
  wLen: number,
  size: number,
): boolean {
  return isU32(rLen) && isU32(wLen) && (rLen !== 0 || wLen !== 0) &&
    (rLen === 0 || (isU32(rLo) && isU32(rHi))) && (wLen === 0 || (isU32(wLo) && isU32(wHi))) &&
    rLen + wLen <= TWO_POW_32 && (rLen === 0 || wLen === 0 || size >= 2);
}

/** Throws the error for arguments {@link chainOk} refuses. */
export function refuseAdd(
  rLo: number,
  rHi: number,
  rLen: number,
  wLo: number,
  wHi: number,
  wLen: number,
  size: number,
): never {
  if (!isU32(rLen) || !isU32(wLen)) {
    throw new RangeError(`Cannot add buffers of ${rLen} and ${wLen} bytes: not u32 lengths`);
  }
  if (rLen === 0 && wLen === 0) {
    throw new TypeError("Cannot add a chain with no buffers (both lengths are 0)");
  }
  if (
    (rLen !== 0 && (!isU32(rLo) || !isU32(rHi))) || (wLen !== 0 && (!isU32(wLo) || !isU32(wHi)))
  ) {
    throw new RangeError("Cannot add a buffer whose address halves are not u32");
  }
  // §2.7.5.2: a chain is at most 2^32 bytes in total.
  if (rLen + wLen > TWO_POW_32) {
    throw new RangeError(`Cannot add a chain of ${rLen + wLen} bytes: more than 2^32`);
  }
  throw new RangeError(`Cannot add a chain of 2 buffers to a queue of size ${size}`);
}

/**
 * Checks the chain `add` was given and returns its device-writable byte count. Throws TypeError
 * for an empty chain, RangeError for a chain longer than the queue (§2.7.5.2: "A driver MUST NOT
 * create a descriptor chain longer than the Queue Size"), a zero or non-u32 length or address
 * half, or more than 2^32 bytes in total.
 */
export function checkChain(
  readable: readonly DmaBuffer[],
  writable: readonly DmaBuffer[],
  size: number,
): number {
  const nr = readable.length;
  const n = nr + writable.length;
  if (n === 0) throw new TypeError("Cannot add a chain with no buffers");
  if (n > size) {
    throw new RangeError(`Cannot add a chain of ${n} buffers to a queue of size ${size}`);
  }
  let total = 0;
  let wTotal = 0;
  for (let i = 0; i < n; i++) {
    const b = i < nr ? readable[i] : writable[i - nr];
    if (!isU32(b.addrLo) || !isU32(b.addrHi)) {
      throw new RangeError(`Cannot add buffer ${i}: address halves are not u32`);
    }
    if (!isU32(b.length) || b.length === 0) {
      throw new RangeError(`Cannot add buffer ${i} of ${b.length} bytes: not in 1..2^32-1`);
    }
    total += b.length;
    if (i >= nr) wTotal += b.length;
  }
  if (total > TWO_POW_32) {
    throw new RangeError(`Cannot add a chain of ${total} bytes: more than 2^32`);
  }
  return wTotal;
}

/** Checks the arguments of `setPair` (other than the pair's state); throws RangeError. */
export function checkPairBuffers(
  pair: number,
  pairs: number,
  rLo: number,
  rHi: number,
  rLen: number,
  wLo: number,
  wHi: number,
  wLen: number,
  size: number,
): void {
  checkPairIndex(pair, pairs);
  if (rLen === 0 || wLen === 0) {
    throw new RangeError(`Pair ${pair} needs two buffers, not lengths ${rLen} and ${wLen}`);
  }
  if (!chainOk(rLo, rHi, rLen, wLo, wHi, wLen, size)) {
    refuseAdd(rLo, rHi, rLen, wLo, wHi, wLen, size);
  }
}

/** Throws RangeError unless `pair` is one of the `pairs` pinned pairs. */
export function checkPairIndex(pair: number, pairs: number): void {
  if (!isU32(pair) || pair >= pairs) {
    throw new RangeError(`Pair ${pair} is not one of the ${pairs} pinned pairs`);
  }
}

/**
 * Throws the error for an `addPair` refused: `cap` is the pair's readable size as set (0: not
 * set), `inFlight` whether it is out.
 */
export function refusePair(
  pair: number,
  pairs: number,
  rLen: number,
  cap: number,
  inFlight: boolean,
): never {
  checkPairIndex(pair, pairs);
  if (cap === 0) throw new RangeError(`Pair ${pair} has no buffers set`);
  if (inFlight) throw new RangeError(`Pair ${pair} is in flight`);
  throw new RangeError(`Cannot send ${rLen} readable bytes on pair ${pair}: not in 1..${cap}`);
}

/** A queue's validated construction parameters. */
export interface QueueParams {
  /** Entries per indirect table (0: none). */
  maxIndirect: number;
  /** Pinned pairs. */
  pairs: number;
}

/**
 * Checks a queue's index, size and options (the checks every layout shares) and returns the
 * indirect table size and pair count. `powerOfTwo`: the layout needs a power-of-two size (split,
 * §2.7; a packed ring need not, §2.8). Throws RangeError naming the bad value.
 */
export function queueParams(
  index: number,
  size: number,
  options: VirtqueueOptions,
  powerOfTwo: boolean,
): QueueParams {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) {
    throw new RangeError(`Queue index ${index} is not in 0..65535`);
  }
  // §2.7: "Queue Size ... is a power of 2 ... maximum Queue Size value is 32768"; §2.8: a packed
  // ring's size is any value up to 32768.
  if (
    !Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE ||
    (powerOfTwo && (size & (size - 1)) !== 0)
  ) {
    throw new RangeError(
      `Queue size ${size} is not ${
        powerOfTwo ? "a power of two" : "an integer"
      } in 1..${MAX_QUEUE_SIZE}`,
    );
  }
  let maxIndirect = 0;
  if (options.indirect) {
    const wanted = options.maxIndirect ?? DEFAULT_MAX_INDIRECT;
    if (!Number.isInteger(wanted) || wanted < 2 || wanted > MAX_QUEUE_SIZE) {
      throw new RangeError(`maxIndirect ${wanted} is not in 2..${MAX_QUEUE_SIZE}`);
    }
    // A chain may not be longer than the queue (§2.7.5.2), so bigger tables would be unused.
    maxIndirect = Math.min(wanted, size);
    if (maxIndirect < 2) maxIndirect = 0;
  }
  const pairs = options.pairs ?? 0;
  if (!Number.isInteger(pairs) || pairs < 0 || pairs > size >> 1) {
    throw new RangeError(`pairs ${pairs} is not in 0..${size >> 1} (half the queue size)`);
  }
  return { maxIndirect, pairs };
}
