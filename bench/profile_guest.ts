/**
 * The guest half of `bench/profile_tcg.ts`: inside a TCG guest with QEMU's virtio-iommu and
 * edu, runs bench/peer_guest.ts once per mode, each in a fresh process (`--only`, with the
 * V8 flags given) under `deno run --cpu-prof`, and charges the self time of the samples taken
 * while its measured repetitions ran (`--profile` reports when: no start-up, no warm-up) to
 * layers (bench/profile_layers.ts); prints one line `PROFILE <json>` per mode: the mode, its
 * median µs per MAP+UNMAP pair (profiled, so slower than unprofiled), and the tables.
 *
 * `deno run -A bench/profile_guest.ts --modes one,batched --seconds 6 --v8-flags=<flags>`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type CpuProfile, layerTable, type Share } from "./profile_layers.ts";
import { PEER_MODES } from "./peer_guest.ts";
import { FULL_PARAMS, median, PEER_V8_FLAGS } from "./peer_run.ts";

/** What one mode's profile found. */
export interface ModeProfile {
  mode: string;
  /** Median µs per MAP+UNMAP pair in the profiled run. */
  usPerPair: number;
  /** Every layer, largest first. */
  layers: Share[];
  /** The 30 functions with the most self time. */
  functions: Share[];
  /** Sampled self time, ms. */
  sampledMs: number;
}

/** Profiles `mode` of our side of the peer benchmark for about `seconds`. */
async function profileMode(
  mode: string,
  seconds: number,
  v8Flags: string,
  ring: string,
): Promise<ModeProfile> {
  const dir = await Deno.makeTempDir({ prefix: "viommu-prof-" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${v8Flags}`,
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      `--cpu-prof-name=${mode}.cpuprofile`,
      "bench/peer_guest.ts",
      "--side",
      "ours",
      "--only",
      mode,
      // The full peer run's parameters; --seconds keeps it measuring long enough to profile.
      "--pairs",
      String(FULL_PARAMS.pairs),
      "--batch",
      String(FULL_PARAMS.batch),
      "--warmup",
      String(FULL_PARAMS.warmup),
      "--reps",
      String(FULL_PARAMS.reps),
      "--seconds",
      String(seconds),
      "--ring",
      ring,
      "--profile",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("PEER "));
  if (!out.success || line === undefined) {
    throw new Error(`profiling ${mode} failed:\n${text}\n${new TextDecoder().decode(out.stderr)}`);
  }
  const report = JSON.parse(line.slice(5)) as Record<string, unknown>;
  const profile = JSON.parse(
    await Deno.readTextFile(`${dir}/${mode}.cpuprofile`),
  ) as CpuProfile;
  await Deno.remove(dir, { recursive: true });
  const table = layerTable(profile, report.window as [number, number]);
  return {
    mode,
    usPerPair: median(report[mode] as number[]),
    layers: table.layers,
    functions: table.functions.slice(0, 30),
    sampledMs: table.sampledMs,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      modes: { type: "string", default: "one,batched" },
      seconds: { type: "string", default: "6" },
      "v8-flags": { type: "string", default: PEER_V8_FLAGS },
      ring: { type: "string", default: "split" },
    },
  });
  const modes = values.modes.split(",");
  const known: readonly string[] = PEER_MODES.ours;
  for (const m of modes) {
    if (!known.includes(m)) throw new TypeError(`Unknown mode ${m}: one of ${known.join(", ")}`);
  }
  for (const mode of modes) {
    const p = await profileMode(mode, Number(values.seconds), values["v8-flags"], values.ring);
    console.log("PROFILE " + JSON.stringify(p));
  }
}
