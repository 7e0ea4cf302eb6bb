/**
 * Measuring heap growth of a hot loop, for the tests that prove a path allocation-free.
 *
 * @module
 */

import assert from "node:assert/strict";

let sink: unknown = null;

/**
 * Bytes the heap grew by while running `step` 200k times after a warm-up: the sum of the
 * increases of heapUsed between 40 samples, so a young-generation GC in between (which makes
 * heapUsed drop) cannot hide allocation in the other intervals. The least of three trials is
 * returned: a one-off allocation by the engine itself (optimised code, feedback vectors, a
 * late tier-up) lands in one trial, while per-call garbage shows in every trial.
 */
export function heapGrowth(step: (i: number) => void): number {
  for (let i = 0; i < 50_000; i++) step(i);
  const samples = 40;
  const perSample = 5_000;
  let least = Infinity;
  for (let trial = 0; trial < 3; trial++) {
    let prev = Deno.memoryUsage().heapUsed;
    let grown = 0;
    for (let s = 0; s < samples; s++) {
      for (let i = 0; i < perSample; i++) step(i);
      const now = Deno.memoryUsage().heapUsed;
      if (now > prev) grown += now - prev;
      prev = now;
    }
    least = Math.min(least, grown);
  }
  return least;
}

/** Checks that {@link heapGrowth} does see a loop that allocates 16+ bytes per iteration. */
export function allocatingControl(): void {
  const grown = heapGrowth((i) => {
    sink = { i };
  });
  assert.ok(grown > 1024 * 1024, `allocating control grew only ${grown} bytes`);
  assert.ok(sink !== null);
}
