/**
 * What waiting costs a process: CPU time, the context switches of all its threads (each
 * wake-up from a sleep is one), and the timers its JavaScript created, measured around a
 * `nextFault()` that times out. Used by the guest tests and `bench/interrupts.ts` to compare a
 * driver that polls with one that sleeps on interrupts. Needs `--allow-all`: Deno lets nothing
 * less read `/proc/self`.
 *
 * @module
 */

import process from "node:process";
import type { VirtioIommu } from "../driver/iommu/device.ts";

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

/** The median of `values`. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
