/**
 * The stress run (tools/fuzz/stress.ts) for a short budget: thousands of requests in flight
 * against a device that answers from a timer and injects faults; every request settles, and
 * after a clean reset the driver and the device agree. `deno task stress` runs it for longer.
 */

import assert from "node:assert/strict";
import { runStress, stressLine } from "../tools/fuzz/stress.ts";
import { note } from "./_notes.ts";

Deno.test("stress: 2000 requests in flight for 1.5 s with faults; sent = settled, lost 0", async () => {
  const f = await runStress({ ms: 1500, inFlight: 2000, rate: 0.002, seed: 7 });
  const line = stressLine(f);
  note(line);
  assert.equal(f.lost, 0, line);
  assert.equal(f.settled, f.sent, line);
  assert.ok(f.sent > 5000, line);
  assert.ok(f.peak >= 2000, line);
  assert.ok(f.faults > 0 && f.resets > 0, `faults were injected and recovered from: ${line}`);
  assert.ok(f.ok > 0, line);
  assert.equal(f.consistent, true, `driver records and device agree after the reset: ${line}`);
});
