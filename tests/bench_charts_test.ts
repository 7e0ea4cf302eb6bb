/**
 * The benchmark pictures and the bench command line: the SVG charts draw what the figures say
 * (bar heights proportional to the values, a whisker for each boot-to-boot spread, points in
 * order on the log axis), the peer chart is drawn from a peer result, and `deno task bench
 * -- --help` prints the options without running a benchmark or writing a file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { barChart, escapeXml, lineChart, niceScale } from "../bench/svg.ts";
import { peerChart } from "../bench/peer_report.ts";
import type { PeerBenchResult, PeerBoot } from "../bench/peer_run.ts";
import { parseSummaryArgs, RESULTS_DIR } from "../bench/summary.ts";
import { modesChart, scalingChart } from "../bench/summary_charts.ts";
import type { MockFigures } from "../bench/mock_figures.ts";

/** The `height` of every bar, in drawing order. */
function barHeights(svg: string): number[] {
  return [...svg.matchAll(/<rect class="bar" [^>]*height="([0-9.]+)"/g)].map((m) => Number(m[1]));
}

/** Every opening tag is closed or self-closing: a cheap well-formedness check. */
function assertBalanced(svg: string): void {
  const open = [...svg.matchAll(/<([a-z]+)\b(?:[^>]*[^/>])?>/g)].map((m) => m[1]);
  const closed = [...svg.matchAll(/<\/([a-z]+)>/g)].map((m) => m[1]);
  assert.deepEqual(open.sort(), closed.sort());
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
}

Deno.test("barChart() draws bars in proportion to their values, with whiskers for ranges", () => {
  const svg = barChart({
    title: "t <&>",
    unit: "µs",
    categories: ["a", "b"],
    series: [
      { name: "x", color: "#000", values: [10, 20], ranges: [[8, 12], null] },
      { name: "y", color: "#111", values: [5, null] },
    ],
  });
  assertBalanced(svg);
  // Drawn category by category: x of a (10), y of a (5), x of b (20).
  const [xa, ya, xb] = barHeights(svg);
  assert.equal(barHeights(svg).length, 3, "a null value draws no bar");
  assert.ok(Math.abs(xb / xa - 2) < 0.01, `20 is twice 10 (${xa}, ${xb})`);
  assert.ok(Math.abs(xa / ya - 2) < 0.01, `10 is twice 5 (${xa}, ${ya})`);
  assert.equal([...svg.matchAll(/class="spread"/g)].length, 1);
  assert.match(svg, /t &lt;&amp;&gt;/, "text is escaped");
  assert.equal(escapeXml(`"<a&b>"`), "&quot;&lt;a&amp;b&gt;&quot;");
});

Deno.test("niceScale() covers the maximum with a round step", () => {
  assert.deepEqual(niceScale(7.3), { top: 8, step: 2 });
  assert.deepEqual(niceScale(0.94), { top: 1, step: 0.25 });
  assert.deepEqual(niceScale(3_900_000), { top: 4_000_000, step: 1_000_000 });
  assert.ok(niceScale(0).top > 0);
});

Deno.test("lineChart() places points left to right on a log axis, evenly per decade", () => {
  const svg = lineChart({
    title: "s",
    xLabel: "live",
    yLabel: "µs",
    series: [{ name: "d", color: "#000", points: [[1e3, 0.8], [1e4, 0.8], [1e6, 0.9]] }],
  });
  assertBalanced(svg);
  const xs = [...svg.matchAll(/<circle class="point" cx="([0-9.]+)"/g)].map((m) => Number(m[1]));
  assert.equal(xs.length, 3);
  const decade = xs[1] - xs[0];
  assert.ok(Math.abs(xs[2] - xs[1] - 2 * decade) < 0.5, "1e4 to 1e6 is two decades");
  for (const label of ["1k", "10k", "1M"]) assert.match(svg, new RegExp(`>${label}<`));
});

/** A peer result as bench/peer_run.ts returns it, three rounds. */
function peerFixture(): PeerBenchResult {
  const boot = (kernel: string): PeerBoot => ({ kernel, bootMs: 9000, totalMs: 30000, report: {} });
  return {
    date: "2026-11-22",
    params: { pairs: 512, reps: 21, warmup: 30, batch: 32 },
    linux: [boot("6.12.1"), boot("6.12.1"), boot("6.12.1")],
    ours: [boot("6.12.1"), boot("6.12.1"), boot("6.12.1")],
    summary: {
      linuxOne: 19.7,
      linuxBatched: 19.1,
      linuxNullIoctl: 0.9,
      oursOne: 6.7,
      oursBatched: 5.4,
      oursPromiseAll: 7,
      ratioOne: 0.34,
      ratioBatched: 0.27,
      ratioBatchedVsLinuxBatched: 0.28,
      oursBatchedRange: 3.3,
      ratioBatchedRange: 0.17,
      ratioBatchedRangeVsLinuxBatched: 0.17,
      floorOne: 1.9,
      floorBatched: 1.1,
      floorBatchedRange: 0.6,
      requiredOne: 4.1,
      requiredBatched: 2.2,
    },
    spread: {
      linuxOne: [18.5, 19.8],
      linuxBatched: [18.8, 19.3],
      oursOne: [6.5, 7.0],
      oursBatched: [5.2, 6.2],
      oursBatchedRange: [3.2, 5.1],
      oursFloorOne: [1.8, 2.0],
      oursFloorBatched: [1.0, 1.2],
      oursFloorBatchedRange: [0.5, 0.7],
      oursRequiredOne: [3.9, 4.4],
      oursRequiredBatched: [2.1, 2.4],
    },
    v8Flags: "--single-threaded",
  };
}

Deno.test("peerChart() shows Linux, ours, the device alone and the required work with every boot's spread", () => {
  const svg = peerChart(peerFixture());
  assertBalanced(svg);
  // Linux has no "32 MAPs, 32 UNMAPs" bar of its own, the required work none with a range
  // UNMAP: 10 bars, 10 whiskers.
  assert.equal(barHeights(svg).length, 10);
  assert.equal([...svg.matchAll(/class="spread"/g)].length, 10);
  assert.match(
    svg,
    /required work \(device alone \+ records, awaits, barriers\), one pair at a time: 4\.1/,
  );
  assert.match(svg, /Linux \(VFIO ioctls\), one pair at a time: 19\.7/);
  assert.match(svg, /ours, batched: 32 MAPs, 1 range UNMAP: 3\.3/);
  assert.match(svg, /median of 3 boots per side; whiskers: lowest–highest boot/);
  assert.match(svg, /2026-11-22, QEMU TCG guests: Linux 6\.12\.1/, "the chart names its run");
  const one = peerFixture();
  one.linux = one.linux.slice(0, 1);
  one.ours = one.ours.slice(0, 1);
  assert.equal([...peerChart(one).matchAll(/class="spread"/g)].length, 0, "one boot: no spread");
});

Deno.test("scalingChart() and modesChart() draw the figures of summary.json", () => {
  const figures = {
    repetitions: 9,
    baseline: { oneAtATime: 3.9e6, batched64: 5.7e6, batched256: 5.0e6 },
    driver: { oneAtATime: 1.7e6, batched64: 3.6e6, batched256: 3.1e6 },
    ratio: { oneAtATime: 2.29, batched64: 1.58, batched256: 1.58 },
    scaling: {
      liveSmall: 1000,
      liveLarge: 1_000_000,
      usPerPairSmall: 0.79,
      usPerPairLarge: 0.85,
      ratio: 1.08,
      points: [
        { live: 1000, usPerPair: 0.79 },
        { live: 10_000, usPerPair: 0.8 },
        { live: 100_000, usPerPair: 0.82 },
        { live: 1_000_000, usPerPair: 0.85 },
      ],
    },
  } as unknown as MockFigures;
  const run = { date: "2026-11-22", deno: "2.9.6", cpu: "AMD EPYC" };
  const scaling = scalingChart(figures, run);
  assertBalanced(scaling);
  assert.equal([...scaling.matchAll(/class="point"/g)].length, 4);
  assert.match(scaling, /1\.08× from 1,000 to 1,000,000/);
  const modes = modesChart(figures, run);
  assertBalanced(modes);
  assert.equal(barHeights(modes).length, 6);
  assert.match(modes, /one request at a time \(2\.29×\)/, "the table's mode is per request");
});

Deno.test("parseSummaryArgs() writes results by default, not for --quick, and refuses typos", () => {
  assert.equal(parseSummaryArgs([]).out, RESULTS_DIR);
  assert.equal(parseSummaryArgs(["--", "--quick"]).out, null);
  assert.equal(parseSummaryArgs(["--quick", "--out", "/tmp/r"]).out, "/tmp/r");
  assert.equal(parseSummaryArgs(["-h"]).help, true);
  assert.throws(() => parseSummaryArgs(["--jsno"]), /Unknown option "--jsno"/);
});

Deno.test("bench/summary.ts --help prints the options and runs nothing", async () => {
  const out = await Deno.makeTempDir();
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      new URL("../bench/summary.ts", import.meta.url).pathname,
      "--",
      "--help",
      "--out",
      `${out}/results`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.match(text, /^Usage: deno task bench/);
  assert.doesNotMatch(text, /benchmark|group|req\/s/, "no benchmark ran");
  assert.equal(new TextDecoder().decode(stderr), "");
  assert.throws(() => Deno.statSync(`${out}/results`), Deno.errors.NotFound);
  await Deno.remove(out, { recursive: true });
});
