/**
 * The driver's request path leaves no per-request garbage (the hot-path rule), measured where
 * heap growth cannot tell: the mock device itself allocates per request. tests/_garbage_probe.ts
 * samples allocations with V8's heap profiler in a child process (it needs
 * `--allow-sys`) and charges each to the innermost of our files on its stack; bytes
 * charged to `driver/` must stay near zero, while its control, which allocates 24 bytes per
 * call, must be seen.
 *
 * @module
 */

import assert from "node:assert/strict";

const PROBE = new URL("./_garbage_probe.ts", import.meta.url).pathname;

let figures: Record<string, number> | null = null;

/** The probe's figures (run once for all the tests of this file). */
async function probe(): Promise<Record<string, number>> {
  if (figures !== null) return figures;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-sys", "--allow-env", PROBE],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `the probe failed: ${new TextDecoder().decode(out.stderr)}`);
  figures = JSON.parse(text) as Record<string, number>;
  return figures;
}

Deno.test("the garbage probe sees 24 bytes per call allocated by its own control", async () => {
  const { control } = await probe();
  assert.ok(control > 12, `the control allocated only ${control.toFixed(1)} bytes per call`);
});

for (const ring of ["split", "packed"] as const) {
  Deno.test(`VirtioIommu.map()/unmap() one at a time leave no garbage in the driver (${ring} ring)`, async () => {
    const bytes = (await probe())[`${ring} one at a time`];
    assert.ok(bytes < 2, `the driver allocated ${bytes.toFixed(1)} bytes per request`);
  });

  Deno.test(`the mock device answers requests without per-request garbage (${ring} ring)`, async () => {
    // It copied each request out with a subarray: about 208 bytes per request.
    const bytes = (await probe())[`${ring} mock one at a time`];
    assert.ok(bytes < 2, `the mock allocated ${bytes.toFixed(1)} bytes per request`);
  });

  Deno.test(`RequestBatch.submit() leaves no per-request garbage in the driver (${ring} ring)`, async () => {
    // Per batch the driver allocates a promise and queues microtasks: a few bytes per request.
    const bytes = (await probe())[`${ring} batched`];
    assert.ok(bytes < 4, `the driver allocated ${bytes.toFixed(1)} bytes per request`);
  });
}
