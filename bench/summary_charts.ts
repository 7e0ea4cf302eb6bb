/**
 * The charts of `deno task bench`, drawn from the figures it writes to
 * `bench/results/summary.json`: MAP+UNMAP pair cost by live mappings (1 000 to 1 000 000), and
 * the driver against the limit per mode.
 *
 * @module
 */

import { type MockFigures, MODE_NAMES, MODES } from "./mock_figures.ts";
import { barChart, lineChart } from "./svg.ts";

/** What the charts' subtitles say about the run. */
export interface RunInfo {
  /** `YYYY-MM-DD`. */
  date: string;
  /** Deno's version. */
  deno: string;
  /** The CPU model. */
  cpu: string;
}

function where(run: RunInfo): string {
  return `${run.date}, Deno ${run.deno}, ${run.cpu}`;
}

/** µs per MAP+UNMAP pair (batched 256) against live mappings, on a log axis. */
export function scalingChart(figures: MockFigures, run: RunInfo): string {
  return lineChart({
    title: "MAP+UNMAP pair cost as the domain fills up",
    subtitle: `mock device over virtio-mmio, batched 256, median of ${figures.repetitions}\n` +
      where(run),
    xLabel: "live mappings in the domain (log scale)",
    yLabel: "µs per MAP+UNMAP pair",
    series: [{
      name: `driver (${figures.scaling.ratio.toFixed(2)}× from ${
        figures.scaling.liveSmall.toLocaleString("en-US")
      } to ${figures.scaling.liveLarge.toLocaleString("en-US")})`,
      color: "#1f77b4",
      points: figures.scaling.points.map((p) => [p.live, p.usPerPair]),
    }],
    formatY: (v) => v.toFixed(2),
  });
}

/** Requests per second of the limit and the driver, per mode. */
export function modesChart(figures: MockFigures, run: RunInfo): string {
  const m = (v: number): number => v / 1e6;
  return barChart({
    title: "The driver against the limit, per mode",
    subtitle: `per request, higher is better; the limit: a hand-written loop pushing the same ` +
      `requests through the same ring to the same mock\n${where(run)}`,
    unit: "million requests per second",
    categories: MODES.map((mode) => `${MODE_NAMES[mode]} (${figures.ratio[mode].toFixed(2)}×)`),
    series: [
      { name: "limit", color: "#9e9e9e", values: MODES.map((k) => m(figures.baseline[k])) },
      { name: "driver", color: "#1f77b4", values: MODES.map((k) => m(figures.driver[k])) },
    ],
    format: (v) => v.toFixed(2),
  });
}
