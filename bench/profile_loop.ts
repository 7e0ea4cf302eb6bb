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
const until = performance.now() + Number(secs) * 1000;
const t0 = performance.now();
let requests = 0;
while (performance.now() < until) {
  if (mode === "one") {
    for (let k = 0; k < 1000; k++) {
      const iova = 0x100000 + (k & 1023) * 0x1000;
      await iommu.map(1, iova, 0x1000, 0x1000, RW);
      await iommu.unmap(1, iova, 0x1000);
    }
    requests += 2000;
  } else if (mode === "batch") {
    batch.clear();
    for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
    for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
    if (await batch.submit() !== 0) throw new Error(`batch failed: ${batch.error(0)}`);
    requests += 256;
  } else if (mode === "limit1") {
    for (let k = 0; k < 1000; k++) base.pairOneAtATime(k & 1023);
    requests += 2000;
  } else {
    base.batch(256);
    requests += 256;
  }
}
const ns = ((performance.now() - t0) * 1e6) / requests;
console.log(`${mode} ${ring}: ${ns.toFixed(1)} ns per request`);
await iommu.close();
await base.close();
