/**
 * Every fuzz target of tools/fuzz/targets.ts with a small CI budget (`deno task fuzz` runs a
 * million inputs each): no crash, no hang, no lost request, some inputs rejected (typed) and
 * some accepted; every target's valid inputs are accepted as they are; and the engine itself
 * catches, shrinks and replays a crash. VIOMMU_FUZZ_INPUTS sets the budget (default 3000).
 */

import assert from "node:assert/strict";
import { type FuzzTarget, runTarget } from "../tools/fuzz/engine.ts";
import { allTargets } from "../tools/fuzz/targets.ts";

function budget(): number {
  const name = "VIOMMU_FUZZ_INPUTS";
  const raw = Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : 3000;
}

for (const target of allTargets()) {
  Deno.test(`fuzz target "${target.name}": valid inputs pass, mutated ones give only typed rejections`, async () => {
    for (const [i, seed] of target.seeds().entries()) {
      assert.equal(await target.run(seed.slice()), "ok", `seed ${i} of ${target.name}`);
    }
    const inputs = budget();
    const f = await runTarget(target, { inputs, seed: 0x5eed });
    assert.equal(f.failure, null, f.failure ?? "");
    assert.deepEqual([f.inputs, f.crashes, f.hangs, f.lost], [inputs, 0, 0, 0]);
    assert.ok(f.rejected > 0 && f.rejected < inputs, `${f.rejected} of ${inputs} rejected`);
  });
}

/** A parser with a planted bug: a length byte of 0xee makes it read past its input. */
const buggy: FuzzTarget = {
  name: "planted bug",
  seeds: () => [Uint8Array.of(4, 1, 2, 3, 4), Uint8Array.of(2, 9, 9)],
  run(input) {
    if (input.length === 0 || input[0] > input.length - 1) return "rejected";
    if (input.includes(0xee)) throw new RangeError("read past the end");
    return "ok";
  },
};

Deno.test("runTarget() stops at a crash, shrinks it to one edit and replays it from the report", async () => {
  const f = await runTarget(buggy, { inputs: 100_000, seed: 3 });
  assert.equal(f.crashes, 1);
  assert.ok(f.inputs < 100_000);
  assert.match(f.failure ?? "", /RangeError: read past the end/);
  assert.match(f.failure ?? "", /Counterexample: \d+ bytes: .*ee/);
  const path = /path: "([^"]*)"/.exec(f.failure ?? "")?.[1];
  assert.ok(path !== undefined);
  const again = await runTarget(buggy, { inputs: 1, seed: 3, path });
  assert.equal(again.crashes, 1, "the reported seed and path replay the crash");
});

Deno.test("runTarget() reports an input that does not settle as a hang", async () => {
  const hanging: FuzzTarget = {
    name: "hang",
    seeds: () => [Uint8Array.of(1)],
    run: (input) =>
      input[0] === 1 ? Promise.resolve("ok") : new Promise<"ok">(() => {/* never settles */}),
  };
  const f = await runTarget(hanging, { inputs: 1000, seed: 1, hangMs: 50 });
  assert.equal(f.hangs, 1);
  assert.equal(f.crashes, 0);
  assert.match(f.failure ?? "", /FuzzHang: input did not settle in 50 ms/);
});
