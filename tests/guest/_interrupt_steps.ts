/**
 * Measurements the guest scripts make of interrupts against polling: what waiting idle for a
 * fault costs (CPU time, the process's context switches, the timers the JavaScript made),
 * how long a fault takes from edu's DMA command to the listener, and how many timers a wait
 * made (an interrupt-driven wait makes one: its own deadline). Runs inside the guest.
 *
 * @module
 */

import process from "node:process";
import type { RegisterSpace } from "../../transport/registers.ts";
import type { VirtioIommu } from "../../driver/iommu/device.ts";

/** edu BAR0 registers (QEMU docs/specs/edu.rst). */
const EDU_DMA_SRC = 0x80;
const EDU_DMA_DST = 0x88;
const EDU_DMA_COUNT = 0x90;
const EDU_DMA_CMD = 0x98;
/** cmd bit 0: run (reads back 1 while running); bit 1: edu buffer → RAM. */
const EDU_CMD_RUN = 0x1;
const EDU_CMD_TO_RAM = 0x2;
/** edu's internal buffer. */
const EDU_BUFFER = 0x40000;
/** edu starts a DMA this long after the command (its timer, QEMU hw/misc/edu.c). */
export const EDU_DMA_DELAY_MS = 100;

/** Counts setTimeout calls while `run` runs (the JavaScript's timer wake-ups). */
export async function countTimers<T>(
  run: () => Promise<T>,
): Promise<{ result: T; timers: number }> {
  const original = globalThis.setTimeout;
  let timers = 0;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    timers++;
    return original(fn, ms);
  }) as typeof setTimeout;
  try {
    return { result: await run(), timers };
  } finally {
    globalThis.setTimeout = original;
  }
}

/** Voluntary + involuntary context switches of every thread of this process. */
function contextSwitches(): number {
  let total = 0;
  for (const task of Deno.readDirSync("/proc/self/task")) {
    const status = Deno.readTextFileSync(`/proc/self/task/${task.name}/status`);
    for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) {
      total += Number(m[1]);
    }
  }
  return total;
}

/** What waiting `ms` for a fault that never comes cost. */
export interface IdleCost {
  /** How long the wait took. */
  ms: number;
  /** CPU time of the process meanwhile (user + system), ms. */
  cpuMs: number;
  /** Context switches of all the process's threads meanwhile (each wake-up is one or two). */
  contextSwitches: number;
  /** setTimeout calls the JavaScript made meanwhile. */
  timers: number;
}

/**
 * Waits `ms` in nextFault() with no fault coming and measures what it cost, after 200 ms to
 * let V8 finish compiling and collecting what earlier steps left.
 */
export async function idleCost(iommu: VirtioIommu, ms: number): Promise<IdleCost> {
  await new Promise((resolve) => setTimeout(resolve, 200));
  const cpu = process.cpuUsage();
  const switches = contextSwitches();
  const start = performance.now();
  const { result, timers } = await countTimers(() => iommu.nextFault(ms));
  if (result !== null) throw new Error(`a fault came while idle: ${JSON.stringify(result)}`);
  const used = process.cpuUsage(cpu);
  return {
    ms: Math.round(performance.now() - start),
    cpuMs: Math.round((used.user + used.system) / 100) / 10,
    contextSwitches: contextSwitches() - switches,
    timers,
  };
}

/** Starts an edu DMA of 256 bytes from its buffer to `iova`, without waiting for it. */
export function eduStartWrite(bar: RegisterSpace, iova: number): void {
  bar.write32(EDU_DMA_SRC, EDU_BUFFER);
  bar.write32(EDU_DMA_SRC + 4, 0);
  bar.write32(EDU_DMA_DST, iova);
  bar.write32(EDU_DMA_DST + 4, 0);
  bar.write32(EDU_DMA_COUNT, 256);
  bar.write32(EDU_DMA_COUNT + 4, 0);
  bar.write32(EDU_DMA_CMD, EDU_CMD_TO_RAM | EDU_CMD_RUN);
}

/** Waits (polling edu's register every 2 ms, outside any measurement) until its DMA is done. */
export async function eduWait(bar: RegisterSpace): Promise<void> {
  const start = performance.now();
  while ((bar.read32(EDU_DMA_CMD) & EDU_CMD_RUN) !== 0) {
    if (performance.now() - start > 5000) throw new Error("edu DMA did not finish within 5 s");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** One fault's way from edu's DMA command to the driver's listener. */
export interface FaultTrip {
  /** From the DMA command to the onFault() listener (edu adds its 100 ms timer first), ms. */
  toListenerMs: number;
  /** Timers the nextFault() wait made. */
  timers: number;
  /** The fault's address. */
  address: bigint | null;
}

/**
 * Sends edu's DMA at the unmapped `iova` `samples` times (its endpoint attached, nothing
 * mapped there) and times each fault from the command to the listener, with nextFault()
 * waiting meanwhile. The burst each DMA causes is drained before the next.
 */
export async function faultTrips(
  iommu: VirtioIommu,
  bar: RegisterSpace,
  iova: number,
  samples: number,
): Promise<FaultTrip[]> {
  const trips: FaultTrip[] = [];
  let heardAt = 0;
  const unsubscribe = iommu.onFault(() => {
    if (heardAt === 0) heardAt = performance.now();
  });
  try {
    for (let i = 0; i < samples; i++) {
      iommu.takeFaults();
      heardAt = 0;
      const start = performance.now();
      eduStartWrite(bar, iova);
      const { result, timers } = await countTimers(() => iommu.nextFault(3000));
      trips.push({
        toListenerMs: heardAt === 0 ? -1 : Math.round((heardAt - start) * 100) / 100,
        timers,
        address: result?.address ?? null,
      });
      await eduWait(bar);
      await new Promise((resolve) => setTimeout(resolve, 20));
      iommu.takeFaults();
    }
  } finally {
    unsubscribe();
  }
  return trips;
}

/** The median of `values`. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
