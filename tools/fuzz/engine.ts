/**
 * The fuzzing engine of `deno task fuzz` and tests/fuzz_test.ts: fast-check drives every
 * target with inputs made mostly by mutating the target's valid inputs (bit flips, boundary
 * values in 8/16/32-bit fields, small deltas to lengths, deleted and duplicated runs, inserted
 * dictionary tokens, splices of two valid inputs), plus some plain random bytes. An input is
 * described by the list of edits that made it, so fast-check shrinks a crash to the fewest
 * edits of a valid input, and prints it with the seed and path that replay it.
 *
 * A target answers each input with `"ok"` or `"rejected"` (a typed error, or a result that says
 * the input was malformed); anything it throws is a crash (targets throw when one of their
 * invariants breaks: a read past the input, an untyped error, a request left unsettled). An input
 * that takes longer than `hangMs` is a hang.
 *
 * @module
 */

import fc from "fast-check";

/** What a target made of one input. */
export type Outcome = "ok" | "rejected";

/** One fuzz target: a parser or device-facing reader and the valid inputs to start from. */
export interface FuzzTarget {
  /** Name on the summary line and for `--target`. */
  readonly name: string;
  /** Valid inputs to mutate (built once per run; deterministic). */
  seeds(): Uint8Array[];
  /** Byte strings worth inserting (keywords, magic values); optional. */
  dictionary?(): Uint8Array[];
  /** Runs one input. Throws on a broken invariant (a crash). */
  run(input: Uint8Array): Outcome | Promise<Outcome>;
  /** Requests this target sent that never settled, so far (targets that send requests). */
  lost?(): number;
  /** Largest random-bytes input (default 512). */
  readonly maxLength?: number;
}

/** Options of {@link runTarget}. */
export interface RunOptions {
  /** Inputs to try. */
  inputs: number;
  /** fast-check seed. */
  seed: number;
  /** fast-check path from a report: replays that input. */
  path?: string;
  /** An input slower than this is a hang (default 2000 ms). */
  hangMs?: number;
  /** Called every `progressEvery` inputs with the count so far. */
  progress?: (done: number) => void;
  /** Default 10,000. */
  progressEvery?: number;
  /** Stop after this long instead (the inputs run so far are counted). */
  timeLimitMs?: number;
}

/** Figures of one target's run. */
export interface FuzzFigures {
  /** The target. */
  target: string;
  /** Inputs tried. */
  inputs: number;
  /** Inputs answered `"rejected"`. */
  rejected: number;
  /** Inputs that threw (0 or 1: the run stops at the first, shrunk). */
  crashes: number;
  /** Inputs slower than `hangMs`. */
  hangs: number;
  /** Requests that never settled. */
  lost: number;
  /** Wall time of the run. */
  ms: number;
  /** fast-check's report of the first crash or hang (seed, path, shrunk input), or null. */
  failure: string | null;
}

/** A crash found while fuzzing: the input and what broke. */
export class FuzzCrash extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "FuzzCrash";
  }
}

/** An input that did not finish within the hang limit. */
export class FuzzHang extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "FuzzHang";
  }
}

const U16: readonly number[] = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff];
const U32: readonly number[] = [
  0,
  1,
  4,
  16,
  24,
  0x1000,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
];

/** Number of edit kinds {@link applyEdit} knows. */
const EDIT_KINDS = 11;

/** One edit: a kind, a position and a value (both reduced modulo what applies). */
type Edit = [kind: number, at: number, value: number];

/** Applies `edit` to `b` (may return a new array of another length). */
function applyEdit(b: Uint8Array, edit: Edit, dictionary: Uint8Array[]): Uint8Array {
  const [kind, at, value] = edit;
  if (b.length === 0) return kind === 9 ? b : Uint8Array.of(value & 0xff);
  const p = at % b.length;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (kind) {
    case 0: // flip one bit
      b[p] ^= 1 << (value & 7);
      return b;
    case 1: // any byte
      b[p] = value & 0xff;
      return b;
    case 2: // a boundary byte
      b[p] = [0, 1, 0x7f, 0x80, 0xfe, 0xff][value % 6];
      return b;
    case 3: // a boundary 16-bit field, at an even offset, either byte order
      if ((p & ~1) + 2 <= b.length) {
        view.setUint16(p & ~1, U16[value % U16.length], value % 2 === 0);
      }
      return b;
    case 4: // a boundary 32-bit field, at a 4-aligned offset
      if ((p & ~3) + 4 <= b.length) view.setUint32(p & ~3, U32[value % U32.length], true);
      return b;
    case 5: { // a small delta to a 16-bit field (lengths and counts one off)
      const q = p & ~1;
      if (q + 2 <= b.length) view.setUint16(q, view.getUint16(q, true) + (value % 33) - 16, true);
      return b;
    }
    case 6: { // a small delta to a 32-bit field
      const q = p & ~3;
      if (q + 4 <= b.length) {
        view.setUint32(q, (view.getUint32(q, true) + (value % 33) - 16) >>> 0, true);
      }
      return b;
    }
    case 7: { // delete a run
      const n = Math.min(b.length - p, 1 + (value % 32));
      const out = new Uint8Array(b.length - n);
      out.set(b.subarray(0, p));
      out.set(b.subarray(p + n), p);
      return out;
    }
    case 8: { // duplicate a run in place
      const n = Math.min(b.length - p, 1 + (value % 32));
      const out = new Uint8Array(b.length + n);
      out.set(b.subarray(0, p + n));
      out.set(b.subarray(p), p + n);
      return out;
    }
    case 9: // truncate
      return b.slice(0, p);
    default: { // insert or overwrite with a dictionary token
      if (dictionary.length === 0) return b;
      const token = dictionary[value % dictionary.length];
      if ((value >> 8) % 2 === 0) {
        const out = new Uint8Array(b.length + token.length);
        out.set(b.subarray(0, p));
        out.set(token, p);
        out.set(b.subarray(p), p + token.length);
        return out;
      }
      const out = b.length >= p + token.length ? b : new Uint8Array(p + token.length);
      if (out !== b) out.set(b);
      out.set(token, p);
      return out;
    }
  }
}

/** The inputs of a target: mutated valid inputs, splices of two, and random bytes. */
export function inputArbitrary(target: FuzzTarget): fc.Arbitrary<Uint8Array> {
  const seeds = target.seeds();
  if (seeds.length === 0) throw new RangeError(`Fuzz target ${target.name} has no seeds`);
  const dictionary = target.dictionary?.() ?? [];
  const edit = fc.tuple(fc.nat(EDIT_KINDS - 1), fc.nat(), fc.nat());
  const mutated = fc.record({
    which: fc.nat(seeds.length - 1),
    edits: fc.array(edit, { minLength: 0, maxLength: 8 }),
  }).map(({ which, edits }) => {
    let b: Uint8Array = seeds[which].slice();
    for (const e of edits) b = applyEdit(b, e, dictionary);
    return b;
  });
  const spliced = fc.tuple(fc.nat(seeds.length - 1), fc.nat(seeds.length - 1), fc.nat(), fc.nat())
    .map(([a, b, at, from]) => {
      const x = seeds[a], y = seeds[b];
      const cut = x.length === 0 ? 0 : at % x.length;
      const tail = y.subarray(y.length === 0 ? 0 : from % y.length);
      const out = new Uint8Array(cut + tail.length);
      out.set(x.subarray(0, cut));
      out.set(tail, cut);
      return out;
    });
  return fc.oneof(
    { weight: 16, arbitrary: mutated },
    { weight: 2, arbitrary: spliced },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: target.maxLength ?? 512 }) },
  );
}

/** Runs `target` on `options.inputs` inputs; stops (and shrinks) at the first crash or hang. */
export async function runTarget(target: FuzzTarget, options: RunOptions): Promise<FuzzFigures> {
  const hangMs = options.hangMs ?? 2000;
  const every = options.progressEvery ?? 10_000;
  let inputs = 0, rejected = 0;
  const count = (outcome: Outcome, started: number): void => {
    inputs++;
    if (outcome === "rejected") rejected++;
    else if (outcome !== "ok") throw new FuzzCrash(`target answered ${String(outcome)}`);
    // A synchronous target cannot be interrupted: a slow input is caught when it returns.
    if (performance.now() - started > hangMs) {
      throw new FuzzHang(`input took more than ${hangMs} ms`);
    }
    if (options.progress !== undefined && inputs % every === 0) options.progress(inputs);
  };
  const arbitrary = inputArbitrary(target);
  const parameters = {
    numRuns: options.inputs,
    seed: options.seed,
    path: options.path,
    interruptAfterTimeLimit: options.timeLimitMs,
    markInterruptAsFailure: false,
  };
  const start = performance.now();
  let details: fc.RunDetails<[Uint8Array]>;
  const first = target.run(target.seeds()[0]);
  if (first instanceof Promise) {
    await first;
    const watchdog = new Watchdog(hangMs);
    try {
      details = await fc.check(
        fc.asyncProperty(arbitrary, async (input) => {
          const t = performance.now();
          count(await watchdog.race(target.run(input)), t);
        }),
        parameters,
      );
    } finally {
      watchdog.stop();
    }
  } else {
    details = fc.check(
      fc.property(arbitrary, (input) => {
        const t = performance.now();
        count(target.run(input) as Outcome, t);
      }),
      parameters,
    );
  }
  const ms = performance.now() - start;
  const hung = details.failed && details.errorInstance instanceof FuzzHang;
  return {
    target: target.name,
    inputs: details.failed ? details.numRuns : inputs,
    rejected,
    crashes: details.failed && !hung ? 1 : 0,
    hangs: hung ? 1 : 0,
    lost: target.lost?.() ?? 0,
    ms,
    failure: details.failed ? report(details) : null,
  };
}

/** fast-check's report (seed and path replay it) with the input in compact hex and the error. */
function report(details: fc.RunDetails<[Uint8Array]>): string {
  const text = (fc.defaultReportMessage(details) ?? "failed").replace(
    /^Counterexample: .*$/m,
    () => `Counterexample: ${compactHex(details.counterexample?.[0] ?? new Uint8Array())}`,
  );
  const error = details.errorInstance;
  return `${text}\nError: ${error instanceof Error ? error.stack ?? error.message : String(error)}`;
}

/** Bytes as hex, runs of four or more equal bytes as `byte*count`. */
export function compactHex(bytes: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < bytes.length;) {
    let j = i;
    while (j < bytes.length && bytes[j] === bytes[i]) j++;
    const h = bytes[i].toString(16).padStart(2, "0");
    parts.push(j - i >= 4 ? `${h}*${j - i}` : h.repeat(j - i));
    i = j;
  }
  return `${bytes.length} bytes: ${parts.join(" ")}`;
}

/**
 * One timer for a whole run of an asynchronous target: every `ms / 4` it checks whether the
 * input in flight started more than `ms` ago, and if so fails it with {@link FuzzHang}.
 */
class Watchdog {
  #ms: number;
  #started = 0;
  #reject: ((error: Error) => void) | null = null;
  #timer: ReturnType<typeof setInterval>;

  constructor(ms: number) {
    this.#ms = ms;
    this.#timer = setInterval(() => {
      if (this.#reject !== null && performance.now() - this.#started > this.#ms) {
        this.#reject(new FuzzHang(`input did not settle in ${this.#ms} ms`));
      }
    }, Math.max(1, ms >> 2));
  }

  /** `value`, or a FuzzHang if it does not settle in time. */
  async race(value: Outcome | Promise<Outcome>): Promise<Outcome> {
    if (!(value instanceof Promise)) return value;
    this.#started = performance.now();
    const hang = new Promise<never>((_, reject) => (this.#reject = reject));
    try {
      return await Promise.race([value, hang]);
    } finally {
      this.#reject = null;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** The summary line of one target. */
export function summaryLine(f: FuzzFigures): string {
  const n = (v: number): string => v.toLocaleString("en-US");
  return `${f.target}: inputs ${n(f.inputs)}, rejected (typed) ${
    n(f.rejected)
  }, crashes: ${f.crashes}, ` +
    `hangs: ${f.hangs}, lost: ${f.lost}, ${(f.ms / 1000).toFixed(1)} s`;
}
