/**
 * One line of progress for long work (the fuzz task, the guest runner, the peer bench, the
 * benchmarks, the real-device tests, the test runner): rewritten in place on a terminal and
 * erased when the work is done, so the output that stays is only the results. Silent when
 * stderr is not a terminal, under CI (`CI` set and not `false`), and when the caller asks for
 * quiet (`--json`): machines get no progress bytes at all.
 *
 * ```ts ignore
 * const progress = Progress.stderr({ quiet: json });
 * progress.update("booting the guest");
 * // …
 * progress.clear();
 * ```
 *
 * @module
 */

/** Where progress goes: a terminal-like writer. */
export interface ProgressSink {
  /** Whether the sink is a terminal. */
  isTerminal(): boolean;
  /** Writes bytes, returning how many were written. */
  writeSync(bytes: Uint8Array): number;
}

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** No progress at all (for example under `--json`). */
  quiet?: boolean;
  /** Where to draw (default: standard error). */
  sink?: ProgressSink;
  /** Whether this runs under CI (default: the `CI` environment variable, when readable). */
  ci?: boolean;
  /** Columns of the terminal (default: Deno's console size, else 80). */
  columns?: number;
}

/** Carriage return and "erase line": the line is redrawn from its start. */
const REDRAW = "\r\x1b[2K";

/** Whether the environment says CI, without prompting for the permission to ask. */
export function runningInCi(): boolean {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "CI" }).state !== "granted") {
      return false;
    }
    const value = Deno.env.get("CI");
    return value !== undefined && value !== "" && value !== "false" && value !== "0";
  } catch {
    return false;
  }
}

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

/** A progress line on a terminal, or nothing. */
export class Progress {
  /** Whether anything is drawn. */
  readonly active: boolean;
  #sink: ProgressSink;
  #columns: number;
  #shown = false;
  #encoder = new TextEncoder();

  /** Creates the progress line; it is active only on a terminal, outside CI, when not quiet. */
  constructor(options: ProgressOptions = {}) {
    this.#sink = options.sink ?? Deno.stderr;
    const ci = options.ci ?? runningInCi();
    this.active = !options.quiet && !ci && this.#sink.isTerminal();
    this.#columns = options.columns ?? (this.active ? consoleColumns() : 80);
  }

  /** A progress line on standard error. */
  static stderr(options: Omit<ProgressOptions, "sink"> = {}): Progress {
    return new Progress(options);
  }

  /** Shows `text` in place of the previous line (cut to the terminal's width). */
  update(text: string): void {
    if (!this.active) return;
    const line = text.length >= this.#columns ? text.slice(0, this.#columns - 2) + "…" : text;
    this.#write(REDRAW + line);
    this.#shown = true;
  }

  /** Erases the line, leaving the cursor where the line was. */
  clear(): void {
    if (!this.active || !this.#shown) return;
    this.#write(REDRAW);
    this.#shown = false;
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    let done = 0;
    while (done < bytes.length) done += this.#sink.writeSync(bytes.subarray(done));
  }
}

/** Formats milliseconds as seconds with one decimal, for progress and summaries. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
