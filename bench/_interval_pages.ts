/**
 * Interval maps full of one-page intervals, for the interval map's benchmark and the memory
 * figure of `deno task bench`: 4 KiB pages every 8 KiB (each with a free 4 KiB gap above it),
 * addresses past 4 GiB, inserted in a scrambled or an ascending order.
 *
 * @module
 */

import { IntervalMap } from "../util/interval_map.ts";

/** Intervals start every STRIDE bytes. */
export const STRIDE = 0x2000;
/** Each interval is one page. */
export const PAGE = 0x1000;

/** Inserts interval `i` (start i * STRIDE, one page) into `map`; addresses pass 4 GiB. */
export function insertPage(map: IntervalMap, i: number, flags: number): number {
  const start = i * STRIDE;
  const lo = start >>> 0;
  const hi = Math.floor(start / 0x1_0000_0000);
  return map.insert(lo, hi, (lo + PAGE - 1) >>> 0, hi, lo, hi, flags);
}

/**
 * Builds a map of `count` pages inserted in a scrambled order (index times an odd constant
 * modulo a power of two), so leaves fill as they would under random inserts, or ascending.
 */
export function buildPages(count: number, scrambled: boolean): IntervalMap {
  const map = new IntervalMap();
  let span = 1;
  while (span < count) span *= 2;
  for (let k = 0; k < span; k++) {
    const i = scrambled ? Math.imul(k, 0x9e37_79b1) & (span - 1) : k;
    if (i < count && insertPage(map, i, 3) === -1) throw new Error(`Page ${i} overlapped`);
  }
  if (map.size !== count) throw new Error(`Built ${map.size} intervals, expected ${count}`);
  return map;
}
