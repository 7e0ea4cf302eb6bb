/**
 * IntervalMap cost at 1,000 and at 1,000,000 live intervals. Its memory per interval is a
 * line of `deno task bench`'s summary (bench/mock_figures.ts), not printed here: a line printed
 * while `deno bench` loads this file lands in the middle of its table.
 *
 * Run: `deno bench bench/interval_map_bench.ts`.
 *
 * @module
 */

import { IntervalMap } from "../util/interval_map.ts";

/** Intervals are 4 KiB pages every 8 KiB, so each has a free 4 KiB gap above it. */
const STRIDE = 0x2000;
const PAGE = 0x1000;
/** Distinct gap positions the measured functions cycle through. */
const PROBES = 1 << 14;

/** Inserts interval `i` (start i * STRIDE, one page) into `map`; addresses pass 4 GiB. */
function insertPage(map: IntervalMap, i: number, flags: number): number {
  const start = i * STRIDE;
  const lo = start >>> 0;
  const hi = Math.floor(start / 0x1_0000_0000);
  return map.insert(lo, hi, (lo + PAGE - 1) >>> 0, hi, lo, hi, flags);
}

/**
 * Builds a map of `count` pages inserted in a scrambled order (index times an odd constant
 * modulo a power of two), so leaves fill as they would under random inserts, not only
 * ascending ones.
 */
function build(count: number, scrambled: boolean): IntervalMap {
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

/** Pseudo-random gap indices below `count`, fixed across runs. */
function probes(count: number): Uint32Array {
  const out = new Uint32Array(PROBES);
  let x = 0x2545_f491;
  for (let i = 0; i < PROBES; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) % count;
  }
  return out;
}

const SMALL = 1_000;
const LARGE = 1_000_000;

const small = build(SMALL, true);
const smallProbes = probes(SMALL);

const large = build(LARGE, true);
const largeProbes = probes(LARGE);

/** Maps the gap above a probe page, then unmaps it: one MAP + UNMAP pair. */
function mapUnmapPair(map: IntervalMap, probe: Uint32Array, k: number): void {
  const start = probe[k & (PROBES - 1)] * STRIDE + PAGE;
  const lo = start >>> 0;
  const hi = Math.floor(start / 0x1_0000_0000);
  if (map.insert(lo, hi, (lo + PAGE - 1) >>> 0, hi, lo, hi, 3) === -1) {
    throw new Error("Gap insert overlapped");
  }
  if (map.removeRange(lo, hi, (lo + PAGE - 1) >>> 0, hi) !== 1) {
    throw new Error("Gap unmap failed");
  }
}

/** Looks up an address inside a probe page. */
function lookup(map: IntervalMap, probe: Uint32Array, k: number): void {
  const start = probe[k & (PROBES - 1)] * STRIDE + 0x80;
  if (map.find(start >>> 0, Math.floor(start / 0x1_0000_0000)) === -1) {
    throw new Error("Lookup missed");
  }
}

let smallK = 0;
let largeK = 0;

Deno.bench({
  name: "insert+removeRange, 1k live",
  group: "insert+removeRange",
  baseline: true,
  fn(): void {
    mapUnmapPair(small, smallProbes, smallK++);
  },
});

Deno.bench({
  name: "insert+removeRange, 1M live",
  group: "insert+removeRange",
  fn(): void {
    mapUnmapPair(large, largeProbes, largeK++);
  },
});

Deno.bench({
  name: "find, 1k live",
  group: "find",
  baseline: true,
  fn(): void {
    lookup(small, smallProbes, smallK++);
  },
});

Deno.bench({
  name: "find, 1M live",
  group: "find",
  fn(): void {
    lookup(large, largeProbes, largeK++);
  },
});
