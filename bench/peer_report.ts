/**
 * The peer benchmark's result for people: the table the README shows and the SVG chart of
 * µs per MAP+UNMAP pair by mode, Linux's driver beside ours and the device alone, each bar
 * with its lowest–highest boot.
 *
 * @module
 */

import type { PeerBenchResult } from "./peer_run.ts";
import { barChart } from "./svg.ts";

/** Formats the result as the table the README shows. */
export function formatTable(result: PeerBenchResult): string {
  const s = result.summary;
  const p = result.params;
  const row = (
    mode: string,
    linux: string,
    ours: string,
    ratio: string,
    target: string,
    floor = "",
    required = "",
    overDevice = "",
  ): string =>
    `| ${mode} | ${linux} | ${ours} | ${ratio} | ${target} | ${floor} | ${required} | ${overDevice} |`;
  const rounds = result.linux.length;
  const us = (v: number, key?: string): string => {
    const range = key === undefined || rounds < 2 ? undefined : result.spread[key];
    return range === undefined
      ? `${v.toFixed(1)} µs`
      : `${v.toFixed(1)} µs (${range[0].toFixed(1)}–${range[1].toFixed(1)})`;
  };
  const times = (a: number, b: number): string => `${(a / b).toFixed(1)}×`;
  return [
    `${result.date}: 4 KiB MAP+UNMAP pairs, medians of ${p.reps} repetitions of ${p.pairs} pairs ` +
    `(${p.warmup} warm-up repetitions discarded)` +
    (rounds > 1 ? `, median of ${rounds} boots per side (lowest–highest boot)` : "") +
    `, QEMU TCG; Linux ${result.linux[0].kernel}, ours on ${result.ours[0].kernel}; ` +
    `both sides deno --v8-flags=${result.v8Flags}`,
    "",
    row(
      "mode",
      "Linux (VFIO ioctls)",
      "ours",
      "ours/Linux",
      "target",
      "device alone",
      "required work",
      "ours/device (≤ 2×)",
    ),
    row("---", "---", "---", "---", "---", "---", "---", "---"),
    row(
      "one pair at a time",
      us(s.linuxOne, "linuxOne"),
      us(s.oursOne, "oursOne"),
      s.ratioOne.toFixed(2),
      "≤ 0.3",
      us(s.floorOne),
      us(s.requiredOne),
      times(s.oursOne, s.floorOne),
    ),
    row(
      `batched (${p.batch} per submit)`,
      `${us(s.linuxOne)} (one at a time)`,
      us(s.oursBatched, "oursBatched"),
      s.ratioBatched.toFixed(2),
      "≤ 0.2",
      us(s.floorBatched),
      us(s.requiredBatched),
      times(s.oursBatched, s.floorBatched),
    ),
    row(
      "batched, Linux's best (N MAPs, one range UNMAP)",
      us(s.linuxBatched, "linuxBatched"),
      us(s.oursBatched),
      s.ratioBatchedVsLinuxBatched.toFixed(2),
      "",
    ),
    row(
      `batched, one range UNMAP (${p.batch} MAPs + 1 UNMAP per submit)`,
      `${us(s.linuxOne)} (one at a time)`,
      us(s.oursBatchedRange, "oursBatchedRange"),
      s.ratioBatchedRange.toFixed(2),
      "",
      us(s.floorBatchedRange),
      "",
      times(s.oursBatchedRange, s.floorBatchedRange),
    ),
    row(
      "… the same vs Linux's best",
      us(s.linuxBatched),
      us(s.oursBatchedRange),
      s.ratioBatchedRangeVsLinuxBatched.toFixed(2),
      "",
    ),
    row(`Promise.all (${p.batch} in one tick)`, "", us(s.oursPromiseAll, "oursPromiseAll"), "", ""),
    row("null VFIO ioctl (syscall floor)", us(s.linuxNullIoctl), "", "", ""),
    "",
    "device alone: the same requests from a hand-written loop on the same device (no checks, " +
    "no records, no promises): what any driver pays QEMU. required work: that loop plus what " +
    "any driver that records mappings and settles promises must add (bench/_required.ts).",
    `first boots: Linux ${(result.linux[0].bootMs / 1000).toFixed(1)} s (whole run ` +
    `${(result.linux[0].totalMs / 1000).toFixed(1)} s), ours ${
      (result.ours[0].bootMs / 1000).toFixed(1)
    } s ` +
    `(whole run ${(result.ours[0].totalMs / 1000).toFixed(1)} s)`,
  ].join("\n");
}

/** The lowest–highest boot of figure `key`, or null with a single round. */
function spreadOf(result: PeerBenchResult, key: string): [number, number] | null {
  return result.linux.length < 2 ? null : result.spread[key] ?? null;
}

/**
 * The result as an SVG chart: µs per 4 KiB MAP+UNMAP pair by mode, Linux's driver, ours and
 * the device alone and the required work, whiskers from the lowest to the highest boot.
 */
export function peerChart(result: PeerBenchResult): string {
  const s = result.summary;
  const p = result.params;
  const rounds = result.linux.length;
  const sp = (key: string): [number, number] | null => spreadOf(result, key);
  return barChart({
    title: "MAP+UNMAP pair on QEMU's virtio-iommu: Linux's driver and ours",
    subtitle: `lower is better; ${p.pairs} pairs × ${p.reps} repetitions, median of ${rounds} ` +
      `boot${rounds === 1 ? "" : "s"} per side` +
      (rounds > 1 ? "; whiskers: lowest–highest boot" : "") +
      `\n${result.date}, QEMU TCG guests: Linux ${result.linux[0].kernel}, ours on ` +
      result.ours[0].kernel,
    unit: "µs per MAP+UNMAP pair",
    categories: [
      "one pair at a time",
      `batched: ${p.batch} MAPs, ${p.batch} UNMAPs`,
      `batched: ${p.batch} MAPs, 1 range UNMAP`,
    ],
    series: [
      {
        name: "Linux (VFIO ioctls)",
        color: "#9e9e9e",
        values: [s.linuxOne, null, s.linuxBatched],
        ranges: [sp("linuxOne"), null, sp("linuxBatched")],
      },
      {
        name: "ours",
        color: "#1f77b4",
        values: [s.oursOne, s.oursBatched, s.oursBatchedRange],
        ranges: [sp("oursOne"), sp("oursBatched"), sp("oursBatchedRange")],
      },
      {
        name: "device alone (hand-written loop)",
        color: "#ff7f0e",
        values: [s.floorOne, s.floorBatched, s.floorBatchedRange],
        ranges: [sp("oursFloorOne"), sp("oursFloorBatched"), sp("oursFloorBatchedRange")],
      },
      {
        name: "required work (device alone + records, awaits, barriers)",
        color: "#2ca02c",
        values: [s.requiredOne, s.requiredBatched, null],
        ranges: [sp("oursRequiredOne"), sp("oursRequiredBatched"), null],
      },
    ],
    format: (v) => v.toFixed(1),
  });
}
