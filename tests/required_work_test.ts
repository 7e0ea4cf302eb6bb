/**
 * bench/_required.ts: the limit plus the work every driver must add sends the limit's requests,
 * keeps its records in step (a mapping recorded on MAP is gone after its UNMAP) and settles.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Baseline } from "../bench/_setup.ts";
import { RequiredWork } from "../bench/_required.ts";

for (const ring of ["split", "packed"] as const) {
  Deno.test(`RequiredWork sends the limit's requests and keeps its records in step (${ring})`, async () => {
    const limit = await Baseline.createFor(ring);
    const work = new RequiredWork(limit);
    const before = limit.device.requestsHandled;
    // The same page twice: a record left behind by the first pair would make the second refuse.
    await work.pairOneAtATime(3);
    await work.pairOneAtATime(3);
    await work.batch(64);
    await work.batch(64);
    assert.equal(limit.device.requestsHandled - before, 4 + 128);
    await work.close();
  });
}
