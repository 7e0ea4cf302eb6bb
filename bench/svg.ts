/**
 * Two small SVG charts for the benchmark results, written next to their JSON: grouped bars
 * (with an optional lowest–highest whisker per bar, for the boot-to-boot spread) and a line
 * chart over a logarithmic x axis (for scaling with the number of live mappings). Plain SVG
 * 1.1 text, no scripts and no external fonts, so GitHub and any browser draw it as is.
 *
 * @module
 */

/** One series of a bar chart: a value per category, optionally a low–high range. */
export interface BarSeries {
  /** Legend text. */
  name: string;
  /** Fill colour (CSS). */
  color: string;
  /** One value per category; `null` draws no bar. */
  values: (number | null)[];
  /** Optional whiskers: `[low, high]` per category (or null). */
  ranges?: ([number, number] | null)[];
}

/** A grouped bar chart. */
export interface BarChart {
  /** Title line. */
  title: string;
  /** Lines under the title (what, where, when), separated by `\n`; two at most. */
  subtitle?: string;
  /** The y axis' unit, e.g. `µs per MAP+UNMAP pair`. */
  unit: string;
  /** One group of bars per category. */
  categories: string[];
  /** The bars of each group, in order. */
  series: BarSeries[];
  /** How to print a bar's value above it (default: 3 significant digits). */
  format?: (value: number) => string;
}

/** One line of a line chart. */
export interface LineSeries {
  /** Legend text. */
  name: string;
  /** Stroke colour. */
  color: string;
  /** Points `[x, y]`, x ascending. */
  points: [number, number][];
}

/** A line chart with a logarithmic x axis. */
export interface LineChart {
  /** Title line. */
  title: string;
  /** Lines under the title, separated by `\n`; two at most. */
  subtitle?: string;
  /** The x axis' label. */
  xLabel: string;
  /** The y axis' label. */
  yLabel: string;
  /** The lines. */
  series: LineSeries[];
  /** How to print an x tick (default: 1k, 1M). */
  formatX?: (value: number) => string;
  /** How to print a point's y value (default: 3 significant digits). */
  formatY?: (value: number) => string;
}

const WIDTH = 760;
const HEIGHT = 400;
const MARGIN = { left: 70, right: 20, top: 80, bottom: 80 };

/** Escapes text for SVG content and attributes. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** 3 significant digits, without exponent notation. */
function sig3(value: number): string {
  if (value === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(value))));
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A "nice" upper bound and step for an axis from 0 to `max`. */
export function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough)!;
  return { top: Math.ceil(max / step) * step, step };
}

function text(x: number, y: number, body: string, attrs = ""): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs ? " " + attrs : ""}>${
    escapeXml(body)
  }</text>`;
}

function frame(title: string, subtitle: string | undefined, inner: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    text(MARGIN.left, 24, title, 'font-size="16" font-weight="bold"'),
    ...(subtitle ?? "").split("\n").slice(0, 2).map((line, i) =>
      line === "" ? "" : text(MARGIN.left, 44 + 15 * i, line, 'fill="#555555"')
    ),
    ...inner,
    "</svg>",
    "",
  ].filter((line) => line !== "").join("\n");
}

function legend(entries: { name: string; color: string }[], y: number): string[] {
  const out: string[] = [];
  let x = MARGIN.left;
  for (const e of entries) {
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${e.color}"/>`);
    out.push(text(x + 18, y, e.name));
    x += 30 + e.name.length * 7;
  }
  return out;
}

/** Grid lines and their values from 0 to `top`, and the axis label turned upright. */
function yAxis(
  top: number,
  step: number,
  y: (value: number) => number,
  format: (value: number) => string,
  label: string,
): string[] {
  const out: string[] = [];
  for (let v = 0; v <= top + step / 2; v += step) {
    out.push(
      `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(v).toFixed(1)}" ` +
        `y2="${y(v).toFixed(1)}" stroke="#dddddd"/>`,
    );
    out.push(text(MARGIN.left - 6, y(v) + 4, format(v), 'text-anchor="end" fill="#555555"'));
  }
  const middle = (MARGIN.top + (HEIGHT - MARGIN.bottom)) / 2;
  out.push(
    text(16, middle, label, `transform="rotate(-90 16 ${middle.toFixed(1)})" text-anchor="middle"`),
  );
  return out;
}

/** Renders a grouped bar chart. */
export function barChart(chart: BarChart): string {
  const format = chart.format ?? sig3;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const all = chart.series.flatMap((s) => [
    ...s.values.filter((v): v is number => v !== null),
    ...(s.ranges ?? []).flatMap((r) => r ?? []),
  ]);
  const { top, step } = niceScale(Math.max(0, ...all));
  const y = (v: number): number => MARGIN.top + plotH - (v / top) * plotH;
  const out = yAxis(top, step, y, format, chart.unit);
  const groupW = plotW / chart.categories.length;
  const barW = Math.min(48, (groupW * 0.8) / chart.series.length);
  chart.categories.forEach((category, c) => {
    const groupX = MARGIN.left + c * groupW + (groupW - barW * chart.series.length) / 2;
    chart.series.forEach((series, s) => {
      const value = series.values[c];
      if (value === null || value === undefined) return;
      const x = groupX + s * barW;
      out.push(
        `<rect class="bar" x="${x.toFixed(1)}" y="${y(value).toFixed(1)}" width="${
          (barW - 2).toFixed(1)
        }" height="${(y(0) - y(value)).toFixed(1)}" fill="${series.color}">` +
          `<title>${escapeXml(`${series.name}, ${category}: ${format(value)}`)}</title></rect>`,
      );
      const range = series.ranges?.[c] ?? null;
      const mid = x + (barW - 2) / 2;
      if (range !== null) {
        out.push(
          `<path class="spread" d="M${mid.toFixed(1)} ${y(range[0]).toFixed(1)}V${
            y(range[1]).toFixed(1)
          }M${(mid - 5).toFixed(1)} ${y(range[0]).toFixed(1)}h10M${(mid - 5).toFixed(1)} ${
            y(range[1]).toFixed(1)
          }h10" stroke="#222222" fill="none"/>`,
        );
      }
      const labelY = Math.min(y(value), range === null ? y(value) : y(range[1])) - 4;
      out.push(text(mid, labelY, format(value), 'text-anchor="middle" font-size="10"'));
    });
    out.push(
      text(MARGIN.left + c * groupW + groupW / 2, y(0) + 16, category, 'text-anchor="middle"'),
    );
  });
  out.push(...legend(chart.series, HEIGHT - 20));
  return frame(chart.title, chart.subtitle, out);
}

/** Renders a line chart over a logarithmic x axis. */
export function lineChart(chart: LineChart): string {
  const formatX = chart.formatX ??
    ((v: number) => v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));
  const formatY = chart.formatY ?? sig3;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const xs = chart.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = chart.series.flatMap((s) => s.points.map((p) => p[1]));
  const lo = Math.log10(Math.min(...xs));
  const hi = Math.log10(Math.max(...xs));
  const span = hi - lo || 1;
  const x = (v: number): number => MARGIN.left + 20 + ((Math.log10(v) - lo) / span) * (plotW - 40);
  const { top, step } = niceScale(Math.max(0, ...ys));
  const y = (v: number): number => MARGIN.top + plotH - (v / top) * plotH;
  const out = yAxis(top, step, y, formatY, chart.yLabel);
  for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
    out.push(text(x(v), y(0) + 16, formatX(v), 'text-anchor="middle"'));
  }
  out.push(text(MARGIN.left + plotW / 2, y(0) + 36, chart.xLabel, 'text-anchor="middle"'));
  for (const series of chart.series) {
    const d = series.points.map(([px, py], i) =>
      `${i === 0 ? "M" : "L"}${x(px).toFixed(1)} ${y(py).toFixed(1)}`
    ).join("");
    out.push(`<path class="line" d="${d}" stroke="${series.color}" stroke-width="2" fill="none"/>`);
    for (const [px, py] of series.points) {
      out.push(
        `<circle class="point" cx="${x(px).toFixed(1)}" cy="${
          y(py).toFixed(1)
        }" r="4" fill="${series.color}">` +
          `<title>${escapeXml(`${series.name}, ${formatX(px)}: ${formatY(py)}`)}</title></circle>`,
      );
      out.push(text(x(px), y(py) - 8, formatY(py), 'text-anchor="middle" font-size="10"'));
    }
  }
  out.push(...legend(chart.series, HEIGHT - 20));
  return frame(chart.title, chart.subtitle, out);
}
