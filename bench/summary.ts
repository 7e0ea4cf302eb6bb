/**
 * `deno task bench`: runs `deno bench bench/` (its table first), then measures the figures of
 * bench/mock_figures.ts and prints them as a table, or everything as one JSON object with
 * `--json`. It writes `bench/results/summary.json` and two SVG charts beside it (scaling from
 * 1 000 to 1 000 000 live mappings; the driver against the limit per mode), and redraws
 * `peer.svg` from the `peer.json` of the last full `deno task bench:peer` run. `--real` adds
 * QEMU's device in a TCG guest (one boot per ring layout: the default, then `packed=on`).
 * `--help` prints the options and runs nothing. The limit/driver table covers both ring
 * layouts, each against its own hand-written limit.
 *
 * Every figure says what it is per: the limit/driver table is per request; the real device's
 * "one at a time" ratio is per request, its range-UNMAP ratio per MAP+UNMAP pair.
 *
 * @module
 */

import os from "node:os";
import { Progress } from "../tools/progress.ts";
import { measureMock, type MockFigures, MODE_NAMES, MODES } from "./mock_figures.ts";
import { peerChart } from "./peer_report.ts";
import type { PeerBenchResult } from "./peer_run.ts";
import type { RingLayout } from "../mod.ts";
import { modesChart, type RunInfo, scalingChart } from "./summary_charts.ts";

/** Where results go by default. */
export const RESULTS_DIR = new URL("./results", import.meta.url).pathname;

const HELP = `Usage: deno task bench [-- options]

Runs deno bench on bench/*_bench.ts, then measures the driver against the hand-written limit
on the mock device (per request; split and packed ring, each against its own), MAP+UNMAP pairs with 1,000 to 1,000,000 live mappings, heap
per mapping and heap growth; writes bench/results/summary.json, scaling.svg and modes.svg,
and peer.svg from the last peer run's peer.json.

  --json      one JSON object on stdout (deno bench's results included), no progress line
  --quick     fewer repetitions and mappings (a smoke run; writes files only with --out)
  --real      also QEMU's virtio-iommu in a TCG guest (a boot per ring; .ci/install-guest-deps)
  --out dir   where to write the JSON and SVG files (default bench/results)
  --no-deno-bench  skip the deno bench table
  -h, --help  this help (runs nothing)`;

/** A parsed command line. */
export interface SummaryArgs {
  /** Print JSON. */
  json: boolean;
  /** Smoke run. */
  quick: boolean;
  /** Boot QEMU too. */
  real: boolean;
  /** Where to write results, or null for nowhere. */
  out: string | null;
  /** Run `deno bench` first. */
  denoBench: boolean;
  /** Print the help and stop. */
  help: boolean;
}

/** Parses the arguments; throws TypeError naming a bad one. */
export function parseSummaryArgs(argv: string[]): SummaryArgs {
  const args = argv[0] === "--" ? argv.slice(1) : argv; // deno task passes "--" on
  const parsed: SummaryArgs = {
    json: false,
    quick: false,
    real: false,
    out: null,
    denoBench: true,
    help: false,
  };
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--json") parsed.json = true;
    else if (arg === "--quick") parsed.quick = true;
    else if (arg === "--real") parsed.real = true;
    else if (arg === "--no-deno-bench") parsed.denoBench = false;
    else if (arg === "--help" || arg === "-h") parsed.help = true;
    else if (arg === "--out") {
      out = args[++i];
      if (out === undefined) throw new TypeError("--out needs a folder");
    } else throw new TypeError(`Unknown option ${JSON.stringify(arg)} (see --help)`);
  }
  parsed.out = out ?? (parsed.quick ? null : RESULTS_DIR);
  return parsed;
}

/** Runs `deno bench bench/`: its table on stdout, or its JSON returned with `json`. */
async function denoBench(json: boolean): Promise<unknown> {
  const dir = new URL(".", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["bench", "--no-check", ...(json ? ["--json"] : []), dir],
    stdout: json ? "piped" : "inherit",
    stderr: "inherit",
  });
  const output = await child.output();
  if (output.code !== 0) throw new Error(`deno bench failed with exit code ${output.code}`);
  return json ? JSON.parse(new TextDecoder().decode(output.stdout)) : null;
}

/** The real device's figures on one ring layout: QEMU 7.2's virtio-iommu-pci in one TCG guest. */
interface RealFigures {
  /** The ring layout (packed: QEMU booted with packed=on). */
  ring: RingLayout;
  kernel: string;
  /** Requests per second, one request at a time (a pair is two requests). */
  oneAtATimeRequestsPerSecond: number;
  /** Requests per second, batched 32. */
  batchedRequestsPerSecond: number;
  /** Batched over one at a time, per request. */
  batchedOverOneAtATimePerRequest: number;
  /** MAP+UNMAP pairs per second with one range UNMAP per 32 MAPs. */
  rangeUnmapPairsPerSecond: number;
  /** Those pairs over one pair at a time, per pair. */
  rangeUnmapOverOneAtATimePerPair: number;
  /**
   * Driver time over the same ring's hand-written loop on the same device (the limit there:
   * "device alone"): one pair at a time, batched, and with range UNMAPs, per pair.
   */
  ratio: { oneAtATime: number; batched: number; batchedRange: number };
}

async function measureReal(quick: boolean, ring: RingLayout): Promise<RealFigures> {
  const { boot, median, FULL_PARAMS, SMOKE_PARAMS } = await import("./peer_run.ts");
  const params = quick ? SMOKE_PARAMS : FULL_PARAMS;
  const ours = await boot("ours", "6.1", params, { ...params, ring });
  const m = (key: string): number => median(ours.report[key] as number[]);
  const one = m("one");
  const batched = m("batched");
  const range = m("batchedRange");
  return {
    ring,
    ratio: {
      oneAtATime: one / m("floorOne"),
      batched: batched / m("floorBatched"),
      batchedRange: range / m("floorBatchedRange"),
    },
    kernel: ours.kernel,
    oneAtATimeRequestsPerSecond: 2e6 / one,
    batchedRequestsPerSecond: 2e6 / batched,
    batchedOverOneAtATimePerRequest: one / batched,
    rangeUnmapPairsPerSecond: 1e6 / range,
    rangeUnmapOverOneAtATimePerPair: one / range,
  };
}

/** The figures for people. */
function formatFigures(f: MockFigures, run: RunInfo & { cores: number }, quick: boolean): string {
  const n = (v: number): string => Math.round(v).toLocaleString("en-US");
  const x = (v: number): string => v.toFixed(2) + "×";
  const lines = [
    `viommu benchmark — ${run.date}, Deno ${run.deno}, ${run.cpu} (${run.cores} cores)${
      quick ? ", quick" : ""
    }`,
    `mock device over virtio-mmio; ${
      n(f.requests)
    } requests per timing, median of ${f.repetitions}`,
    "",
    "| ring   | mode (per request)    | limit (req/s) | driver (req/s) | driver time / limit | required work / limit |",
    "| ------ | --------------------- | ------------: | -------------: | ------------------: | --------------------: |",
    ...([["split", f], ["packed", f.packed]] as const).flatMap(([ring, g]) =>
      MODES.map((k) =>
        `| ${ring.padEnd(6)} | ${MODE_NAMES[k].padEnd(21)} | ${n(g.baseline[k]).padStart(13)} | ${
          n(g.driver[k]).padStart(14)
        } | ${x(g.ratio[k]).padStart(19)} | ${x(g.requiredRatio[k]).padStart(21)} |`
      )
    ),
    "required work: the limit plus mapping records, one await per request (per submit batched) " +
    "and the §2.7.13 seq-cst accesses (bench/_required.ts), the floor of any such driver",
    "",
    "MAP+UNMAP pair (batched 256) by live mappings: " +
    f.scaling.points.map((p) => `${n(p.live)}: ${p.usPerPair.toFixed(2)} µs`).join(", ") +
    ` (${x(f.scaling.ratio)} from ${n(f.scaling.liveSmall)} to ${n(f.scaling.liveLarge)})`,
    `driver heap per live mapping: ${f.bytesPerLiveMapping.toFixed(1)} bytes`,
    `IntervalMap alone, ${n(f.intervalMap.intervals)} intervals: ` +
    `${f.intervalMap.typedArrayBytesPerInterval.toFixed(1)} B/interval in typed arrays ` +
    `(scrambled inserts), ${f.intervalMap.typedArrayBytesPerIntervalAscending.toFixed(1)} ` +
    `(ascending); ${f.intervalMap.bytesPerIntervalMeasured.toFixed(1)} measured (heap + external)`,
    `heap growth over ${n(f.heapGrowthBytes.requests)} batched requests: ${
      (f.heapGrowthBytes.bytes / 1024).toFixed(1)
    } KiB${f.heapGrowthBytes.gcExposed ? "" : " (no --expose-gc: noisy)"}`,
  ];
  return lines.join("\n");
}

function formatReal(rings: RealFigures[] | null): string {
  if (rings === null) {
    return "real device: not measured (add --real; needs QEMU, see .ci/install-guest-deps)";
  }
  return rings.map(formatRealRing).join("\n");
}

function formatRealRing(r: RealFigures): string {
  const n = (v: number): string => Math.round(v).toLocaleString("en-US");
  const x = (v: number): string => v.toFixed(2) + "×";
  return `real device, ${r.ring} ring (QEMU 7.2 virtio-iommu-pci${
    r.ring === "packed" ? ", packed=on" : ""
  }, TCG guest, ${r.kernel}):\n` +
    `  per request: ${n(r.oneAtATimeRequestsPerSecond)} req/s one request at a time, ` +
    `${n(r.batchedRequestsPerSecond)} req/s batched 32 ` +
    `(${r.batchedOverOneAtATimePerRequest.toFixed(2)}× per request)\n` +
    `  per MAP+UNMAP pair: ${n(r.rangeUnmapPairsPerSecond)} pairs/s with one range UNMAP per ` +
    `32 MAPs (${r.rangeUnmapOverOneAtATimePerPair.toFixed(2)}× the rate of one pair at a time)\n` +
    `  driver time / the ${r.ring} ring's hand-written loop on the same device: ` +
    `${x(r.ratio.oneAtATime)} one at a time, ${x(r.ratio.batched)} batched, ` +
    `${x(r.ratio.batchedRange)} with range UNMAPs`;
}

/** Writes summary.json and the charts into `dir`; returns the files written. */
async function writeResults(dir: string, summary: Record<string, unknown>): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const run = summary as unknown as RunInfo;
  const figures = summary.mock as MockFigures;
  const written = ["summary.json", "scaling.svg", "modes.svg"];
  await Deno.writeTextFile(`${dir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/scaling.svg`, scalingChart(figures, run));
  await Deno.writeTextFile(`${dir}/modes.svg`, modesChart(figures, run));
  try {
    const peer = JSON.parse(await Deno.readTextFile(`${dir}/peer.json`)) as PeerBenchResult;
    await Deno.writeTextFile(`${dir}/peer.svg`, peerChart(peer));
    written.push("peer.svg (from peer.json)");
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return written;
}

/** Runs `deno task bench`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let args: SummaryArgs;
  try {
    args = parseSummaryArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  const bench = args.denoBench ? await denoBench(args.json) : null;
  if (args.denoBench && !args.json) console.log("");
  const progress = Progress.stderr({ quiet: args.json });
  const mock = await measureMock({
    quick: args.quick,
    onStep: (what) => progress.update(`bench: ${what}`),
  });
  let real: RealFigures[] | null = null;
  if (args.real) {
    real = [];
    for (const ring of ["split", "packed"] as const) {
      progress.update(`bench: QEMU's device in a TCG guest, ${ring} ring (one boot)`);
      real.push(await measureReal(args.quick, ring));
    }
  }
  progress.clear();
  let cpu = "unknown";
  try {
    cpu = os.cpus()[0]?.model ?? "unknown";
  } catch {
    cpu = "unknown (run with --allow-sys=cpus)";
  }
  const run = {
    date: new Date().toISOString().slice(0, 10),
    deno: Deno.version.deno,
    cpu,
    cores: navigator.hardwareConcurrency,
  };
  const summary = { ...run, quick: args.quick, mock, realDevice: real, denoBench: bench };
  const written = args.out === null ? [] : await writeResults(args.out, summary);
  if (args.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(formatFigures(mock, run, args.quick));
    console.log(formatReal(real));
    if (written.length > 0) console.log(`written to ${args.out}: ${written.join(", ")}`);
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
