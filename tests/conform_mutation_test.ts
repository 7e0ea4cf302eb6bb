/**
 * The mutation check of the conformance catalogue: for every rule, a mock device that breaks
 * exactly that rule (tests/_conform_mutants.ts), and the rule must then fail (MUST, MAY) or
 * deviate (SHOULD). A rule added to the catalogue without a mutation in
 * tests/_conform_mutations.ts fails the first test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CATALOGUE } from "../conform/catalogue.ts";
import { runConformance } from "../conform/runner.ts";
import { mutantTarget } from "./_conform_mutants.ts";
import { MUTATIONS } from "./_conform_mutations.ts";

Deno.test("conform catalogue: every rule has a mutation that breaks it, and no mutation is stale", () => {
  assert.deepEqual(Object.keys(MUTATIONS).sort(), CATALOGUE.map((r) => r.id).sort());
});

for (const rule of CATALOGUE) {
  const expected = rule.level === "SHOULD" ? "deviation" : "fail";
  Deno.test(`conform ${rule.id} (${rule.level}) is a ${expected} against a mock that breaks it`, async () => {
    const { target } = mutantTarget(MUTATIONS[rule.id]);
    const report = await runConformance(target, {
      only: [rule.id],
      hazardous: true,
      timeoutMs: 200,
      quietMs: 10,
    });
    const [result] = report.results;
    assert.equal(result.outcome, expected, `${rule.id}: ${result.outcome} — ${result.detail}`);
    assert.equal(report.mustFailed, rule.level === "MUST");
  });
}
