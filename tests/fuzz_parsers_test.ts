/**
 * Fuzzing of the driver's readers of device bytes (tools/fuzz/parsers.ts): PROBE properties,
 * fault records and the used ring. Topology parsers (VIOT, FDT, built-in, PCI config) are
 * fuzzed in tests/topology_fuzz_test.ts. `deno task fuzz` runs these with a larger budget.
 */

import assert from "node:assert/strict";
import { fuzzFaults, fuzzProbe, fuzzUsedRing } from "../tools/fuzz/parsers.ts";

Deno.test("parseProbeProperties() on 20000 random and mutated areas: no throw, nothing read past probe_size", () => {
  const f = fuzzProbe(20_000, 11);
  assert.equal(f.inputs, 20_000);
  assert.ok(f.rejected > 100, `only ${f.rejected} inputs had malformed properties`);
});

Deno.test("decodeFault() on 20000 random and mutated records: malformed ones are null, valid ones exact", () => {
  const f = fuzzFaults(20_000, 12);
  assert.ok(f.rejected > 1000 && f.rejected < 20_000, `${f.rejected} rejected`);
});

Deno.test("SplitVirtqueue.popUsed() against 3000 devices writing random used entries: only VirtqueueError or a head in flight", () => {
  const f = fuzzUsedRing(3000, 13);
  assert.ok(f.rejected > 100 && f.rejected < 3000, `${f.rejected} broke`);
});
