/**
 * Where our driver's time goes on QEMU's real virtio-iommu under TCG, per layer: one guest
 * boot (6.12, virtio-pci unbound, edu as the endpoint, as the peer benchmark's own boot) runs
 * bench/profile_guest.ts, which profiles each mode of the peer benchmark's side "ours" on its
 * own (`--cpu-prof`) and charges the self time to the layers of bench/profile_layers.ts. The
 * table gives each layer's share and its µs per MAP+UNMAP pair (share × the profiled run's
 * median); the device-alone loops (floorOne, floorBatched) show what QEMU itself costs, the
 * required-work loops (requiredOne, requiredBatched) what any driver that keeps records must add.
 *
 * ```sh
 * deno task bench:profile-tcg -- [--modes one,batched,floorOne,…] [--seconds 6]
 *   [--v8-flags=--single-threaded] [--ring split|packed] [--top 12] [--out bench/results]
 * ```
 *
 * With `--out` it writes `profile_tcg.json` there. Needs `.ci/install-guest-deps`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runGuest } from "../tools/qemu.ts";
import { PEER_MODES } from "./peer_guest.ts";
import { PEER_V8_FLAGS, peerQemuArgs } from "./peer_run.ts";
import type { ModeProfile } from "./profile_guest.ts";

/** The modes profiled by default: ours, the device alone and the required work, each mode. */
export const DEFAULT_PROFILE_MODES: readonly string[] = [
  "one",
  "batched",
  "floorOne",
  "floorBatched",
  "requiredOne",
  "requiredBatched",
];

/** The report of one run. */
export interface TcgProfile {
  date: string;
  v8Flags: string;
  ring: string;
  seconds: number;
  modes: ModeProfile[];
}

/** The table of one mode: layers with share and µs per pair, then the top functions. */
export function formatModeProfile(p: ModeProfile, top: number): string {
  const out = [`${p.mode}: ${p.usPerPair.toFixed(2)} µs per MAP+UNMAP pair (profiled)`];
  for (const l of p.layers) {
    if (l.percent < 0.5) continue;
    const us = (l.percent / 100) * p.usPerPair;
    out.push(`  ${l.percent.toFixed(1).padStart(5)} %  ${us.toFixed(2).padStart(6)} µs  ${l.name}`);
  }
  if (top > 0) {
    out.push("  top functions (self time)");
    for (const f of p.functions.slice(0, top)) {
      out.push(`  ${f.percent.toFixed(1).padStart(5)} %  ${f.name}`);
    }
  }
  return out.join("\n");
}

/** Options of {@link runTcgProfile}. */
export interface TcgProfileOptions {
  /** Modes of bench/peer_guest.ts's side "ours" (default {@link DEFAULT_PROFILE_MODES}). */
  modes?: string[];
  /** Measured seconds per mode (default 6). */
  seconds?: number;
  /** V8 flags of the profiled runs (default `--single-threaded`, as the peer benchmark). */
  v8Flags?: string;
  /** Ring layout (default split). */
  ring?: "split" | "packed";
  /** The project root (default: the folder above `bench/`). */
  projectRoot?: string;
}

/** Boots one guest and profiles each mode in it; throws with the guest's output on failure. */
export async function runTcgProfile(options: TcgProfileOptions = {}): Promise<TcgProfile> {
  const modes = options.modes ?? [...DEFAULT_PROFILE_MODES];
  const seconds = options.seconds ?? 6;
  const v8Flags = options.v8Flags ?? PEER_V8_FLAGS;
  const ring = options.ring ?? "split";
  const result = await runGuest(
    [
      "deno",
      "run",
      "-A",
      "bench/profile_guest.ts",
      "--modes",
      modes.join(","),
      "--seconds",
      String(seconds),
      // One argument: parseArgs takes a value that starts with "--" only after "=".
      `--v8-flags=${v8Flags}`,
      "--ring",
      ring,
    ],
    {
      kernel: "6.12",
      iommuDriver: "userspace",
      qemuArgs: peerQemuArgs(ring),
      // Each mode: its warm-up, `seconds` measured, and a few seconds to write the profile.
      timeoutSeconds: 120 + modes.length * (seconds + 40),
      projectRoot: options.projectRoot,
    },
  );
  const profiles = result.lines
    .filter((l) => l.startsWith("PROFILE "))
    .map((l) => JSON.parse(l.slice("PROFILE ".length)) as ModeProfile);
  if (result.code !== 0 || profiles.length !== modes.length) {
    throw new Error(
      `The profile boot failed (exit code ${result.code}):\n${result.lines.join("\n")}\n` +
        `--- guest console ---\n${result.noise.slice(-30).join("\n")}`,
    );
  }
  return {
    date: new Date().toISOString().slice(0, 10),
    v8Flags,
    ring,
    seconds,
    modes: profiles,
  };
}

/** The command line's help text. */
export const PROFILE_USAGE = `Usage: deno task bench:profile-tcg [-- options]

Boots one TCG guest (6.12 kernel, QEMU's virtio-iommu with edu) and profiles each mode of the
peer benchmark's side "ours" in its own process, charging the self time of its measured
repetitions to layers. Needs .ci/install-guest-deps.

  --modes a,b,...  modes (default ${DEFAULT_PROFILE_MODES.join(",")}; any of
                   ${PEER_MODES.ours.join(", ")})
  --seconds s      measured seconds per mode (default 6)
  --v8-flags=f     V8 flags of the profiled runs (default ${PEER_V8_FLAGS})
  --ring r         split or packed (default split)
  --top n          functions listed per mode (default 12)
  --out dir        also write dir/profile_tcg.json
  -h, --help       this help (runs nothing)`;

/** A parsed command line: what to run and how to report it, or help. */
export type ProfileCommandLine =
  | { help: true }
  | { help: false; options: TcgProfileOptions; top: number; out: string | null };

/** Parses the command line; throws a TypeError naming a bad option or value. */
export function parseProfileArgs(argv: string[]): ProfileCommandLine {
  const { values } = parseArgs({
    args: argv[0] === "--" ? argv.slice(1) : argv,
    strict: true,
    allowPositionals: false,
    options: {
      modes: { type: "string" },
      seconds: { type: "string" },
      "v8-flags": { type: "string" },
      ring: { type: "string" },
      top: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) return { help: true };
  const known: readonly string[] = PEER_MODES.ours;
  const modes = values.modes === undefined ? [...DEFAULT_PROFILE_MODES] : values.modes.split(",");
  for (const m of modes) {
    if (!known.includes(m)) throw new TypeError(`--modes: unknown mode ${m} (${known.join(", ")})`);
  }
  const number = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const v = Number(text);
    if (!Number.isInteger(v) || v <= 0) throw new TypeError(`--${name} needs a positive integer`);
    return v;
  };
  const ring = values.ring ?? "split";
  if (ring !== "split" && ring !== "packed") throw new TypeError("--ring needs split or packed");
  return {
    help: false,
    options: {
      modes,
      seconds: number("seconds", values.seconds, 6),
      v8Flags: values["v8-flags"] ?? PEER_V8_FLAGS,
      ring,
    },
    top: number("top", values.top, 12),
    out: values.out ?? null,
  };
}

if (import.meta.main) {
  let line: ProfileCommandLine;
  try {
    line = parseProfileArgs(Deno.args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${PROFILE_USAGE}`);
    Deno.exit(2);
  }
  if (line.help) {
    console.log(PROFILE_USAGE);
    Deno.exit(0);
  }
  const report = await runTcgProfile(line.options);
  console.log(`TCG guest, QEMU's virtio-iommu, V8 flags ${report.v8Flags}, ${report.ring} ring`);
  for (const p of report.modes) console.log(formatModeProfile(p, line.top));
  if (line.out !== null) {
    await Deno.mkdir(line.out, { recursive: true });
    await Deno.writeTextFile(
      `${line.out}/profile_tcg.json`,
      JSON.stringify(report, null, 2) + "\n",
    );
  }
}
