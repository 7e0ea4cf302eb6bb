/**
 * Smoke run of the peer benchmark (bench/peer.ts) in CI: two boots (Linux's virtio-iommu
 * driver through VFIO on the 6.12 guest, then ours on the same kind of guest), few
 * repetitions. Asserts that both sides measured every mode and that the summary is coherent;
 * it prints the table but does not assert the speed targets (a smoke run is too short and TCG
 * timing too noisy to gate CI on). Then one boot of the TCG profile (bench/profile_tcg.ts), two
 * short modes, whose layers must be the driver's and the limit's. Skipped without QEMU or the
 * 6.12 kernel, except under CI.
 *
 * @module
 */

import assert from "node:assert/strict";
import { defaultProjectRoot, locateTools } from "../tools/guest_tools.ts";
import { parsePeerArgs, RESULTS_DIR } from "../bench/peer.ts";
import { formatTable } from "../bench/peer_report.ts";
import {
  FULL_ROUNDS,
  median,
  type PeerBenchResult,
  runPeerBench,
  SMOKE_PARAMS,
} from "../bench/peer_run.ts";
import { runTcgProfile } from "../bench/profile_tcg.ts";
import { note, skipName, status } from "./_notes.ts";

const root = defaultProjectRoot();
const tools = locateTools(root, "6.12");
const missing = Array.isArray(tools) ? tools : [];
const inCi = Deno.env.get("CI") === "true";

Deno.test("median() takes the middle value, or the mean of the two middle ones", () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), RangeError);
});

Deno.test("parsePeerArgs() needs --peer linux and checks the pairs/batch relation", () => {
  assert.deepEqual(parsePeerArgs(["--", "--peer", "linux", "--smoke", "--json"]), {
    options: { ...SMOKE_PARAMS, rounds: 1 },
    json: true,
    out: null,
  });
  assert.equal(parsePeerArgs(["--peer", "linux"]).options.rounds, FULL_ROUNDS);
  assert.equal(parsePeerArgs(["--peer", "linux"]).out, RESULTS_DIR, "a full run writes results");
  assert.equal(parsePeerArgs(["--peer", "linux", "--smoke", "--out", "/tmp/x"]).out, "/tmp/x");
  assert.equal(parsePeerArgs(["--peer", "linux", "--rounds", "5"]).options.rounds, 5);
  assert.throws(() => parsePeerArgs(["--peer", "linux", "--rounds", "0"]), /positive integer/);
  assert.equal(
    parsePeerArgs(["--peer", "linux", "--v8-flags", "--no-maglev"]).options.v8Flags,
    "--no-maglev",
  );
  assert.throws(() => parsePeerArgs(["--peer", "linux", "--v8-flags"]), /needs a value/);
  assert.equal(
    parsePeerArgs(["--peer", "linux", "--ours-kernel", "6.1"]).options.oursKernel,
    "6.1",
  );
  assert.throws(() => parsePeerArgs(["--smoke"]), /--peer linux/);
  assert.throws(() => parsePeerArgs(["--peer", "bsd"]), /--peer linux/);
  assert.throws(() => parsePeerArgs(["--peer", "linux", "--pairs", "33"]), /multiple of --batch/);
});

let pending: Promise<PeerBenchResult> | null = null;

/** Runs the smoke benchmark once for every test below. */
function smoke(): Promise<PeerBenchResult> {
  pending ??= (async () => {
    const start = performance.now();
    const result = await runPeerBench({
      ...SMOKE_PARAMS,
      projectRoot: root,
      timeoutSeconds: 120,
      onPhase: (what) => status(`peer bench smoke: ${what}`),
    }).finally(() => status(null));
    note(
      `peer smoke: 2 boots in ${((performance.now() - start) / 1000).toFixed(1)} s (too few ` +
        "repetitions to judge speed: deno task bench:peer -- --peer linux measures it)",
    );
    // The table must still render from a real result.
    assert.match(formatTable(result), /one pair at a time/);
    return result;
  })();
  return pending;
}

if (missing.length > 0) {
  const why = missing.join("; ");
  if (inCi) {
    Deno.test("peer bench: QEMU and the 6.12 guest kernel are installed in CI", () => {
      assert.fail(`The peer benchmark cannot run in CI: ${why} (run .ci/install-guest-deps)`);
    });
  } else {
    Deno.test({ name: skipName("peer bench smoke", why), ignore: true, fn(): void {} });
  }
} else {
  Deno.test("peer bench: Linux's side binds edu to vfio-pci and times every mode", async () => {
    const { linux: [linux], params } = await smoke();
    assert.match(linux.kernel, /^6\.12\./);
    assert.equal((linux.report.binding as { driver: string }).driver, "vfio-pci");
    for (const mode of ["one", "batched", "nullIoctl"]) {
      const samples = linux.report[mode] as number[];
      assert.equal(samples.length, params.reps, `${mode}: one sample per measured repetition`);
      assert.ok(samples.every((v) => v > 0), `${mode}: positive timings`);
    }
  });

  Deno.test("peer bench: our side drives the same device with virtio-pci unbound and leaves no mapping", async () => {
    const { ours: [ours], params } = await smoke();
    assert.match(ours.kernel, /^6\.12\./);
    assert.equal(ours.report.bdf, "0000:00:02.0");
    assert.equal(ours.report.endpoint, 0x18);
    assert.equal(ours.report.mappingsLeft, 0);
    const modes = ["one", "batched", "batchedRange", "promiseAll"];
    const floors = [
      "floorOne",
      "floorBatched",
      "floorBatchedRange",
      "requiredOne",
      "requiredBatched",
    ];
    for (const mode of [...modes, ...floors]) {
      const samples = ours.report[mode] as number[];
      assert.equal(samples.length, params.reps, `${mode}: one sample per measured repetition`);
      assert.ok(samples.every((v) => v > 0), `${mode}: positive timings`);
    }
  });

  Deno.test("peer bench: the null ioctl is cheaper than a MAP+UNMAP pair and ratios are consistent", async () => {
    const { linux: [linux], ours: [ours], summary: s, spread } = await smoke();
    // Best repetitions, not medians: a smoke run's few repetitions can all be JIT-noisy.
    const best = (key: string): number => Math.min(...(linux.report[key] as number[]));
    assert.ok(
      best("nullIoctl") < best("one"),
      "two ioctls that send requests cost more than one null",
    );
    assert.equal(s.ratioOne, Math.round((s.oursOne / s.linuxOne) * 100) / 100);
    // One round: every figure's spread is that boot's median alone.
    assert.deepEqual(spread.oursOne, [s.oursOne, s.oursOne]);
    // The hand-written loop does a subset of the driver's work on the same device.
    const oursBest = (key: string): number => Math.min(...(ours.report[key] as number[]));
    assert.ok(oursBest("floorOne") < oursBest("one"), "the device alone is cheaper than ours");
    assert.ok(
      oursBest("floorOne") < oursBest("requiredOne"),
      "the required work costs something on top of the device",
    );
    assert.equal(s.ratioBatched, Math.round((s.oursBatched / s.linuxOne) * 100) / 100);
  });

  Deno.test("TCG profile: one boot charges our driver's time and the device-alone loop's to their layers", async () => {
    const start = performance.now();
    const report = await runTcgProfile({
      modes: ["one", "floorOne"],
      seconds: 1,
      projectRoot: root,
    })
      .finally(() => status(null));
    note(
      `TCG profile smoke: 1 boot, 2 modes in ${((performance.now() - start) / 1000).toFixed(1)} s`,
    );
    const [one, floor] = report.modes;
    assert.deepEqual(report.modes.map((m) => m.mode), ["one", "floorOne"]);
    // Start-up and warm-up left out: about a second of samples per mode, not the whole run.
    for (const m of report.modes) {
      assert.ok(m.sampledMs > 300 && m.sampledMs < 5000, `${m.mode}: ${m.sampledMs} ms sampled`);
      assert.ok(m.usPerPair > 0 && m.functions.length > 0);
    }
    const driver = (layers: { name: string; percent: number }[]): number =>
      layers.filter((l) => l.name.startsWith("driver")).reduce((a, l) => a + l.percent, 0);
    const limit = (layers: { name: string; percent: number }[]): number =>
      layers.find((l) => l.name === "limit (hand-written)")?.percent ?? 0;
    assert.ok(driver(one.layers) > 30, `our driver's layers: ${driver(one.layers).toFixed(1)} %`);
    assert.equal(limit(one.layers), 0);
    assert.ok(limit(floor.layers) > 50, `the limit's layer: ${limit(floor.layers).toFixed(1)} %`);
    assert.ok(driver(floor.layers) < 5, "the device-alone loop runs none of the driver");
  });
}
