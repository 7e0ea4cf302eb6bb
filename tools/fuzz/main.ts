/**
 * `deno task fuzz`: every fuzz target of tools/fuzz/targets.ts with a large budget, then the
 * model-based test, and one summary line per target (inputs, typed rejections, crashes, hangs,
 * lost requests). Exits 1 on any crash, hang, lost
 * request or model divergence, after printing fast-check's report (seed and path replay it).
 *
 * ```
 * deno task fuzz [--inputs N] [--budget SECONDS] [--target NAME] [--seed N] [--path P]
 *                [--sequences N]
 * ```
 * `--inputs` per target (default 1,000,000); `--budget` stops each target after that many
 * seconds instead; `--target` runs the targets whose name contains NAME (case-insensitive);
 * `--seed` (default: from the clock, printed); `--path` replays one input of a report;
 * `--sequences` model-based sequences per ring layout (default 20,000; 0 skips the model).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Progress } from "../progress.ts";
import { runModel } from "./model.ts";
import { runTarget, summaryLine } from "./engine.ts";
import { allTargets } from "./targets.ts";

/** Parses a non-negative integer flag. */
function count(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text.replaceAll("_", ""));
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Invalid ${name} ${JSON.stringify(text)}: expected an integer ≥ 0`);
  }
  return n;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      inputs: { type: "string" },
      budget: { type: "string" },
      target: { type: "string" },
      seed: { type: "string" },
      path: { type: "string" },
      sequences: { type: "string" },
    },
  });
  const budget = count(values.budget, "--budget", 0);
  const inputs = budget > 0 ? Number.MAX_SAFE_INTEGER : count(values.inputs, "--inputs", 1_000_000);
  const seed = count(values.seed, "--seed", Date.now() % 1_000_000_000);
  const sequences = count(values.sequences, "--sequences", 20_000);
  const filter = values.target?.toLowerCase();
  const bar = Progress.stderr();
  const targets = allTargets().filter((t) => !filter || t.name.toLowerCase().includes(filter));
  if (targets.length === 0 && filter !== undefined) {
    console.log(`No fuzz target matches "${values.target}"`);
    return 2;
  }
  console.log(`seed ${seed}${budget > 0 ? `, ${budget} s per target` : ""}`);
  const started = performance.now();
  let failed = false;
  for (const target of targets) {
    const total = budget > 0 ? "" : ` / ${inputs.toLocaleString("en-US")}`;
    const progress = (done: number): void =>
      bar.update(`${target.name}: ${done.toLocaleString("en-US")}${total}`);
    const figures = await runTarget(target, {
      inputs,
      seed,
      path: values.path,
      progress,
      timeLimitMs: budget > 0 ? budget * 1000 : undefined,
    });
    bar.clear();
    console.log(summaryLine(figures));
    if (figures.failure !== null) console.log(figures.failure);
    if (figures.crashes + figures.hangs + figures.lost > 0) failed = true;
  }
  if (sequences > 0 && filter === undefined) {
    for (const ring of ["split", "packed"] as const) {
      const start = performance.now();
      const run = await runModel(sequences, { seed, ring });
      console.log(
        `model (${ring} ring): ${run.sequences} sequences, ${run.ops} ops, divergences: ${
          run.failure === null ? 0 : 1
        }, ${((performance.now() - start) / 1000).toFixed(1)} s`,
      );
      if (run.failure !== null) {
        failed = true;
        console.log(run.failure);
      }
    }
  }
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
