/**
 * `deno task bench`: the performance figures of issue 7 in one run on one machine, as a table
 * (or `--json`): the limit (hand-written baseline), the driver one request at a time and
 * batched, scaling with 1 000 and 1 000 000 live mappings, driver heap per live mapping, and
 * heap growth over 1 000 000 batched requests. Ratios are measured in the same run.
 *
 * Run with `--v8-flags=--expose-gc` (the task does) so heap figures are taken after a full GC.
 *
 * @module
 */

import os from "node:os";
import { parseArgs } from "node:util";
import { MAP_READ, MAP_WRITE, type RequestBatch } from "../mod.ts";
import { Baseline, driverRig } from "./_setup.ts";

const args = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args, // deno task passes "--" on
  options: {
    json: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    real: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.values.help) {
  console.log(
    "Usage: deno task bench [-- --json] [--quick]\n  --json   machine-readable figures\n  --quick  fewer repetitions (smoke test)",
  );
  Deno.exit(0);
}
const quick = args.values.quick;
const RW = MAP_READ | MAP_WRITE;
const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * Medians of `reps` timings (ms) of `a` and of `b`, after one warm-up each. The two alternate,
 * so a noisy neighbour on the machine slows both alike and their ratio stays meaningful.
 */
async function pairedMedians(
  reps: number,
  a: () => Promise<void> | void,
  b: () => Promise<void> | void,
): Promise<[number, number]> {
  await a();
  await b();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t0 = performance.now();
    await a();
    ta.push(performance.now() - t0);
    t0 = performance.now();
    await b();
    tb.push(performance.now() - t0);
  }
  ta.sort((x, y) => x - y);
  tb.sort((x, y) => x - y);
  return [ta[ta.length >> 1], tb[tb.length >> 1]];
}

/** The median of `reps` timings (ms) of `fn`, after one warm-up. */
async function median(reps: number, fn: () => Promise<void> | void): Promise<number> {
  const [m] = await pairedMedians(reps, fn, () => {});
  return m;
}

const REPS = quick ? 3 : 9;
const N = quick ? 20_000 : 200_000; // requests per timing

// 1-3. The limit and the driver, one at a time and batched, timed alternately.
const base = await Baseline.create();
const rig = await driverRig();
const { iommu } = rig;
await iommu.attach(1, 0x08);
const batch = iommu.batch();
async function runBatch(b: RequestBatch, n: number, domain: number, base: number): Promise<void> {
  b.clear();
  for (let i = 0; i < n >> 1; i++) b.map(domain, base + i * 0x1000, 0x1000, 0x1000, RW);
  for (let i = 0; i < n >> 1; i++) b.unmap(domain, base + i * 0x1000, 0x1000);
  if (await b.submit() !== 0) throw new Error(`batch failed: ${b.error(0)}`);
}
const [baseOne, oneAtATime] = await pairedMedians(
  REPS,
  () => {
    for (let i = 0; i < N / 2; i++) base.pairOneAtATime(i & 1023);
  },
  async () => {
    for (let i = 0; i < N / 2; i++) {
      const iova = 0x100000 + (i & 1023) * 0x1000;
      await iommu.map(1, iova, 0x1000, 0x1000, RW);
      await iommu.unmap(1, iova, 0x1000);
    }
  },
);
const baseBatch = new Map<number, number>();
const batched = new Map<number, number>();
for (const n of [64, 256]) {
  const [limit, driver] = await pairedMedians(
    REPS,
    () => {
      for (let i = 0; i < N / n; i++) base.batch(n);
    },
    async () => {
      for (let i = 0; i < N / n; i++) await runBatch(batch, n, 1, 0x100000);
    },
  );
  baseBatch.set(n, limit);
  batched.set(n, driver);
}

// 4. Scaling: MAP+UNMAP pairs (batched 256) with 1 000 and 1 000 000 live mappings.
async function fill(domain: number, from: number, count: number): Promise<void> {
  const b = iommu.batch();
  for (let done = 0; done < count;) {
    b.clear();
    const n = Math.min(4096, count - done);
    for (let i = 0; i < n; i++) {
      const page = 0x1_0000_0000 + (from + done + i) * 0x1000; // above 4 GiB: clear of the pairs and the MSI region
      b.map(domain, page, 0x1000, 0x1000, RW);
    }
    if (await b.submit() !== 0) throw new Error(`fill failed: ${b.error(0)}`);
    done += n;
  }
}
const SCALE_REQ = quick ? 20_000 : 100_000;
await iommu.attach(2, 0x18);
await fill(2, 0, 1000);
const scale1k = await median(REPS, async () => {
  for (let i = 0; i < SCALE_REQ / 256; i++) await runBatch(batch, 256, 2, 0x100000);
});
const bigCount = quick ? 100_000 : 1_000_000;
await fill(2, 1000, bigCount - 1000);
const scale1m = await median(REPS, async () => {
  for (let i = 0; i < SCALE_REQ / 256; i++) await runBatch(batch, 256, 2, 0x100000);
});

// Driver heap per live mapping: a domain with no endpoint records mappings without sending
// them, so only the driver's side grows.
await iommu.attach(3, 0x00);
await iommu.detach(3, 0x00); // domain 3 now exists in the driver only
const before = heap();
const recordOnly = iommu.batch();
for (let done = 0; done < bigCount;) {
  recordOnly.clear();
  const n = Math.min(4096, bigCount - done);
  for (let i = 0; i < n; i++) recordOnly.map(3, 0x1000_0000 + (done + i) * 0x1000, 0, 0x1000, RW);
  await recordOnly.submit();
  done += n;
}
const perMapping = (heap() - before) / bigCount;

// 5. Heap growth over 1 000 000 batched requests in steady state.
const ALLOC_REQ = quick ? 100_000 : 1_000_000;
for (let i = 0; i < 200; i++) await runBatch(batch, 256, 1, 0x100000); // warm-up
const h0 = heap();
for (let i = 0; i < ALLOC_REQ / 256; i++) await runBatch(batch, 256, 1, 0x100000);
const growth = heap() - h0;
await iommu.close();

// 6. The real device: QEMU's virtio-iommu-pci in a TCG guest (one boot), when asked.
let real: {
  onePairUs: number;
  batchedPairUs: number;
  rangePairUs: number;
  kernel: string;
} | null = null;
if (args.values.real) {
  const { boot, median: med, FULL_PARAMS, SMOKE_PARAMS } = await import("./peer.ts");
  const params = quick ? SMOKE_PARAMS : FULL_PARAMS;
  const ours = await boot("ours", "6.1", params, { ...params });
  real = {
    onePairUs: med(ours.report.one as number[]),
    batchedPairUs: med(ours.report.batched as number[]),
    rangePairUs: med(ours.report.batchedRange as number[]),
    kernel: ours.kernel,
  };
}

// Report.
const rate = (requests: number, ms: number): number => requests / (ms / 1000);
const cpu = (() => {
  try {
    return os.cpus()[0]?.model ?? "unknown";
  } catch {
    return "unknown (run with --allow-sys=cpus)";
  }
})();
const figures = {
  date: new Date().toISOString().slice(0, 10),
  deno: Deno.version.deno,
  cpu,
  cores: navigator.hardwareConcurrency,
  quick,
  requests: N,
  baseline: {
    oneAtATime: rate(N, baseOne),
    batched64: rate(N, baseBatch.get(64)!),
    batched256: rate(N, baseBatch.get(256)!),
  },
  driver: {
    oneAtATime: rate(N, oneAtATime),
    batched64: rate(N, batched.get(64)!),
    batched256: rate(N, batched.get(256)!),
  },
  ratio: {
    oneAtATime: oneAtATime / baseOne,
    batched64: batched.get(64)! / baseBatch.get(64)!,
    batched256: batched.get(256)! / baseBatch.get(256)!,
  },
  scaling: {
    liveSmall: 1000,
    liveLarge: bigCount,
    usPerPairSmall: (scale1k * 1000) / (SCALE_REQ / 2),
    usPerPairLarge: (scale1m * 1000) / (SCALE_REQ / 2),
    ratio: scale1m / scale1k,
  },
  bytesPerLiveMapping: perMapping,
  heapGrowthBytes: { requests: ALLOC_REQ, bytes: growth, gcExposed: gc !== undefined },
  realDevice: real === null ? null : {
    kernel: real.kernel,
    // A pair is a MAP and an UNMAP: two requests (33 per 32 pairs with one range UNMAP).
    oneAtATimeRequestsPerSecond: 2e6 / real.onePairUs,
    batchedRequestsPerSecond: 2e6 / real.batchedPairUs,
    batchedOverOneAtATime: real.onePairUs / real.batchedPairUs,
    rangeUnmapPairsPerSecond: 1e6 / real.rangePairUs,
    rangeUnmapOverOneAtATime: real.onePairUs / real.rangePairUs,
  },
};

if (args.values.json) {
  console.log(JSON.stringify(figures, null, 2));
} else {
  const f = (n: number): string => Math.round(n).toLocaleString("en-US");
  const x = (n: number): string => n.toFixed(2) + "×";
  console.log(
    `viommu benchmark — ${figures.date}, Deno ${figures.deno}, ${cpu} (${figures.cores} cores)${
      quick ? ", quick" : ""
    }`,
  );
  console.log(`mock device over virtio-mmio; ${f(N)} requests per timing, median of ${REPS}\n`);
  console.log("| mode                 | limit (req/s) | driver (req/s) | driver time / limit |");
  console.log("| -------------------- | ------------: | -------------: | ------------------: |");
  for (
    const [name, key] of [["one at a time", "oneAtATime"], ["batched 64", "batched64"], [
      "batched 256",
      "batched256",
    ]] as const
  ) {
    console.log(
      `| ${name.padEnd(20)} | ${f(figures.baseline[key]).padStart(13)} | ${
        f(figures.driver[key]).padStart(14)
      } | ${x(figures.ratio[key]).padStart(19)} |`,
    );
  }
  const s = figures.scaling;
  console.log(
    `\nMAP+UNMAP pair (batched 256): ${s.usPerPairSmall.toFixed(2)} µs with ${
      f(s.liveSmall)
    } live mappings, ${s.usPerPairLarge.toFixed(2)} µs with ${f(s.liveLarge)} (${x(s.ratio)})`,
  );
  console.log(`driver heap per live mapping: ${figures.bytesPerLiveMapping.toFixed(1)} bytes`);
  console.log(
    `heap growth over ${f(ALLOC_REQ)} batched requests: ${(growth / 1024).toFixed(1)} KiB${
      gc ? "" : " (no --expose-gc: noisy)"
    }`,
  );
  const r = figures.realDevice;
  if (r !== null) {
    console.log(
      `real device (QEMU 7.2 virtio-iommu-pci, TCG guest, ${r.kernel}): ` +
        `${f(r.oneAtATimeRequestsPerSecond)} req/s one at a time, ` +
        `${f(r.batchedRequestsPerSecond)} req/s batched 32 (${x(r.batchedOverOneAtATime)}); ` +
        `MAP+UNMAP pairs with one range UNMAP per 32: ${f(r.rangeUnmapPairsPerSecond)}/s ` +
        `(${x(r.rangeUnmapOverOneAtATime)} the one-at-a-time pair rate)`,
    );
  } else {
    console.log("real device: not measured (add --real; needs QEMU, see .ci/install-guest-deps)");
  }
}
