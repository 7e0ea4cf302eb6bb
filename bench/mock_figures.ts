/**
 * The figures `deno task bench` reports for the mock device, measured in one run on one
 * machine: the limit (hand-written baseline) and the driver, one request at a time and batched,
 * on the split ring and on the packed ring (each against its own limit);
 * MAP+UNMAP pairs with 1 000 up to 1 000 000 live mappings; the driver's heap per live mapping
 * and the interval map's bytes per interval; heap growth over 1 000 000 batched requests.
 * Ratios are measured in the same run, the two sides timed alternately.
 *
 * Run under `--v8-flags=--expose-gc` (the task does) so heap figures are taken after a full GC.
 *
 * @module
 */

import { MAP_READ, MAP_WRITE, type RequestBatch, type RingLayout } from "../mod.ts";
import { buildPages } from "./_interval_pages.ts";
import { Baseline, driverRig } from "./_setup.ts";
import { RequiredWork } from "./_required.ts";

/** The modes of the limit/driver table, as the JSON keys them. */
export const MODES = ["oneAtATime", "batched64", "batched256"] as const;

/** One mode of {@link MODES}. */
export type Mode = typeof MODES[number];

/** What each mode is, for people: every figure of this table is per request. */
export const MODE_NAMES: Readonly<Record<Mode, string>> = {
  oneAtATime: "one request at a time",
  batched64: "batched 64",
  batched256: "batched 256",
};

/** One point of the scaling curve. */
export interface ScalingPoint {
  /** Live mappings in the domain while the pairs run. */
  live: number;
  /** µs per MAP+UNMAP pair, batched 256. */
  usPerPair: number;
}

/** The limit/driver figures of one ring layout. */
export interface RingFigures {
  /** The limit: requests per second, per mode. */
  baseline: Record<Mode, number>;
  /** The driver: requests per second, per mode. */
  driver: Record<Mode, number>;
  /** Driver time over limit time, per mode. */
  ratio: Record<Mode, number>;
  /**
   * The limit plus the work any driver that records mappings and settles promises must add
   * (bench/_required.ts), time over limit time, per mode: the floor of {@link RingFigures.ratio}.
   */
  requiredRatio: Record<Mode, number>;
}

/** Everything measured on the mock. */
export interface MockFigures extends RingFigures {
  /** Requests per timing of the limit/driver table. */
  requests: number;
  /** Repetitions per figure (the median is taken). */
  repetitions: number;
  /** The split ring's figures are the top-level ones; the packed ring's, against its own limit. */
  packed: RingFigures;
  /** MAP+UNMAP pairs (batched 256) by live mappings, and the largest over the smallest. */
  scaling: {
    liveSmall: number;
    liveLarge: number;
    usPerPairSmall: number;
    usPerPairLarge: number;
    ratio: number;
    points: ScalingPoint[];
  };
  /** Driver heap growth per live mapping (records only, nothing sent). */
  bytesPerLiveMapping: number;
  /** The interval map alone, 1 000 000 one-page intervals. */
  intervalMap: {
    intervals: number;
    bytesPerIntervalMeasured: number;
    typedArrayBytesPerInterval: number;
    typedArrayBytesPerIntervalAscending: number;
  };
  /** Heap growth over many batched requests in steady state. */
  heapGrowthBytes: { requests: number; bytes: number; gcExposed: boolean };
}

const RW = MAP_READ | MAP_WRITE;
const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * Medians of `reps` timings (ms) of each of `fns`, after one warm-up each. They alternate, so a
 * noisy neighbour on the machine slows all alike and their ratios stay meaningful.
 */
async function alternatingMedians(
  reps: number,
  ...fns: (() => Promise<void> | void)[]
): Promise<number[]> {
  for (const f of fns) await f();
  const times: number[][] = fns.map(() => []);
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < fns.length; k++) {
      const t0 = performance.now();
      await fns[k]();
      times[k].push(performance.now() - t0);
    }
  }
  return times.map((t) => t.sort((x, y) => x - y)[t.length >> 1]);
}

/** The median of `reps` timings (ms) of `fn`, after one warm-up. */
async function median(reps: number, fn: () => Promise<void> | void): Promise<number> {
  const [m] = await alternatingMedians(reps, fn);
  return m;
}

/** Options of {@link measureMock}. */
export interface MeasureOptions {
  /** Fewer repetitions and smaller counts (a smoke run). */
  quick: boolean;
  /** Called before each step, for a progress line. */
  onStep?: (what: string) => void;
}

/** Measures every figure on the mock device. */
export async function measureMock(options: MeasureOptions): Promise<MockFigures> {
  const { quick } = options;
  const step = options.onStep ?? ((): void => {});
  const REPS = quick ? 3 : 9;
  const N = quick ? 20_000 : 200_000; // requests per timing

  const runBatch = async (b: RequestBatch, n: number, domain: number): Promise<void> => {
    b.clear();
    for (let i = 0; i < n >> 1; i++) b.map(domain, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
    for (let i = 0; i < n >> 1; i++) b.unmap(domain, 0x100000 + i * 0x1000, 0x1000);
    if (await b.submit() !== 0) throw new Error(`batch failed: ${b.error(0)}`);
  };
  const rate = (ms: number): number => N / (ms / 1000);

  /** The limit/required/driver table of ring layout `ring`, against its own hand-written limit. */
  const limitAndDriver = async (ring: RingLayout): Promise<RingFigures> => {
    const base = await Baseline.createFor(ring);
    const required = new RequiredWork(await Baseline.createFor(ring));
    const { iommu } = await driverRig({ ring });
    if (iommu.ring !== ring) throw new Error(`the driver runs the ${iommu.ring} ring`);
    await iommu.attach(1, 0x08);
    const batch = iommu.batch();
    step(`${ring} ring: limit, required work and driver, one request at a time`);
    const times: Record<Mode, number[]> = {
      oneAtATime: await alternatingMedians(
        REPS,
        () => {
          for (let i = 0; i < N / 2; i++) base.pairOneAtATime(i & 1023);
        },
        async () => {
          for (let i = 0; i < N / 2; i++) {
            const settled = required.pairOneAtATime(i & 1023);
            await settled; // the MAP's
            await settled; // the UNMAP's
          }
        },
        async () => {
          for (let i = 0; i < N / 2; i++) {
            const iova = 0x100000 + (i & 1023) * 0x1000;
            await iommu.map(1, iova, 0x1000, 0x1000, RW);
            await iommu.unmap(1, iova, 0x1000);
          }
        },
      ),
      batched64: [],
      batched256: [],
    };
    for (const n of [64, 256] as const) {
      step(`${ring} ring: limit, required work and driver, batched ${n}`);
      times[n === 64 ? "batched64" : "batched256"] = await alternatingMedians(
        REPS,
        () => {
          for (let i = 0; i < N / n; i++) base.batch(n);
        },
        async () => {
          for (let i = 0; i < N / n; i++) await required.batch(n);
        },
        async () => {
          for (let i = 0; i < N / n; i++) await runBatch(batch, n, 1);
        },
      );
    }
    await iommu.close();
    await base.close();
    await required.close();
    // Per mode: [limit, required work, driver].
    const each = (f: (t: number[]) => number): Record<Mode, number> => ({
      oneAtATime: f(times.oneAtATime),
      batched64: f(times.batched64),
      batched256: f(times.batched256),
    });
    return {
      baseline: each((t) => rate(t[0])),
      driver: each((t) => rate(t[2])),
      ratio: each((t) => t[2] / t[0]),
      requiredRatio: each((t) => t[1] / t[0]),
    };
  };
  const split = await limitAndDriver("split");
  const packed = await limitAndDriver("packed");

  // The rest on the split ring (QEMU's default).
  const { iommu } = await driverRig();
  await iommu.attach(1, 0x08);
  const batch = iommu.batch();

  // Scaling: MAP+UNMAP pairs (batched 256) while the domain holds more and more mappings.
  const SCALE_REQ = quick ? 20_000 : 100_000;
  const sizes = quick ? [1_000, 10_000, 100_000] : [1_000, 10_000, 100_000, 1_000_000];
  await iommu.attach(2, 0x18);
  const points: ScalingPoint[] = [];
  let filled = 0;
  for (const live of sizes) {
    step(`MAP+UNMAP pairs with ${live.toLocaleString("en-US")} live mappings`);
    const fill = iommu.batch();
    while (filled < live) {
      fill.clear();
      const n = Math.min(4096, live - filled);
      for (let i = 0; i < n; i++) {
        // Above 4 GiB: clear of the pairs and the MSI region.
        fill.map(2, 0x1_0000_0000 + (filled + i) * 0x1000, 0x1000, 0x1000, RW);
      }
      if (await fill.submit() !== 0) throw new Error(`fill failed: ${fill.error(0)}`);
      filled += n;
    }
    const ms = await median(REPS, async () => {
      for (let i = 0; i < SCALE_REQ / 256; i++) await runBatch(batch, 256, 2);
    });
    points.push({ live, usPerPair: (ms * 1000) / (SCALE_REQ / 2) });
  }

  // Driver heap per live mapping: a domain with no endpoint records mappings without sending
  // them, so only the driver's side grows.
  const bigCount = sizes.at(-1)!;
  step(`driver heap with ${bigCount.toLocaleString("en-US")} recorded mappings`);
  await iommu.attach(3, 0x00);
  await iommu.detach(3, 0x00); // domain 3 now exists in the driver only
  const before = heap();
  const recordOnly = iommu.batch();
  for (let done = 0; done < bigCount;) {
    recordOnly.clear();
    const n = Math.min(4096, bigCount - done);
    for (let i = 0; i < n; i++) {
      recordOnly.map(3, 0x1000_0000 + (done + i) * 0x1000, 0, 0x1000, RW);
    }
    await recordOnly.submit();
    done += n;
  }
  const perMapping = (heap() - before) / bigCount;

  step("heap growth in steady state");
  const ALLOC_REQ = quick ? 100_000 : 1_000_000;
  for (let i = 0; i < 200; i++) await runBatch(batch, 256, 1); // warm-up
  const h0 = heap();
  for (let i = 0; i < ALLOC_REQ / 256; i++) await runBatch(batch, 256, 1);
  const growth = heap() - h0;
  await iommu.close();

  step("interval map memory");
  const intervals = quick ? 100_000 : 1_000_000;
  const m0 = heap();
  const scrambled = buildPages(intervals, true);
  const measured = (heap() - m0) / intervals;
  const ascending = buildPages(intervals, false);

  const first = points[0];
  const last = points.at(-1)!;
  return {
    requests: N,
    repetitions: REPS,
    ...split,
    packed,
    scaling: {
      liveSmall: first.live,
      liveLarge: last.live,
      usPerPairSmall: first.usPerPair,
      usPerPairLarge: last.usPerPair,
      ratio: last.usPerPair / first.usPerPair,
      points,
    },
    bytesPerLiveMapping: perMapping,
    intervalMap: {
      intervals,
      bytesPerIntervalMeasured: measured,
      typedArrayBytesPerInterval: scrambled.allocatedBytes / intervals,
      typedArrayBytesPerIntervalAscending: ascending.allocatedBytes / intervals,
    },
    heapGrowthBytes: { requests: ALLOC_REQ, bytes: growth, gcExposed: gc !== undefined },
  };
}
