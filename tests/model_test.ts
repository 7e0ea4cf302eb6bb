/**
 * Model-based test of the virtio-iommu driver against the mock (see tools/fuzz/model.ts): a fixed
 * CI budget of seeded random sequences, each compared step by step with the reference model.
 * VIOMMU_FUZZ_SEQUENCES sets the budget (default 2000); VIOMMU_FUZZ_SEED the first seed.
 */

import assert from "node:assert/strict";
import { RING_LAYOUTS } from "./_ring_layouts.ts";
import {
  formatOp,
  generate,
  type Op,
  ReferenceModel,
  runModel,
  runSequence,
  shrink,
} from "../tools/fuzz/model.ts";
import { note } from "./_notes.ts";

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

Deno.test("shrink() reduces a diverging sequence to attach, map, translate", async () => {
  const wrong = (): ReferenceModel => new WrongModel();
  let seed = 1;
  let ops = generate(seed, 24);
  while ((await runSequence(ops, wrong)) === null) ops = generate(++seed, 24);
  const small = await shrink(ops, wrong);
  assert.deepEqual(
    small.map((op) => op.k),
    ["attach", "map", "translate"],
    small.map(formatOp).join("; "),
  );
  assert.notEqual(await runSequence(small, wrong), null);
  // The right model agrees with the system on the same ops.
  assert.equal(await runSequence(small), null);
});

for (const ring of RING_LAYOUTS) {
  Deno.test(`VirtioIommu matches the reference model on seeded random sequences (${ring} ring)`, async () => {
    const count = envNumber("VIOMMU_FUZZ_SEQUENCES", 2000);
    const firstSeed = envNumber("VIOMMU_FUZZ_SEED", 1);
    const start = performance.now();
    const run = await runModel(count, { firstSeed, ring });
    const ms = Math.round(performance.now() - start);
    note(
      `model (${ring}): ${run.sequences} sequences, ${run.ops} ops, ` +
        `${run.divergences.length} divergences, ${ms} ms`,
    );
    // The failure message carries each divergence: a failing test's output is not shown.
    const divergences = run.divergences.map((d) =>
      `divergence at seed ${d.seed}, step ${d.divergence.step} (${d.divergence.what}):\n` +
      `  expected ${d.divergence.expected}\n  actual   ${d.divergence.actual}\n` +
      `  shortest sequence:\n    ${d.repro.join("\n    ")}`
    );
    assert.equal(
      run.divergences.length,
      0,
      `the driver diverged from the reference model:\n${divergences.join("\n")}`,
    );
    assert.equal(run.sequences, count);
  });
}
