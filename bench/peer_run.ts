/**
 * Running the peer benchmark (see bench/peer.ts for what it compares): one boot per side and
 * round through the guest runner, each boot's report parsed, then the medians over the rounds,
 * the lowest–highest boot of each figure (the spread) and the ratios ours/Linux.
 *
 * @module
 */

import type { GuestKernel } from "../tools/guest_setup.ts";
import { describePhase, runGuest } from "../tools/qemu.ts";
import type { PeerParams } from "./peer_guest.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";

/** Options for {@link runPeerBench}. */
export interface PeerBenchOptions extends PeerParams {
  /** Kernel of the boot that runs our driver (default 6.12, the same as Linux's). */
  oursKernel?: GuestKernel;
  /** The project root (default: the folder above `bench/`). */
  projectRoot?: string;
  /** Seconds before a boot is killed (default 150). */
  timeoutSeconds?: number;
  /**
   * Rounds of boots, each a Linux boot then one of ours (default 1). A figure is the median
   * over the rounds of each boot's median: under TCG one boot can run the same code 30 %
   * faster or slower than the next (seen across identical boots), so one boot is one sample.
   */
  rounds?: number;
  /** V8 flags of both sides (default {@link PEER_V8_FLAGS}). */
  v8Flags?: string;
  /** Called as each boot goes through its phases (for a progress line). */
  onPhase?: (what: string) => void;
  /**
   * The ring layout of our side (default split, QEMU's default): "packed" boots QEMU with
   * `-global virtio-iommu-pci.packed=on` and has both our driver and the device-alone loop
   * use the packed ring (virtio 1.3 §2.8).
   */
  ring?: RingLayout;
}

/** One boot's figures. */
export interface PeerBoot {
  /** The guest's kernel release. */
  kernel: string;
  /** Milliseconds from starting QEMU to the command (boot). */
  bootMs: number;
  /** Milliseconds of the whole run. */
  totalMs: number;
  /** The guest report (every measured repetition, µs per pair, per mode). */
  report: Record<string, unknown>;
}

/** Median µs per pair (or per ioctl) of each mode, and the ratios. */
export interface PeerSummary {
  /** Linux, one MAP+UNMAP pair at a time (two ioctls). */
  linuxOne: number;
  /** Linux, N MAP ioctls then one range UNMAP ioctl, per pair. */
  linuxBatched: number;
  /** Linux, a null VFIO ioctl (VFIO_GET_API_VERSION). */
  linuxNullIoctl: number;
  /** Ours, one pair at a time (await each). */
  oursOne: number;
  /** Ours, RequestBatch of `batch` MAPs then `batch` UNMAPs, per pair. */
  oursBatched: number;
  /** Ours, Promise.all of `batch` map() calls then `batch` unmap() calls, per pair. */
  oursPromiseAll: number;
  /** oursOne / linuxOne (issue 19's target ≤ 0.3). */
  ratioOne: number;
  /** oursBatched / linuxOne (issue 19's target ≤ 0.2). */
  ratioBatched: number;
  /** oursBatched / linuxBatched (against Linux's own fewest-syscalls path). */
  ratioBatchedVsLinuxBatched: number;
  /** Ours, one RequestBatch of `batch` MAPs plus one range UNMAP, per pair. */
  oursBatchedRange: number;
  /** oursBatchedRange / linuxOne. */
  ratioBatchedRange: number;
  /** oursBatchedRange / linuxBatched. */
  ratioBatchedRangeVsLinuxBatched: number;
  /**
   * The device's own cost, from a hand-written loop on the same device (bench/_setup.ts
   * Baseline: pre-encoded requests, no checks, no records, no promises): one pair at a time.
   */
  floorOne: number;
  /** The same, `batch` MAPs and `batch` UNMAPs per notification, per pair. */
  floorBatched: number;
  /** The same, `batch` MAPs and one range UNMAP per notification, per pair. */
  floorBatchedRange: number;
  /**
   * The device-alone loop plus the work any driver that records mappings and settles promises
   * must add (bench/_required.ts), one pair at a time: the floor of `oursOne`.
   */
  requiredOne: number;
  /** The same, batched as floorBatched: the floor of `oursBatched`. */
  requiredBatched: number;
}

/** The whole result. */
export interface PeerBenchResult {
  /** The day of the run, `YYYY-MM-DD`. */
  date: string;
  /** The parameters every boot used. */
  params: PeerParams;
  /** Linux's boots, one per round. */
  linux: PeerBoot[];
  /** Our boots, one per round. */
  ours: PeerBoot[];
  /** Medians and ratios. */
  summary: PeerSummary;
  /** Per figure of the summary that comes from boots: the lowest and highest boot median. */
  spread: Record<string, [number, number]>;
  /** The V8 flags both sides ran with. */
  v8Flags: string;
}

/** Parameters of the CI smoke run: few repetitions, seconds per boot. */
export const SMOKE_PARAMS: PeerParams = { pairs: 128, reps: 3, warmup: 3, batch: 32 };
/**
 * Parameters of the full run. The warm-up is long because under TCG V8 keeps optimising hot
 * functions for about 25 repetitions of 512 pairs (each compile a spike of tens of ms, seen
 * with --trace-opt); the measured repetitions start after that. A repetition takes
 * milliseconds, so the boots dominate the run time either way.
 */
export const FULL_PARAMS: PeerParams = { pairs: 512, reps: 21, warmup: 30, batch: 32 };

/**
 * V8 flags of both sides by default: Deno's own plus only `--single-threaded`, what a user runs
 * in a one-vCPU guest (V8's background compiler and GC threads would share the vCPU with the
 * measured loop, and install code mid-measurement, which makes TCG retranslate). Issue 19 judges
 * the driver with these. `--v8-flags` takes others, e.g. the inlining budgets that suit TCG
 * better ({@link TUNED_TCG_V8_FLAGS}).
 */
export const PEER_V8_FLAGS = "--single-threaded";

/**
 * Flags tuned for TCG, for comparison with `--v8-flags`: `--no-maglev` (Maglev, V8's mid-tier
 * compiler, compiles and deoptimises under TCG, where each new piece of code is retranslated)
 * and larger inlining budgets (`--max-inlined-bytecode-size=2000`,
 * `--max-inlined-bytecode-size-cumulative=4000`; V8's defaults, 460 and 920, are sized for
 * native CPUs, and under TCG a call V8 does not inline costs as much as dozens of loads and
 * stores). They made the peer table's figures of 2026-11-22.
 */
export const TUNED_TCG_V8_FLAGS = "--single-threaded,--no-maglev," +
  "--max-inlined-bytecode-size=2000,--max-inlined-bytecode-size-cumulative=4000";

/**
 * The QEMU arguments of a peer-benchmark guest beyond the runner's own: edu as the endpoint, and
 * for the packed ring `-global virtio-iommu-pci.packed=on` (bench/profile_tcg.ts boots the same).
 */
export function peerQemuArgs(ring: RingLayout): string[] {
  return [
    "-device",
    "edu",
    ...(ring === "packed" ? ["-global", "virtio-iommu-pci.packed=on"] : []),
  ];
}

/** Rounds of boots of the full run (see {@link PeerBenchOptions.rounds}). */
export const FULL_ROUNDS = 3;

/** Returns the median of `values` (which must not be empty). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("Cannot take the median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Boots one guest running bench/peer_guest.ts for `side` and returns its figures. */
export async function boot(
  side: "linux" | "ours",
  kernel: GuestKernel,
  params: PeerParams,
  options: PeerBenchOptions,
): Promise<PeerBoot> {
  // Both sides run the same Deno with the same flags (see PEER_V8_FLAGS).
  const command = [
    "deno",
    "run",
    "-A",
    `--v8-flags=${options.v8Flags ?? PEER_V8_FLAGS}`,
    "bench/peer_guest.ts",
    "--side",
    side,
    "--pairs",
    String(params.pairs),
    "--reps",
    String(params.reps),
    "--warmup",
    String(params.warmup),
    "--batch",
    String(params.batch),
  ];
  const packed = side === "ours" && options.ring === "packed";
  if (packed) command.push("--ring", "packed");
  const result = await runGuest(command, {
    kernel,
    iommuDriver: side === "linux" ? "linux" : "userspace",
    qemuArgs: peerQemuArgs(packed ? "packed" : "split"),
    timeoutSeconds: options.timeoutSeconds ?? 150,
    projectRoot: options.projectRoot,
    onPhase: (phase) =>
      options.onPhase?.(
        `${side === "linux" ? "Linux's driver" : "our driver"} (${kernel}): ${
          phase === "run" ? "measuring" : describePhase(phase)
        }`,
      ),
  });
  const line = result.lines.find((l) => l.startsWith("PEER "));
  if (result.code !== 0 || line === undefined) {
    throw new Error(
      `The ${side} boot failed (exit code ${result.code}${
        result.timedOut ? ", timed out" : ""
      }):\n` +
        result.lines.join("\n") + "\n--- guest console ---\n" + result.noise.slice(-30).join("\n"),
    );
  }
  const report = JSON.parse(line.slice("PEER ".length)) as Record<string, unknown>;
  return {
    kernel: String(report.kernel),
    bootMs: Math.round(result.bootMs),
    totalMs: Math.round(result.totalMs),
    report,
  };
}

/** Rounds to two decimals. */
function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/** Runs both boots (Linux's first) and summarises them. */
export async function runPeerBench(options: PeerBenchOptions): Promise<PeerBenchResult> {
  const params: PeerParams = {
    pairs: options.pairs,
    reps: options.reps,
    warmup: options.warmup,
    batch: options.batch,
  };
  const rounds = options.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError("rounds must be 1 or more");
  const linuxBoots: PeerBoot[] = [];
  const oursBoots: PeerBoot[] = [];
  for (let r = 0; r < rounds; r++) {
    const round = {
      ...options,
      onPhase: (what: string) => options.onPhase?.(`round ${r + 1}/${rounds}, ${what}`),
    };
    linuxBoots.push(await boot("linux", "6.12", params, round));
    oursBoots.push(await boot("ours", options.oursKernel ?? "6.12", params, round));
  }
  const spread: Record<string, [number, number]> = {};
  const linux = "linux", ours = "ours";
  const m = (side: string, key: string): number => {
    const boots = side === linux ? linuxBoots : oursBoots;
    const each = boots.map((b) => round2(median(b.report[key] as number[])));
    const name = side + key[0].toUpperCase() + key.slice(1);
    spread[name] = [Math.min(...each), Math.max(...each)];
    return round2(median(each));
  };
  const linuxOne = m(linux, "one");
  const linuxBatched = m(linux, "batched");
  const oursOne = m(ours, "one");
  const oursBatched = m(ours, "batched");
  const oursBatchedRange = m(ours, "batchedRange");
  const summary: PeerSummary = {
    linuxOne,
    linuxBatched,
    linuxNullIoctl: m(linux, "nullIoctl"),
    oursOne,
    oursBatched,
    oursPromiseAll: m(ours, "promiseAll"),
    ratioOne: round2(oursOne / linuxOne),
    ratioBatched: round2(oursBatched / linuxOne),
    ratioBatchedVsLinuxBatched: round2(oursBatched / linuxBatched),
    oursBatchedRange,
    ratioBatchedRange: round2(oursBatchedRange / linuxOne),
    ratioBatchedRangeVsLinuxBatched: round2(oursBatchedRange / linuxBatched),
    floorOne: m(ours, "floorOne"),
    floorBatched: m(ours, "floorBatched"),
    floorBatchedRange: m(ours, "floorBatchedRange"),
    requiredOne: m(ours, "requiredOne"),
    requiredBatched: m(ours, "requiredBatched"),
  };
  return {
    date: new Date().toISOString().slice(0, 10),
    params,
    linux: linuxBoots,
    ours: oursBoots,
    summary,
    spread,
    v8Flags: options.v8Flags ?? PEER_V8_FLAGS,
  };
}
