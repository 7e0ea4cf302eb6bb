/**
 * The CPU-profile attribution of bench/profile_layers.ts (which layer a frame's self time is
 * charged to, the interval map split by caller, the time window) and the per-mode table of
 * bench/profile_tcg.ts, on small hand-built profiles.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type CpuProfile, formatLayerTable, layerOf, layerTable } from "../bench/profile_layers.ts";
import {
  DEFAULT_PROFILE_MODES,
  formatModeProfile,
  parseProfileArgs,
  PROFILE_USAGE,
} from "../bench/profile_tcg.ts";

const F = "file:///project/";

/** A profile whose node `i + 2` (child of its parent) gets samples[i] samples of 100 µs each. */
function profile(
  frames: { fn: string; url: string; parent: number }[],
  samples: number[],
): CpuProfile {
  const nodes = [
    { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: 0 }, children: [] },
  ] as CpuProfile["nodes"];
  frames.forEach((f, i) => {
    nodes.push({ id: i + 2, callFrame: { functionName: f.fn, url: f.url, lineNumber: 9 } });
    const parent = nodes[f.parent - 1];
    parent.children = [...(parent.children ?? []), i + 2];
  });
  const ids: number[] = [];
  samples.forEach((n, i) => {
    for (let k = 0; k < n; k++) ids.push(i + 2);
  });
  // A sample's self time runs to the next sample: one last sample (of the root) closes them.
  ids.push(1);
  return {
    nodes,
    startTime: 1_000_000,
    samples: ids,
    timeDeltas: ids.map(() => 100),
  };
}

Deno.test("layerOf() names the layer of each folder of the project, null for util/ and builtins", () => {
  assert.equal(
    layerOf(`${F}driver/iommu/fast_path.ts`, "map"),
    "driver: public API, fast path, batch",
  );
  assert.equal(layerOf(`${F}driver/iommu/request_queue.ts`, "x"), "driver: request queue");
  assert.equal(layerOf(`${F}driver/virtio/split_queue.ts`, "x"), "driver: ring");
  assert.equal(layerOf(`${F}transport/pci.ts`, "notify"), "transport (notify, registers)");
  assert.equal(layerOf(`${F}host/ffi.ts`, "write16"), "host backend (BAR access, DMA memory)");
  assert.equal(layerOf(`${F}bench/peer_guest.ts`, ""), "bench loop (its awaits)");
  assert.equal(layerOf(`${F}bench/_setup.ts`, "#drain"), "limit (hand-written)");
  assert.equal(
    layerOf(`${F}bench/_required.ts`, "batch"),
    "required work (records, awaits, barriers)",
  );
  assert.equal(layerOf("", "(garbage collector)"), "GC");
  assert.equal(layerOf("", "(idle)"), "idle (waiting for the event loop)");
  assert.equal(layerOf(`${F}util/interval_map.ts`, "insert"), null);
  assert.equal(layerOf("", "copyWithin"), null);
});

Deno.test("layerTable() charges util/ to its caller's layer and splits the interval map by caller", () => {
  const p = profile([
    { fn: "map", url: `${F}driver/iommu/planner.ts`, parent: 1 }, // 2
    { fn: "insert", url: `${F}util/interval_map.ts`, parent: 2 }, // 3
    { fn: "handle", url: `${F}mock/iommu/requests.ts`, parent: 1 }, // 4
    { fn: "insert", url: `${F}util/interval_map.ts`, parent: 4 }, // 5
    { fn: "set", url: "", parent: 2 }, // 6: a builtin the planner called
  ], [2, 3, 4, 1, 0]);
  const t = layerTable(p);
  const share = (name: string): number | undefined =>
    t.layers.find((l) => l.name === name)?.percent;
  assert.equal(share("driver: planner + checks"), 20);
  assert.equal(share("driver: interval map"), 30);
  assert.equal(share("mock device"), 40);
  assert.equal(share("mock device (its interval map)"), 10);
  assert.deepEqual(t.layers.map((l) => l.percent), [40, 30, 20, 10], "largest first");
  // Per function, one line however many layers call it.
  const fn = (name: string): number | undefined =>
    t.functions.find((f) => f.name === name)?.percent;
  assert.equal(fn("insert util/interval_map.ts:10"), 40);
  assert.equal(fn("handle iommu/requests.ts:10"), 40);
  assert.match(formatLayerTable(t, 2), /40\.0 % {2}mock device\n[\s\S]*top functions/);
});

Deno.test("layerTable() with a window counts only the samples taken within it", () => {
  const p = profile([
    { fn: "#drain", url: `${F}bench/_setup.ts`, parent: 1 },
    { fn: "notify", url: `${F}transport/pci.ts`, parent: 1 },
  ], [5, 5]);
  // Samples at 1_000_100 … 1_000_500 are #drain, 1_000_600 … 1_001_000 notify.
  const late = layerTable(p, [1_000_550, 1_002_000]);
  assert.deepEqual(late.layers.map((l) => l.name), ["transport (notify, registers)"]);
  assert.ok(late.sampledMs < layerTable(p).sampledMs);
  assert.equal(layerTable(p, [0, 1]).layers.length, 0, "nothing in an early window");
});

Deno.test("formatModeProfile() gives each layer its µs per pair and hides the smallest", () => {
  const text = formatModeProfile({
    mode: "one",
    usPerPair: 10,
    sampledMs: 1000,
    layers: [{ name: "driver: ring", percent: 25 }, { name: "GC", percent: 0.2 }],
    functions: [{ name: "popUsed virtio/split_queue.ts:417", percent: 9 }],
  }, 1);
  assert.match(text, /^one: 10\.00 µs per MAP\+UNMAP pair/);
  assert.match(text, /25\.0 %\s+2\.50 µs {2}driver: ring/);
  assert.doesNotMatch(text, /GC/);
  assert.match(text, /9\.0 % {2}popUsed/);
});

Deno.test("bench:profile-tcg's command line: defaults, every option, help, and refusals", () => {
  assert.deepEqual(parseProfileArgs([]), {
    help: false,
    options: {
      modes: [...DEFAULT_PROFILE_MODES],
      seconds: 6,
      v8Flags: "--single-threaded",
      ring: "split",
    },
    top: 12,
    out: null,
  });
  const line = parseProfileArgs([
    "--",
    "--modes",
    "one,requiredOne",
    "--seconds",
    "2",
    "--ring",
    "packed",
    "--top",
    "3",
    "--out",
    "/tmp/x",
  ]);
  assert.ok(!line.help);
  assert.deepEqual(line.options.modes, ["one", "requiredOne"]);
  assert.equal(line.options.ring, "packed");
  assert.equal(line.options.seconds, 2);
  assert.equal(line.top, 3);
  assert.equal(line.out, "/tmp/x");
  assert.deepEqual(parseProfileArgs(["-h"]), { help: true });
  const flags = parseProfileArgs(["--v8-flags=--single-threaded,--no-maglev"]);
  assert.ok(!flags.help);
  assert.equal(flags.options.v8Flags, "--single-threaded,--no-maglev");
  assert.match(PROFILE_USAGE, /--modes a,b/);
  assert.throws(() => parseProfileArgs(["--bogus"]), /Unknown option '--bogus'/);
  assert.throws(() => parseProfileArgs(["--modes", "one,nope"]), /unknown mode nope/);
  assert.throws(() => parseProfileArgs(["--seconds", "0"]), /positive integer/);
  assert.throws(() => parseProfileArgs(["--ring", "ring"]), /split or packed/);
});
