/**
 * The stress run: for a fixed time, thousands of MAP/UNMAP requests in flight against the mock
 * behind a {@link FaultyDevice} (a fault on a share of requests: bad used ids and lengths, used
 * index jumps, silence, DEVICE_NEEDS_RESET, zero lengths, undefined statuses) behind a
 * {@link TimerDevice} (answers come from a timer, never during the notification). When the
 * queue breaks, the run resets the device and carries on. At the end it stops sending, waits
 * for everything to settle, and with faults off resets once more and compares the driver's
 * records with the device. Reports sent / settled / lost.
 *
 * `deno task stress [--seconds N] [--in-flight N] [--rate R] [--seed N]`; tests/stress_test.ts
 * runs it for a short budget.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MAP_READ, MAP_WRITE, VirtioIommu } from "../../driver/iommu/device.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../../driver/iommu/errors.ts";
import { DeviceNeedsResetError } from "../../driver/virtio/init.ts";
import { VirtqueueError } from "../../driver/virtio/virtqueue.ts";
import { MockIommuDevice } from "../../mock/iommu/device.ts";
import { FAULT_KINDS, type FaultKind, FaultyDevice } from "../../mock/iommu/faults.ts";
import { MmioDevice } from "../../mock/mmio_device.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { MmioTransport } from "../../transport/mmio.ts";
import { TimerDevice } from "./timer_device.ts";

/** Faults the stress run injects: every request fault but the PROBE and event-queue ones. */
export const STRESS_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter((k) =>
  !["unstableConfig", "probeOverrun", "probeLoop", "faultReserved"].includes(k)
);

/** Options of {@link runStress}. */
export interface StressOptions {
  /** How long to keep sending, in ms. */
  ms: number;
  /** Requests to keep in flight (default 4000). */
  inFlight?: number;
  /** Share of requests that get a fault (default 0.0005). */
  rate?: number;
  /** Seed of the fault plan (default 1). */
  seed?: number;
}

/** What a stress run saw. */
export interface StressFigures {
  /** Requests sent (MAP and UNMAP calls made). */
  sent: number;
  /** Requests that resolved or rejected. */
  settled: number;
  /** Sent and never settled (must be 0). */
  lost: number;
  /** Resolved. */
  ok: number;
  /** Rejected, by error class name (all typed: anything else throws). */
  rejected: Record<string, number>;
  /** Device resets the run started to recover (some fail on a fault and are retried). */
  resets: number;
  /** Requests the device saw. */
  received: number;
  /** Faults the device injected. */
  faults: number;
  /** Most requests in flight at once. */
  peak: number;
  /** After the final clean reset, the driver's records and the device agree. */
  consistent: boolean;
  /** Wall time, ms. */
  ms: number;
}

const PAGE = 0x1000;
const BASE = 0x100_0000;
const PAGES = 1 << 14;

/** Errors after which the queue is unusable until a reset. */
function breaksQueue(error: unknown): boolean {
  // DeviceResetError says a request was abandoned: by our own reset (no need for another), or
  // because the queue failed (DEVICE_NEEDS_RESET, a broken ring): then a reset is due.
  return error instanceof VirtqueueError || error instanceof DeviceNeedsResetError ||
    (error instanceof DeviceResetError &&
      !/was reset with the request pending/.test(error.message));
}

/** Runs the stress test; see the module header. */
export async function runStress(options: StressOptions): Promise<StressFigures> {
  const inFlight = options.inFlight ?? 4000;
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice({ bypass: false });
  const faulty = new FaultyDevice(device, { kinds: [] });
  const timer = new TimerDevice(faulty, 1);
  const iommu = await VirtioIommu.create(
    MmioTransport.create(new MmioDevice(timer, memory)),
    memory,
    {
      timeoutMs: 250,
    },
  );
  await iommu.attach(1, 0x08);
  faulty.plan = { kinds: STRESS_FAULTS, rate: options.rate ?? 0.0005, seed: options.seed ?? 1 };

  const f: StressFigures = {
    sent: 0,
    settled: 0,
    lost: 0,
    ok: 0,
    rejected: {},
    resets: 0,
    received: 0,
    faults: 0,
    peak: 0,
    consistent: false,
    ms: 0,
  };
  let outstanding = 0;
  let resetting = false;
  let needReset = false;
  let untyped: unknown = null;
  const start = performance.now();
  const end = start + options.ms;

  const settle = (error: unknown): void => {
    outstanding--;
    f.settled++;
    if (error === null) {
      f.ok++;
    } else {
      const typed = error instanceof IommuError || error instanceof DeviceResetError ||
        error instanceof RequestTimeoutError || error instanceof VirtqueueError ||
        error instanceof DeviceNeedsResetError;
      if (!typed) untyped ??= error;
      const name = error instanceof Error ? error.name : typeof error;
      f.rejected[name] = (f.rejected[name] ?? 0) + 1;
      if (breaksQueue(error)) needReset = true;
    }
    pump();
  };
  const ok = (): void => settle(null);

  const attached = (): boolean =>
    iommu.domains().some((d) => d.id === 1 && d.endpoints.includes(0x08));
  const recover = (): void => {
    resetting = true;
    needReset = false;
    f.resets++;
    iommu.reset().then(
      () => {},
      (error) => {
        // A fault hit the reset's own re-attach: typed, and the next pump tries again.
        const typed = error instanceof IommuError || error instanceof RequestTimeoutError ||
          error instanceof DeviceResetError || breaksQueue(error);
        if (!typed) untyped ??= error;
      },
    ).finally(() => {
      resetting = false;
      // Without its endpoint the domain would only record requests: reset until it is back.
      if (!attached()) needReset = true;
      pump();
    });
  };

  function pump(): void {
    if (untyped !== null) return;
    if (needReset && !resetting) recover();
    while (!resetting && outstanding < inFlight && performance.now() < end) {
      const i = f.sent++;
      const p = i >> 1;
      const request = (i & 1) === 0
        ? iommu.map(
          1,
          BASE + (p % PAGES) * PAGE,
          0x8000_0000 + (p % PAGES) * PAGE,
          PAGE,
          MAP_READ | MAP_WRITE,
        )
        : iommu.unmap(1, BASE + ((p + PAGES - (inFlight >> 1)) % PAGES) * PAGE, PAGE);
      outstanding++;
      request.then(ok, settle);
    }
    if (outstanding > f.peak) f.peak = outstanding;
  }

  // A timer keeps the pump going while everything in flight waits on the device.
  const ticker = setInterval(pump, 5);
  pump();
  while (performance.now() < end && untyped === null) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  clearInterval(ticker);
  // Drain: nothing more is sent; everything in flight must settle within its timeout.
  const deadline = performance.now() + 5000;
  while ((outstanding > 0 || resetting) && performance.now() < deadline && untyped === null) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  f.lost = f.sent - f.settled;
  f.faults = faulty.total;
  f.received = faulty.requests;
  f.ms = performance.now() - start;
  if (untyped !== null) {
    timer.stop();
    throw untyped;
  }
  // With faults off and prompt answers, a clean reset replays the records (thousands of MAPs
  // behind a ring of 256: a try can time out, so up to three); then both sides must agree.
  faulty.plan = { kinds: [] };
  timer.delayMs = 0;
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await iommu.reset();
        break;
      } catch (error) {
        if (!(error instanceof RequestTimeoutError || error instanceof IommuError)) throw error;
      }
    }
    const driver = iommu.mappings(1).map((m) => `${m.iova}-${m.last}>${m.phys}`).join(",");
    const seen = device.mappings(1).map((m) => `${m.start}-${m.end}>${m.phys}`).join(",");
    f.consistent = driver === seen && device.endpointDomain(0x08) === 1;
  } finally {
    await iommu.close();
    timer.stop();
  }
  return f;
}

/** One line of figures. */
export function stressLine(f: StressFigures): string {
  const n = (v: number): string => v.toLocaleString("en-US");
  const rejected = Object.entries(f.rejected).map(([k, v]) => `${k} ${n(v)}`).join(", ");
  return `stress: sent ${n(f.sent)}, settled ${n(f.settled)}, lost: ${f.lost}, ok ${n(f.ok)}, ` +
    `rejected {${rejected}}, device saw ${n(f.received)}, faults ${
      n(f.faults)
    }, resets ${f.resets}, peak in flight ` +
    `${n(f.peak)}, consistent ${f.consistent}, ${(f.ms / 1000).toFixed(1)} s`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "60" },
      "in-flight": { type: "string", default: "4000" },
      rate: { type: "string", default: "0.0005" },
      seed: { type: "string", default: "1" },
    },
  });
  const f = await runStress({
    ms: Number(values.seconds) * 1000,
    inFlight: Number(values["in-flight"]),
    rate: Number(values.rate),
    seed: Number(values.seed),
  });
  console.log(stressLine(f));
  Deno.exit(f.lost === 0 && f.consistent ? 0 : 1);
}
