/**
 * Model-based test of the virtio-iommu driver against the mock (see tools/fuzz/model.ts):
 * fast-check's `commands` against the reference model, a fixed CI budget of sequences.
 * VIOMMU_FUZZ_SEQUENCES sets the budget (default 4000); VIOMMU_FUZZ_SEED the seed (default 1).
 * A failure prints fast-check's report: the seed, the path, and the shrunk command list.
 */

import assert from "node:assert/strict";
import { type Op, ReferenceModel, runModel } from "../tools/fuzz/model.ts";
import { note } from "./_notes.ts";
import { RING_LAYOUTS } from "./_ring_layouts.ts";

function envNumber(name: string, fallback: number): number {
  const raw = Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

Deno.test("ReferenceModel: attach, map, translate, unmap by hand", () => {
  const m = new ReferenceModel();
  assert.equal(m.apply({ k: "attach", d: 1, ep: 8 }), "OK");
  assert.equal(
    m.apply({ k: "map", d: 1, iova: 0x10000n, phys: 0x20000n, size: 0x2000n, flags: 1 }),
    "OK",
  );
  assert.equal(m.apply({ k: "translate", ep: 8, iova: 0x11004n, access: "read" }), "ok 0x21004");
  assert.equal(
    m.apply({ k: "translate", ep: 8, iova: 0x11004n, access: "write" }),
    "fault MAPPING",
  );
  assert.equal(m.apply({ k: "unmap", d: 1, iova: 0x10000n, size: 0x1000n }), "DRIVER");
  assert.equal(m.apply({ k: "attach", d: 5, ep: 8 }), "DRIVER");
  assert.equal(m.apply({ k: "attach", d: 2, ep: 40 }), "NOENT");
  assert.equal(m.apply({ k: "detach", d: 2, ep: 8 }), "INVAL");
  assert.equal(m.apply({ k: "detach", d: 1, ep: 8 }), "OK");
  assert.equal(m.apply({ k: "translate", ep: 8, iova: 0x10000n, access: "read" }), "fault DOMAIN");
  assert.equal(m.driverState(), "1: 0x10000-0x11fff>0x20000/1");
  assert.equal(m.deviceState(), "");
});

/** A deliberately wrong model: translations of endpoint 8 that succeed are said to fault. */
class WrongModel extends ReferenceModel {
  override apply(op: Op): string {
    const outcome = super.apply(op);
    if (op.k === "translate" && op.ep === 8 && outcome.startsWith("ok")) return "fault MAPPING";
    return outcome;
  }
}

Deno.test("runModel() catches a wrong model and shrinks the sequence to attach, map, translate", async () => {
  const run = await runModel(2000, { seed: 7, makeModel: () => new WrongModel() });
  assert.ok(run.failure !== null, "a wrong model went unnoticed");
  // fast-check prints the shrunk command list: exactly the three ops that show the difference.
  const list = /Counterexample: \[(.*)\]/.exec(run.failure)?.[1] ?? "";
  const kinds = [...list.matchAll(/(attach|detach|map|unmap|probe|translate|reset)\(/g)]
    .map((m) => m[1]);
  assert.deepEqual(kinds, ["attach", "map", "translate"], run.failure);
  assert.match(run.failure, /seed: 7, path:/);
  // Replaying the reported path gives the same failure in one run.
  const path = /path: "([^"]*)"/.exec(run.failure)?.[1];
  const replayPath = /replayPath="([^"]*)"/.exec(run.failure)?.[1];
  assert.ok(path !== undefined && replayPath !== undefined, run.failure);
  const wrong = { seed: 7, path, replayPath, makeModel: () => new WrongModel() };
  const replay = await runModel(1, wrong);
  assert.equal(replay.sequences, 1);
  assert.ok(replay.failure?.includes(list), `${replay.failure} does not replay ${list}`);
  // The right model agrees with the driver on the same sequence.
  assert.equal((await runModel(1, { seed: 7, path, replayPath })).failure, null);
});

for (const ring of RING_LAYOUTS) {
  Deno.test(`VirtioIommu matches the reference model on fast-check command sequences (${ring} ring)`, async () => {
    const count = envNumber("VIOMMU_FUZZ_SEQUENCES", 4000);
    const seed = envNumber("VIOMMU_FUZZ_SEED", 1);
    const start = performance.now();
    const run = await runModel(count, { seed, ring });
    const ms = Math.round(performance.now() - start);
    note(`model (${ring}): ${run.sequences} sequences, ${run.ops} ops, seed ${seed}, ${ms} ms`);
    // The failure message carries fast-check's report: a failing test's output is not shown.
    assert.equal(run.failure, null, run.failure ?? "");
    assert.equal(run.sequences, count);
  });
}
