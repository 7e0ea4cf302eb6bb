/**
 * Where our driver's time goes on QEMU's real virtio-iommu under TCG, per layer: one guest
 * boot (6.12, virtio-pci unbound, edu as the endpoint, as the peer benchmark's own boot) runs
 * bench/profile_guest.ts, which profiles each mode of the peer benchmark's side "ours" on its
 * own (`--cpu-prof`) and charges the self time to the layers of bench/profile_layers.ts. The
 * table gives each layer's share and its µs per MAP+UNMAP pair (share × the profiled run's
 * median); the device-alone loops (floorOne, floorBatched) show what QEMU itself costs.
 *
 * ```sh
 * deno run -A bench/profile_tcg.ts [--modes one,batched,floorOne,…] [--seconds 6]
 *   [--v8-flags --single-threaded] [--ring split|packed] [--top 12] [--out bench/results]
 * ```
 *
 * With `--out` it writes `profile_tcg.json` there. Needs `.ci/install-guest-deps`.
 *
 * @module
 */

import { runGuest } from "../tools/qemu.ts";
import { PEER_V8_FLAGS } from "./peer_run.ts";
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
      "--v8-flags",
      v8Flags,
      "--ring",
      ring,
    ],
    {
      kernel: "6.12",
      iommuDriver: "userspace",
      qemuArgs: [
        "-device",
        "edu",
        ...(ring === "packed" ? ["-global", "virtio-iommu-pci.packed=on"] : []),
      ],
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

if (import.meta.main) {
  const argv = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  const opt = (name: string, fallback: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? fallback : argv[i + 1] ?? fallback;
  };
  const ring = opt("ring", "split");
  if (ring !== "split" && ring !== "packed") throw new TypeError("--ring needs split or packed");
  const report = await runTcgProfile({
    modes: opt("modes", DEFAULT_PROFILE_MODES.join(",")).split(","),
    seconds: Number(opt("seconds", "6")),
    v8Flags: opt("v8-flags", PEER_V8_FLAGS),
    ring,
  });
  console.log(`TCG guest, QEMU's virtio-iommu, V8 flags ${report.v8Flags}, ${ring} ring`);
  const top = Number(opt("top", "12"));
  for (const p of report.modes) console.log(formatModeProfile(p, top));
  if (argv.includes("--out")) {
    const dir = opt("out", "bench/results");
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/profile_tcg.json`, JSON.stringify(report, null, 2) + "\n");
  }
}
