/**
 * `deno task test`: runs `deno test --doc` with the permissions the suite needs and keeps its
 * output short. Passing tests are a count on a progress line (on a terminal; nothing in CI),
 * failures are printed in full as Deno prints them, and the summary at the end lists every
 * skipped test with its reason and the notes tests left (boot times, µs per pair), then
 * Deno's own result line. Arguments are passed on: `deno task test tests/cli_main_test.ts`,
 * `deno task test --filter probe`.
 *
 * Needs `--allow-read --allow-write --allow-run --allow-env` (temporary files, the child).
 *
 * @module
 */

import { Progress, seconds } from "./progress.ts";

/** The permissions `deno test` gets: the suite reads and writes temp files, runs QEMU, uses FFI. */
export const TEST_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-ffi",
];

/** One test the junit report lists as skipped. */
export interface SkippedTest {
  /** Its name (which says why, see tests/_notes.ts). */
  name: string;
  /** Its file, as Deno names it (`./tests/x_test.ts`). */
  file: string;
}

/** Reads the skipped tests out of Deno's junit report. */
export function skippedTests(junit: string): SkippedTest[] {
  const out: SkippedTest[] = [];
  const re = /<testcase name="([^"]*)" classname="([^"]*)"[^>]*>\s*<skipped\s*\/>/g;
  for (const m of junit.matchAll(re)) out.push({ name: unescapeXml(m[1]), file: m[2] });
  return out;
}

function unescapeXml(text: string): string {
  return text.replace(
    /&(quot|amp|lt|gt|apos);/g,
    (_, e: string) => ({ quot: '"', amp: "&", lt: "<", gt: ">", apos: "'" })[e]!,
  );
}

/** Removes ANSI colour codes. */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** What one line of `deno test --reporter=dot` output is. */
export type DotLine = "progress" | "summary" | "check" | "other";

/** Sorts a line of the dot reporter's output: progress dots, the result line, or the rest. */
export function classify(line: string): DotLine {
  const plain = stripAnsi(line).trim();
  if (/^[.,!]+$/.test(plain)) return "progress";
  if (/^(ok|FAILED) \| \d+ passed/.test(plain)) return "summary";
  // Type-check chatter, and the Rust backtrace Deno adds to "Test failed" when RUST_BACKTRACE
  // is set: the failure itself is already printed above it.
  if (/^(Check|Download) /.test(plain) || /^Stack backtrace:$|^\d+: <unknown>$/.test(plain)) {
    return "check";
  }
  return "other";
}

/** Counts of the progress characters: `.` passed, `,` ignored, `!` failed. */
export interface Counts {
  /** Passed. */
  passed: number;
  /** Failed. */
  failed: number;
  /** Ignored (skipped). */
  ignored: number;
}

/** Feeds a stream's lines to `onLine` as they arrive. */
async function eachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let at: number;
    while ((at = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, at));
      pending = pending.slice(at + 1);
    }
  }
  if (pending !== "") onLine(pending);
}

/** Runs the suite with `args` passed on to `deno test`; returns its exit code. */
export async function main(args: string[]): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "viommu-test-" });
  const junit = `${dir}/junit.xml`;
  const notes = `${dir}/notes.txt`;
  const statusFile = `${dir}/status.txt`;
  await Deno.writeTextFile(notes, "");
  const progress = Progress.stderr();
  const start = performance.now();
  const counts: Counts = { passed: 0, failed: 0, ignored: 0 };
  let summary = "";
  let blanks = 0;
  const encoder = new TextEncoder();
  const print = (target: typeof Deno.stdout, line: string): void => {
    progress.clear();
    target.writeSync(encoder.encode(line + "\n"));
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--doc",
      "--reporter=dot",
      `--junit-path=${junit}`,
      ...TEST_PERMISSIONS,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { VIOMMU_TEST_NOTES: notes, VIOMMU_TEST_STATUS: statusFile },
  }).spawn();
  const draw = (): void => {
    let now = "";
    try {
      now = Deno.readTextFileSync(statusFile);
    } catch {
      // no test has said anything yet
    }
    progress.update(
      `tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.ignored} skipped` +
        ` (${seconds(performance.now() - start)})${now === "" ? "" : " · " + now}`,
    );
  };
  const timer = progress.active ? setInterval(draw, 250) : undefined;
  await Promise.all([
    eachLine(child.stdout, (line) => {
      const kind = classify(line);
      if (kind === "progress") {
        for (const c of stripAnsi(line).trim()) {
          if (c === ".") counts.passed++;
          else if (c === ",") counts.ignored++;
          else counts.failed++;
        }
      } else if (kind === "summary") summary = line;
      else if (stripAnsi(line).trim() === "") blanks++;
      else {
        // Blank lines are kept only between the lines of a failure report.
        for (; blanks > 0; blanks--) print(Deno.stdout, "");
        print(Deno.stdout, line);
      }
    }),
    eachLine(child.stderr, (line) => {
      if (classify(line) !== "check") print(Deno.stderr, line);
    }),
  ]);
  const { code } = await child.status;
  if (timer !== undefined) clearInterval(timer);
  progress.clear();
  let report = "";
  try {
    report = await Deno.readTextFile(junit);
  } catch {
    // deno test stopped before writing it (a type error): its own output says why
  }
  const skipped = skippedTests(report);
  if (counts.failed > 0) console.log("");
  if (skipped.length > 0) {
    console.log(`skipped (${skipped.length}):`);
    for (const s of skipped) console.log(`  ${s.name}  (${s.file.replace(/^\.\//, "")})`);
  }
  const noted = (await Deno.readTextFile(notes)).trim();
  if (noted !== "") console.log("notes:\n" + noted.split("\n").map((l) => "  " + l).join("\n"));
  if (summary !== "") console.log(summary);
  await Deno.remove(dir, { recursive: true });
  return code;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args));
}
