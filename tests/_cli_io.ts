/**
 * Running `viommu` in-process for tests: main() with captured standard output and error, a
 * scripted standard input and no terminal.
 *
 * @module
 */

import type { CliOutput } from "../cli/format.ts";
import { type CliIo, main } from "../cli/main.ts";

/** Captures what main() writes. */
export class Capture implements CliOutput {
  /** Everything written to standard output. */
  stdout = "";
  /** Everything written to standard error. */
  stderr = "";
  /** Never a terminal: no colour, no line editor. */
  readonly isTerminal = false;
  /** Appends to {@link stdout}. */
  out(text: string): void {
    this.stdout += text;
  }
  /** Appends to {@link stderr}. */
  err(text: string): void {
    this.stderr += text;
  }
}

/** A stream that yields `text` and ends. */
export function streamOf(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller): void {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

/** Runs main() with `args` and `stdin`; returns the exit code and what it wrote. */
export async function run(args: string[], stdin = ""): Promise<{ code: number; out: Capture }> {
  const out = new Capture();
  const io: CliIo = { output: out, input: streamOf(stdin), terminal: null };
  const code = await main(args, io);
  return { code, out };
}

/** Parses one JSON object per line. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").map((line) => JSON.parse(line));
}
