/**
 * The report a guest script builds step by step and prints as one `REPORT {json}` line for the
 * host-side test to assert on. Each step records its result, or its error, and its duration,
 * so one failing step does not hide the others.
 *
 * @module
 */

/** The report: plain JSON once printed (bigints become hex strings). */
export const report: Record<string, unknown> = {};

/** Runs `fn` as step `name`, recording its result (or error, with status/errno) and duration. */
export async function step(name: string, fn: () => unknown): Promise<void> {
  const start = performance.now();
  try {
    const result = await fn();
    report[name] = { ok: true, ms: Math.round(performance.now() - start), result };
  } catch (err) {
    const e = err as Error & { status?: string; errno?: number };
    report[name] = {
      ok: false,
      ms: Math.round(performance.now() - start),
      error: `${e.name}: ${e.message}`,
      status: e.status,
      errno: e.errno,
    };
  }
}

/** Prints the report line. */
export function printReport(): void {
  console.log(
    "REPORT " +
      JSON.stringify(
        report,
        (_key, value) => typeof value === "bigint" ? "0x" + value.toString(16) : value,
      ),
  );
}
