/**
 * `deno task fuzz`: the model-based test and the parser fuzzers with a large budget, printing
 * figures. Budget: VIOMMU_FUZZ_SEQUENCES (default 20000 sequences), VIOMMU_FUZZ_INPUTS
 * (default 200000 inputs per parser), VIOMMU_FUZZ_SEED (first seed, default: from the clock).
 * Exits 1 on a divergence or a fuzzer failure.
 *
 * @module
 */

import { runModel } from "./model.ts";
import { fuzzFaults, fuzzProbe, fuzzUsedRing } from "./parsers.ts";

function envNumber(name: string, fallback: number): number {
  const n = Number(Deno.env.get(name));
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

async function main(): Promise<number> {
  const sequences = envNumber("VIOMMU_FUZZ_SEQUENCES", 20_000);
  const inputs = envNumber("VIOMMU_FUZZ_INPUTS", 200_000);
  const seed = envNumber("VIOMMU_FUZZ_SEED", Date.now() % 1_000_000_000);
  console.log(`seed ${seed}`);
  let failed = false;
  for (
    const [name, fuzz, n] of [
      ["PROBE properties", fuzzProbe, inputs],
      ["fault records", fuzzFaults, inputs],
      ["used ring", fuzzUsedRing, Math.ceil(inputs / 10)],
    ] as const
  ) {
    const start = performance.now();
    try {
      const f = fuzz(n, seed);
      console.log(
        `${name}: ${f.inputs} inputs, ${f.rejected} rejected (typed), ${
          Math.round(performance.now() - start)
        } ms`,
      );
    } catch (e) {
      failed = true;
      console.log(`${name}: FAILED: ${e instanceof Error ? e.stack : e}`);
    }
  }
  const start = performance.now();
  const run = await runModel(sequences, { seed });
  console.log(
    `model: ${run.sequences} sequences, ${run.ops} ops, ${
      Math.round(performance.now() - start)
    } ms`,
  );
  if (run.failure !== null) {
    failed = true;
    console.log(run.failure);
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
