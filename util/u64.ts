/**
 * 64-bit values as two u32 halves, so hot paths never need a `bigint` (a JS number is exact
 * only to 2^53). Public calls take `bigint | number`; a number must be a safe integer, a bigint
 * may use all 64 bits. Helpers that produce halves write into a caller-owned {@link Halves} to
 * stay allocation-free. The driver and the mock both use these; nothing here knows virtio.
 *
 * @module
 */

/** A 64-bit value as halves. Mutable on purpose: hot paths reuse one. */
export interface Halves {
  /** Low 32 bits (unsigned). */
  lo: number;
  /** High 32 bits (unsigned). */
  hi: number;
}

/** An address or size a caller passes in: a safe-integer number or a 64-bit bigint. */
export type Address = bigint | number;

/** 2^32, the weight of the high half. */
export const TWO_POW_32 = 0x1_0000_0000;
/** 2^64 − 1, the largest 64-bit address, as a `bigint` (for checks, not hot paths). */
export const U64_MAX = (1n << 64n) - 1n;

/** Creates a zeroed {@link Halves}. */
export function halves(): Halves {
  return { lo: 0, hi: 0 };
}

/**
 * Splits `value` into `out`. Throws RangeError for a negative, fractional or unsafe number or a
 * bigint outside [0, 2^64). `name` goes in the message.
 */
export function split(value: Address, name: string, out: Halves): Halves {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Invalid ${name} ${value}: expected a non-negative safe integer (use a bigint above 2^53)`,
      );
    }
    // ToUint32 is the value modulo 2^32, exact for safe integers; `%` on a double would be a
    // floating-point fmod call, far slower on the hot path.
    const lo = value >>> 0;
    out.lo = lo;
    out.hi = (value - lo) / TWO_POW_32;
    return out;
  }
  if (typeof value !== "bigint" || value < 0n || value > U64_MAX) {
    throw new RangeError(`Invalid ${name} ${String(value)}: expected a 64-bit unsigned value`);
  }
  out.lo = Number(value & 0xffff_ffffn);
  out.hi = Number(value >> 32n);
  return out;
}

/** Returns the value `lo`/`hi` as a `bigint` (for results and messages, not hot paths). */
export function joinAddress(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Compares a = (aLo, aHi) with b = (bLo, bHi): negative, 0 or positive. */
export function compare(aLo: number, aHi: number, bLo: number, bHi: number): number {
  return aHi !== bHi ? aHi - bHi : aLo - bLo;
}

/** Whether (aHi:aLo) < (bHi:bLo), both unsigned. */
export function lessThan64(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const ah = aHi >>> 0;
  const bh = bHi >>> 0;
  return ah < bh || (ah === bh && aLo >>> 0 < bLo >>> 0);
}

/** Whether the inclusive ranges [aStart, aEnd] and [bStart, bEnd] share a value. */
export function rangesOverlap(
  aStartLo: number,
  aStartHi: number,
  aEndLo: number,
  aEndHi: number,
  bStartLo: number,
  bStartHi: number,
  bEndLo: number,
  bEndHi: number,
): boolean {
  return !lessThan64(aEndLo, aEndHi, bStartLo, bStartHi) &&
    !lessThan64(bEndLo, bEndHi, aStartLo, aStartHi);
}

/** Low half of (`lo`, …) + `offset` (`offset` below 2^32). */
export function addLo(lo: number, offset: number): number {
  return (lo + offset) % TWO_POW_32;
}

/** High half of (`lo`, `hi`) + `offset`, with the carry (wraps at 2^64). */
export function addHi(lo: number, hi: number, offset: number): number {
  return (hi + Math.floor((lo + offset) / TWO_POW_32)) >>> 0;
}

/**
 * Computes the inclusive end `start + size - 1` into `out`. Returns false when size is 0 or the
 * end would pass 2^64 - 1 (the range wraps).
 */
export function lastOf(
  startLo: number,
  startHi: number,
  sizeLo: number,
  sizeHi: number,
  out: Halves,
): boolean {
  if (sizeLo === 0 && sizeHi === 0) return false;
  // size - 1
  let mLo = sizeLo - 1;
  let mHi = sizeHi;
  if (mLo < 0) {
    mLo += TWO_POW_32;
    mHi -= 1;
  }
  let lo = startLo + mLo;
  let hi = startHi + mHi;
  if (lo >= TWO_POW_32) {
    lo -= TWO_POW_32;
    hi += 1;
  }
  if (hi >= TWO_POW_32) return false;
  out.lo = lo;
  out.hi = hi;
  return true;
}

/** Whether (lo, hi) is a multiple of 2^shift (shift 0..63). */
export function isAligned(lo: number, hi: number, shift: number): boolean {
  if (shift < 31) return (lo & ((1 << shift) - 1)) === 0;
  if (shift <= 32) return lo % 2 ** shift === 0;
  return lo === 0 && hi % 2 ** (shift - 32) === 0;
}
