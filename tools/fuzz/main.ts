/**
 * `deno task fuzz`: the model-based test and the parser fuzzers with a large budget, printing
 * figures. Budget: VIOMMU_FUZZ_SEQUENCES (default 20000 sequences), VIOMMU_FUZZ_INPUTS
 * (default 200000 inputs per parser), VIOMMU_FUZZ_SEED (first seed, default: from the clock).
 * Exits 1 on a divergence or a fuzzer failure. On a terminal a progress line says which
 * fuzzer runs and how many model sequences are done (nothing under CI or in a pipe).
 *
 * @module
 */

import { Progress } from "../progress.ts";
import { type ModelRun, runModel } from "./model.ts";
import { fuzzFaults, fuzzProbe, fuzzUsedRing } from "./parsers.ts";
import { fuzzPackedRing } from "./packed_ring.ts";

function envNumber(name: string, fallback: number): number {
  const n = Number(Deno.env.get(name));
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

async function main(): Promise<number> {
  const sequences = envNumber("VIOMMU_FUZZ_SEQUENCES", 20_000);
  const inputs = envNumber("VIOMMU_FUZZ_INPUTS", 200_000);
  const seed = envNumber("VIOMMU_FUZZ_SEED", Date.now() % 1_000_000_000);
  console.log(`seed ${seed}`);
  const progress = Progress.stderr();
  let failed = false;
  for (
    const [name, fuzz, n] of [
      ["PROBE properties", fuzzProbe, inputs],
      ["fault records", fuzzFaults, inputs],
      ["used ring", fuzzUsedRing, Math.ceil(inputs / 10)],
      ["packed ring", fuzzPackedRing, Math.ceil(inputs / 10)],
    ] as const
  ) {
    const start = performance.now();
    progress.update(`fuzz: ${name}, ${n.toLocaleString("en-US")} inputs`);
    try {
      const f = fuzz(n, seed);
      progress.clear();
      console.log(
        `${name}: ${f.inputs} inputs, ${f.rejected} rejected (typed), ${
          Math.round(performance.now() - start)
        } ms`,
      );
    } catch (e) {
      progress.clear();
      failed = true;
      console.log(`${name}: FAILED: ${e instanceof Error ? e.stack : e}`);
    }
  }
  const start = performance.now();
  const runs: ModelRun[] = [];
  for (const ring of ["split", "packed"] as const) {
    // In chunks, for the progress line: sequence i has seed firstSeed + i either way.
    const run: ModelRun = { sequences: 0, ops: 0, divergences: [] };
    const CHUNK = 500;
    while (run.sequences < sequences && run.divergences.length < 3) {
      progress.update(
        `fuzz: model (${ring}), ${run.sequences.toLocaleString("en-US")}/${
          sequences.toLocaleString("en-US")
        } sequences, ${run.divergences.length} divergences`,
      );
      const part = await runModel(Math.min(CHUNK, sequences - run.sequences), {
        firstSeed: seed + run.sequences,
        maxDivergences: 3 - run.divergences.length,
        ring,
      });
      run.sequences += part.sequences;
      run.ops += part.ops;
      run.divergences.push(...part.divergences);
    }
    progress.clear();
    console.log(
      `model (${ring}): ${run.sequences} sequences, ${run.ops} ops, ${run.divergences.length} ` +
        `divergences, ${Math.round(performance.now() - start)} ms`,
    );
    runs.push(run);
  }
  for (const d of runs.flatMap((run) => run.divergences)) {
    failed = true;
    console.log(
      `divergence at seed ${d.seed}, step ${d.divergence.step} (${d.divergence.what}):\n` +
        `  expected ${d.divergence.expected}\n  actual   ${d.divergence.actual}\n` +
        `  shortest sequence:\n    ${d.repro.join("\n    ")}`,
    );
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
