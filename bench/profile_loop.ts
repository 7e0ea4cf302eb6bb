/**
 * One request loop on the mock, for a CPU profile: the driver or the hand-written limit, one
 * request at a time or batched 256, on either ring, for a number of seconds; prints ns per
 * request. Profile it, then charge the time to layers with bench/profile_layers.ts:
 *
 * ```sh
 * deno run --allow-all --cpu-prof --cpu-prof-dir=prof --cpu-prof-name=one.cpuprofile \
 *   bench/profile_loop.ts one split 6
 * deno run --allow-read bench/profile_layers.ts prof/one.cpuprofile
 * ```
 *
 * Modes: `one` (driver, MAP+UNMAP pairs), `batch` (driver, 128 MAPs then 128 UNMAPs per
 * submit), `limit1` and `limitb` (the limit doing the same).
 *
 * @module
 */

import { MAP_READ, MAP_WRITE, type RingLayout } from "../mod.ts";
import { Baseline, driverRig } from "./_setup.ts";

const MODES = ["one", "batch", "limit1", "limitb"];
const [mode = "one", ring = "split", secs = "5"] = Deno.args;
if (!MODES.includes(mode) || (ring !== "split" && ring !== "packed")) {
  throw new TypeError(`Usage: profile_loop.ts ${MODES.join("|")} split|packed [seconds]`);
}
const RW = MAP_READ | MAP_WRITE;
const { iommu } = await driverRig({ ring: ring as RingLayout });
await iommu.attach(1, 0x08);
const batch = iommu.batch();
const base = await Baseline.createFor(ring as RingLayout);
/** 1000 MAP+UNMAP pairs, one request at a time. */
async function pairs(): Promise<number> {
  for (let k = 0; k < 1000; k++) {
    const iova = 0x100000 + (k & 1023) * 0x1000;
    await iommu.map(1, iova, 0x1000, 0x1000, RW);
    await iommu.unmap(1, iova, 0x1000);
  }
  return 2000;
}

/** One batch: 128 MAPs then 128 UNMAPs. */
async function batched(): Promise<number> {
  batch.clear();
  for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
  for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
  if (await batch.submit() !== 0) throw new Error(`batch failed: ${batch.error(0)}`);
  return 256;
}

/** The limit: 1000 pairs, or one batch of 256. */
function limit(): number {
  if (mode === "limitb") {
    base.batch(256);
    return 256;
  }
  for (let k = 0; k < 1000; k++) base.pairOneAtATime(k & 1023);
  return 2000;
}

// The loops are functions, as in bench/mock_figures.ts: top-level module code with awaits in
// it is not optimised like a function is, and its cost would be charged to the driver.
const step = mode === "one" ? pairs : mode === "batch" ? batched : limit;
const until = performance.now() + Number(secs) * 1000;
const t0 = performance.now();
let requests = 0;
while (performance.now() < until) requests += await step();
const ns = ((performance.now() - t0) * 1e6) / requests;
console.log(`${mode} ${ring}: ${ns.toFixed(1)} ns per request`);
await iommu.close();
await base.close();
