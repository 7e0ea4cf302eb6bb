/**
 * The stress run (tools/fuzz/stress.ts) for a short budget: thousands of requests in flight
 * against a device that answers from a timer and injects faults; every request settles, and
 * after a clean reset the driver and the device agree. `deno task stress` runs it for longer.
 */

import assert from "node:assert/strict";
import { runStress, stressLine } from "../tools/fuzz/stress.ts";

Deno.test("stress: 2000 requests in flight for 1.5 s with faults; sent = settled, lost 0", async () => {
  const f = await runStress({ ms: 1500, inFlight: 2000, rate: 0.002, seed: 7 });
  console.log(stressLine(f));
  assert.equal(f.lost, 0);
  assert.equal(f.settled, f.sent);
  assert.ok(f.sent > 5000, `only ${f.sent} sent`);
  assert.ok(f.peak >= 2000, `peak in flight ${f.peak}`);
  assert.ok(f.faults > 0 && f.resets > 0, "faults were injected and recovered from");
  assert.ok(f.ok > 0);
  assert.equal(f.consistent, true, "driver records and device agree after the final reset");
});
