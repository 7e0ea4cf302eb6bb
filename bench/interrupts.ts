/**
 * `deno task bench:interrupts`: interrupts against polling on the mock (virtio-mmio, its
 * in-process interrupt line), in one run on one machine, as a table (or `--json`):
 *
 * - what waiting idle for a fault costs, one second in `nextFault()`: CPU time, the process's
 *   context switches (wake-ups), and the timers the driver made;
 * - that the request path is not slower with interrupts on: MAP+UNMAP pairs one at a time and
 *   batched 256, each mode in a fresh process (so neither shares the other's JIT state), the
 *   two alternating, medians of the runs.
 *
 * The real device under TCG is measured by tests/real_device_test.ts (uio_pci_generic).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MAP_READ, MAP_WRITE, type RequestBatch } from "../mod.ts";
import { driverRig } from "./_setup.ts";
import { type IdleCost, idleCost, median } from "../tools/idle_cost.ts";

const args = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    json: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    child: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.values.help) {
  console.log("Usage: deno task bench:interrupts [-- --json] [--quick]");
  Deno.exit(0);
}
const quick = args.values.quick;
const RW = MAP_READ | MAP_WRITE;

/** What one child process measures for one mode. */
interface ModeRun {
  idle: IdleCost;
  /** µs per MAP+UNMAP pair, one at a time. */
  pairUs: number;
  /** µs per request, batched 256. */
  batchUs: number;
}

/** Measures one mode (`"auto"`: the mock's line; `"off"`: polling) in this process. */
async function measure(mode: "auto" | "off"): Promise<ModeRun> {
  const { iommu, device } = await driverRig({ interrupts: mode }, true);
  await iommu.attach(1, 0x08);
  const pairs = quick ? 20_000 : 100_000;
  const pairTime = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < pairs; i++) {
      const iova = 0x100000 + (i & 1023) * 0x1000;
      await iommu.map(1, iova, 0x1000, 0x1000, RW);
      await iommu.unmap(1, iova, 0x1000);
    }
    return ((performance.now() - t0) * 1000) / pairs;
  };
  const batch = iommu.batch();
  const runBatch = async (b: RequestBatch): Promise<void> => {
    b.clear();
    for (let i = 0; i < 128; i++) b.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
    for (let i = 0; i < 128; i++) b.unmap(1, 0x100000 + i * 0x1000, 0x1000);
    if (await b.submit() !== 0) throw new Error(`batch failed: ${b.error(0)}`);
  };
  const batchTime = async (): Promise<number> => {
    const rounds = quick ? 200 : 1000;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) await runBatch(batch);
    return ((performance.now() - t0) * 1000) / (rounds * 256);
  };
  await pairTime(); // warm-up
  await batchTime();
  const pairUs = median([await pairTime(), await pairTime(), await pairTime()]);
  const batchUs = median([await batchTime(), await batchTime(), await batchTime()]);
  if (device.faultsDropped !== 0) throw new Error("unexpected faults");
  const idle = await idleCost(iommu, quick ? 300 : 1000);
  await iommu.close();
  return { idle, pairUs, batchUs };
}

if (args.values.child !== undefined) {
  const mode = args.values.child === "off" ? "off" : "auto";
  console.log(JSON.stringify(await measure(mode)));
  Deno.exit(0);
}

/** Runs `measure(mode)` in a fresh Deno process. */
async function child(mode: "auto" | "off"): Promise<ModeRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all", // /proc/self/task: Deno allows it with nothing less
      new URL(import.meta.url).pathname,
      `--child=${mode}`,
      ...(quick ? ["--quick"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`the ${mode} run failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as ModeRun;
}

const ROUNDS = quick ? 1 : 3;
const runs: Record<"auto" | "off", ModeRun[]> = { auto: [], off: [] };
for (let i = 0; i < ROUNDS; i++) {
  runs.off.push(await child("off"));
  runs.auto.push(await child("auto"));
}
const summary = (list: ModeRun[]) => ({
  idleCpuMs: median(list.map((r) => r.idle.cpuMs)),
  idleContextSwitches: median(list.map((r) => r.idle.contextSwitches)),
  idleTimers: median(list.map((r) => r.idle.timers)),
  pairUs: median(list.map((r) => r.pairUs)),
  batchUs: median(list.map((r) => r.batchUs)),
});
const polling = summary(runs.off);
const interrupts = summary(runs.auto);
if (args.values.json) {
  console.log(JSON.stringify({ date: new Date().toISOString(), polling, interrupts, runs }));
} else {
  const f = (n: number, d = 2) => n.toFixed(d);
  console.log(`Interrupts against polling on the mock (virtio-mmio), medians of ${ROUNDS} runs`);
  console.log(
    "| mode       | idle 1 s: CPU | wake-ups | timers | pair, one at a time | batched 256 |",
  );
  console.log(
    "| ---------- | ------------: | -------: | -----: | ------------------: | ----------: |",
  );
  for (const [name, s] of [["polling", polling], ["interrupts", interrupts]] as const) {
    console.log(
      `| ${name.padEnd(10)} | ${f(s.idleCpuMs, 1).padStart(10)} ms | ${
        String(s.idleContextSwitches).padStart(8)
      } | ${String(s.idleTimers).padStart(6)} | ${f(s.pairUs).padStart(14)} µs | ${
        f(s.batchUs, 3).padStart(8)
      } µs |`,
    );
  }
}
