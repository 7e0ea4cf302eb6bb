/**
 * Output for `viommu`: colour only when writing to a terminal (`node:util` `styleText`, and
 * never with `NO_COLOR`), aligned key/value lines and tables for people, and JSON for machines
 * with every 64-bit value as a `0x…` string.
 *
 * @module
 */

import { hex } from "../util/hex.ts";

import { styleText } from "node:util";

/** A `styleText` format: one style or several. */
export type Style = Parameters<typeof styleText>[0];

/** Where the CLI writes, so tests can capture it. */
export interface CliOutput {
  /** Writes `text` to standard output as it is. */
  out(text: string): void;
  /** Writes `text` to standard error as it is. */
  err(text: string): void;
  /** Whether standard output is a terminal (colour and the line editor). */
  readonly isTerminal: boolean;
}

/** Applies styles when colour is on, and returns the text untouched otherwise. */
export class Painter {
  /** Whether colour is on. */
  readonly color: boolean;

  /** Creates a painter; `color` false makes every call return its text unchanged. */
  constructor(color: boolean) {
    this.color = color;
  }

  /** Styles `text`. */
  paint(style: Style, text: string): string {
    return this.color ? styleText(style, text, { validateStream: false }) : text;
  }
}

/** The CLI output of this process: Deno's stdout/stderr, colour on a TTY without NO_COLOR. */
export function denoOutput(): CliOutput {
  const encoder = new TextEncoder();
  return {
    out(text: string): void {
      writeAll(Deno.stdout, encoder.encode(text));
    },
    err(text: string): void {
      writeAll(Deno.stderr, encoder.encode(text));
    },
    isTerminal: Deno.stdout.isTerminal(),
  };
}

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += target.writeSync(bytes.subarray(done));
}

/** Whether colour should be used for `output`: a TTY, and `NO_COLOR` unset. */
export function wantsColor(output: CliOutput): boolean {
  if (!output.isTerminal) return false;
  // Ask for NO_COLOR only when it may be read: never prompt just to decide on colour.
  const env = Deno.permissions.querySync({ name: "env", variable: "NO_COLOR" });
  return env.state !== "granted" || !Deno.env.get("NO_COLOR");
}

/** Replaces bigints with `0x…` strings, recursively, for JSON output. */
export function toJsonValue(value: unknown): unknown {
  if (typeof value === "bigint") return hex(value);
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      if (inner !== undefined) out[key] = toJsonValue(inner);
    }
    return out;
  }
  return value;
}

/** One JSON line (bigints as hex strings). */
export function jsonLine(value: unknown): string {
  return JSON.stringify(toJsonValue(value)) + "\n";
}

/** Aligned `label  value` lines, the labels dimmed. */
export function keyValues(painter: Painter, rows: [string, string][], indent = "  "): string {
  const width = Math.max(0, ...rows.map(([label]) => label.length)) + 2;
  return rows.map(([label, value]) =>
    indent + painter.paint("dim", label.padEnd(width)) + value + "\n"
  ).join("");
}

/** A heading line. */
export function heading(painter: Painter, text: string): string {
  return painter.paint(["bold", "cyan"], text) + "\n";
}

/** A plain-text table: a bold header row, then the rows, columns padded to their widest cell. */
export function table(painter: Painter, header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  return painter.paint("bold", line(header)) + "\n" + rows.map((r) => line(r) + "\n").join("");
}
