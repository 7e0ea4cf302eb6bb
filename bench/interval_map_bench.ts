/**
 * IntervalMap cost at 1,000 and at 1,000,000 live intervals. Its memory per interval is a
 * line of `deno task bench`'s summary (bench/mock_figures.ts), not printed here: a line printed
 * while `deno bench` loads this file lands in the middle of its table.
 *
 * Run: `deno bench bench/interval_map_bench.ts`.
 *
 * @module
 */

import type { IntervalMap } from "../util/interval_map.ts";
import { buildPages as build, PAGE, STRIDE } from "./_interval_pages.ts";

/** Distinct gap positions the measured functions cycle through. */
const PROBES = 1 << 14;

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
