/** Shared helpers of the IntervalMap tests: bigint views of its u32-halves API. */

import type { IntervalMap } from "../util/interval_map.ts";

export const MASK32 = 0xffff_ffffn;
export const MAX64 = (1n << 64n) - 1n;

export function lo(v: bigint): number {
  return Number(v & MASK32);
}

export function hi(v: bigint): number {
  return Number(v >> 32n);
}

export function join(l: number, h: number): bigint {
  return (BigInt(h) << 32n) | BigInt(l);
}

/** map(start, end) in bigint terms; phys defaults to start, flags to 3. */
export function map(m: IntervalMap, start: bigint, end: bigint, phys = start, flags = 3): number {
  return m.insert(lo(start), hi(start), lo(end), hi(end), lo(phys), hi(phys), flags);
}

export function unmap(m: IntervalMap, start: bigint, end: bigint): number {
  return m.removeRange(lo(start), hi(start), lo(end), hi(end));
}

export function find(m: IntervalMap, a: bigint): number {
  return m.find(lo(a), hi(a));
}

export function overlaps(m: IntervalMap, start: bigint, end: bigint): boolean {
  return m.overlaps(lo(start), hi(start), lo(end), hi(end));
}

/** Every interval as [start, end], in the order forEach() visits them. */
export function list(m: IntervalMap): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  m.forEach((s) => out.push([join(m.startLo(s), m.startHi(s)), join(m.endLo(s), m.endHi(s))]));
  return out;
}
