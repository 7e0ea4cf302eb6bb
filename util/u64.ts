/**
 * Unsigned 64-bit comparisons over u32 halves, so the mock's hot paths need no BigInt.
 *
 * @module
 */

/** Whether (aHi:aLo) < (bHi:bLo), both unsigned 64-bit values given as u32 halves. */
export function lessThan64(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const ah = aHi >>> 0;
  const bh = bHi >>> 0;
  return ah < bh || (ah === bh && aLo >>> 0 < bLo >>> 0);
}

/** Whether the inclusive ranges [aStart, aEnd] and [bStart, bEnd] share an address. */
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

/** Joins u32 halves into a bigint. */
export function join64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}
