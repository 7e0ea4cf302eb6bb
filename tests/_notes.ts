/**
 * What a test has to say besides pass or fail, kept out of the middle of the test output:
 *
 * - {@link note}: a figure worth reading (a boot time, a µs per pair). Under `deno task test`
 *   (tools/test.ts) it is printed in the summary at the end; run directly, it is logged.
 * - {@link status}: what a long test is doing right now ("booting the guest"). Under
 *   `deno task test` the runner shows it on its progress line; run directly on a terminal, it
 *   is a progress line of its own.
 * - {@link skipName}: a skipped test's name carries its reason, so the summary can list why
 *   (`Deno.test({ name: skipName("real device", why), ignore: true, fn() {} })`).
 *
 * @module
 */

import { Progress } from "../tools/progress.ts";

/** Environment variable naming the file notes are appended to (set by tools/test.ts). */
export const NOTES_ENV = "VIOMMU_TEST_NOTES";
/** Environment variable naming the file the current status is written to (tools/test.ts). */
export const STATUS_ENV = "VIOMMU_TEST_STATUS";

const progress = Progress.stderr();

function envPath(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get(name) || undefined;
}

/** Records `line` for the summary at the end of `deno task test` (or logs it when run alone). */
export function note(line: string): void {
  const path = envPath(NOTES_ENV);
  if (path === undefined) console.log(line);
  else Deno.writeTextFileSync(path, line + "\n", { append: true });
}

/** Says what a long test is doing now; `null` when it is done. */
export function status(text: string | null): void {
  const path = envPath(STATUS_ENV);
  if (path !== undefined) Deno.writeTextFileSync(path, text ?? "");
  else if (text === null) progress.clear();
  else progress.update(text);
}

/** `name`, or `name — skipped: why` for a test registered with `ignore: true`. */
export function skipName(name: string, why: string | null): string {
  return why === null ? name : `${name} — skipped: ${why}`;
}
