/**
 * Peer benchmark: our driver against Linux's own virtio-iommu driver
 * (drivers/iommu/virtio-iommu.c), on the same QEMU device (virtio-iommu-pci with edu as the
 * endpoint), in the same kind of guest, from one command. Each round is two boots:
 *
 * 1. Linux's driver (6.12 guest, virtio_iommu + VFIO loaded, edu bound to vfio-pci): 4 KiB
 *    VFIO_IOMMU_MAP_DMA + VFIO_IOMMU_UNMAP_DMA pairs from Deno FFI, each ioctl one MAP or
 *    UNMAP request sent by Linux's driver; plus a null ioctl (the syscall floor).
 * 2. Ours (6.12 guest with virtio-pci unbound, or `--ours-kernel 6.1`): as many MAP+UNMAP pairs
 *    through the public API, one at a time and batched.
 *
 * Ours also times the device alone (a hand-written loop on the same device). Warm-up
 * repetitions are discarded (JIT under TCG), medians are taken over the rest, then over the
 * rounds (3 in the full run, 1 in `--smoke`), and the ratio ours/Linux is printed per mode.
 *
 * ```sh
 * deno task bench:peer -- --peer linux [--pairs 512] [--reps 21] [--warmup 30] [--batch 32]
 *   [--rounds 3] [--v8-flags <flags>] [--ours-kernel 6.12|6.1] [--smoke] [--json] [--out dir]
 * ```
 *
 * A full run writes `bench/results/peer.json` and `peer.svg` (a smoke run only with `--out`);
 * `deno task bench` redraws the chart from that JSON. On a terminal a progress line says which
 * round and boot is running (none with `--json` or under CI). The running is
 * bench/peer_run.ts, the table and chart bench/peer_report.ts.
 *
 * Needs what the guest runner needs (`.ci/install-guest-deps`). Permissions: read, write (the
 * cache), run (qemu, busybox, git, ldd), env.
 *
 * @module
 */

import { GuestSetupError } from "../tools/initramfs.ts";
import { Progress, seconds } from "../tools/progress.ts";
import { formatTable, peerChart } from "./peer_report.ts";
import {
  FULL_PARAMS,
  FULL_ROUNDS,
  type PeerBenchOptions,
  type PeerBenchResult,
  runPeerBench,
  SMOKE_PARAMS,
} from "./peer_run.ts";

/** Where results go by default: bench/results/ beside this file. */
export const RESULTS_DIR = new URL("./results", import.meta.url).pathname;

/** A parsed command line. */
export interface PeerCommandLine {
  /** What to run. */
  options: PeerBenchOptions;
  /** Print JSON instead of the table (and no progress line). */
  json: boolean;
  /** Folder for peer.json and peer.svg, or null to write nothing. */
  out: string | null;
}

/** Writes `peer.json` and `peer.svg` into `dir`. */
export async function writePeerResults(result: PeerBenchResult, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/peer.json`, JSON.stringify(result, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/peer.svg`, peerChart(result));
}

/** Parses the command line into options plus the output choices. */
export function parsePeerArgs(argv: string[]): PeerCommandLine {
  const args = argv[0] === "--" ? argv.slice(1) : argv;
  const smoke = args.includes("--smoke");
  const base = smoke ? SMOKE_PARAMS : FULL_PARAMS;
  const options: PeerBenchOptions = { ...base, rounds: smoke ? 1 : FULL_ROUNDS };
  let json = false;
  let out: string | null = smoke ? null : RESULTS_DIR;
  let peer: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) throw new TypeError(`${arg} needs a value`);
      return v;
    };
    const integer = (): number => {
      const n = Number(value());
      if (!Number.isInteger(n) || n <= 0) throw new TypeError(`${arg} needs a positive integer`);
      return n;
    };
    if (arg === "--peer") peer = value();
    else if (arg === "--pairs") options.pairs = integer();
    else if (arg === "--reps") options.reps = integer();
    else if (arg === "--warmup") options.warmup = Number(value());
    else if (arg === "--batch") options.batch = integer();
    else if (arg === "--rounds") options.rounds = integer();
    else if (arg === "--v8-flags") options.v8Flags = value();
    else if (arg === "--ours-kernel") {
      const k = value();
      if (k !== "6.1" && k !== "6.12") throw new TypeError("--ours-kernel needs 6.1 or 6.12");
      options.oursKernel = k;
    } else if (arg === "--json") json = true;
    else if (arg === "--out") out = value();
    else if (arg === "--smoke") continue;
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  if (peer !== "linux") {
    throw new TypeError(
      "Usage: deno task bench:peer -- --peer linux [--smoke] [--json] [--pairs n] [--reps n] " +
        "[--warmup n] [--batch n] [--rounds n] [--v8-flags f] [--ours-kernel 6.12|6.1] " +
        "[--out dir]",
    );
  }
  if (!Number.isInteger(options.warmup) || options.warmup < 0) {
    throw new TypeError("--warmup needs a non-negative integer");
  }
  if (options.pairs % options.batch !== 0) {
    throw new TypeError(`--pairs ${options.pairs} must be a multiple of --batch ${options.batch}`);
  }
  return { options, json, out };
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: PeerCommandLine;
  try {
    parsed = parsePeerArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const progress = Progress.stderr({ quiet: parsed.json });
  const start = performance.now();
  try {
    const result = await runPeerBench({
      ...parsed.options,
      onPhase: (what) =>
        progress.update(`peer bench: ${what} (${seconds(performance.now() - start)})`),
    });
    progress.clear();
    console.log(parsed.json ? JSON.stringify(result, null, 2) : formatTable(result));
    if (parsed.out !== null) {
      await writePeerResults(result, parsed.out);
      if (!parsed.json) console.log(`\nwritten: ${parsed.out}/peer.json, ${parsed.out}/peer.svg`);
    }
    return 0;
  } catch (err) {
    progress.clear();
    if (err instanceof GuestSetupError) {
      console.error(err.message);
      return 3;
    }
    throw err;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
