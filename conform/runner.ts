/**
 * Runs the catalogue against a device: one rule at a time, each on a freshly reset device,
 * every outcome settled (a check that throws is a failure with the error, a check whose setup
 * step the device refused is skipped with it). The device's `bypass` field is put back as it
 * was found, and the device is left reset.
 *
 * @module
 */

import { resetDevice } from "../driver/virtio/init.ts";
import { CONFIG_BYPASS, VIRTIO_IOMMU_F_BYPASS_CONFIG } from "../spec/iommu.ts";
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER } from "../spec/status.ts";
import { CATALOGUE, selectRules } from "./catalogue.ts";
import { CheckContext, type Rule } from "./context.ts";
import { RawSession, SUITE_FEATURES } from "./session.ts";
import {
  type ConformOptions,
  type ConformReport,
  type ConformTarget,
  type Outcome,
  PreconditionError,
  type RuleResult,
  type Verdict,
} from "./types.ts";

/** The outcome of a verdict for a rule of `level`. */
function outcomeOf(rule: Rule, verdict: Verdict): { outcome: Outcome; detail: string } {
  if ("skipped" in verdict) return { outcome: "skipped", detail: verdict.skipped };
  if (verdict.held) return { outcome: "pass", detail: verdict.detail };
  return { outcome: rule.level === "SHOULD" ? "deviation" : "fail", detail: verdict.detail };
}

/**
 * Reads the offered features after a reset (ACKNOWLEDGE and DRIVER set, as §3.1.1 does). A
 * reset that never completes is left for `status.reset` to judge: the features are read anyway.
 */
async function readOffered(target: ConformTarget, timeoutMs: number): Promise<bigint> {
  const t = target.transport;
  await resetDevice(t, timeoutMs).catch(() => {});
  t.setStatus(STATUS_ACKNOWLEDGE);
  t.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  const offered = t.readDeviceFeatures();
  await resetDevice(t, timeoutMs).catch(() => {});
  return offered;
}

/** Writes `bypass` back to `value` (sticky across device reset, §5.13.4.2). */
async function restoreBypass(target: ConformTarget, value: number, timeoutMs: number) {
  // SUITE_FEATURES has BYPASS_CONFIG whatever the run accepted: only it lets bypass be written.
  const s = await RawSession.open(target, { timeoutMs, features: SUITE_FEATURES, eventBuffers: 0 });
  try {
    if ((s.transport.readConfig8(CONFIG_BYPASS) & 1) !== value) {
      s.transport.writeConfig8(CONFIG_BYPASS, value);
    }
  } finally {
    await s.close();
  }
}

/**
 * Runs the conformance catalogue (or the rules `options.only` selects) against `target` and
 * returns the results and totals.
 *
 * @example Every rule against the mock device
 * ```ts ignore
 * const report = await runConformance(target);
 * console.log(report.totals); // { pass: …, fail: 0, deviation: 0, skipped: … }
 * ```
 */
export async function runConformance(
  target: ConformTarget,
  options: ConformOptions = {},
): Promise<ConformReport> {
  const rules = options.only === undefined || options.only.length === 0
    ? [...CATALOGUE]
    : selectRules(options.only);
  if (target.endpoints.length === 0) throw new RangeError("The target lists no endpoint");
  const timeoutMs = options.timeoutMs ?? 1000;
  const quietMs = options.quietMs ?? 100;
  const offered = await readOffered(target, timeoutMs);
  const hasBypass = ((offered >> VIRTIO_IOMMU_F_BYPASS_CONFIG) & 1n) === 1n;
  const bypass = hasBypass ? target.transport.readConfig8(CONFIG_BYPASS) & 1 : null;
  const memo = new Map<string, Promise<unknown>>();
  const results: RuleResult[] = [];
  try {
    for (const rule of rules) {
      const start = performance.now();
      let verdict: { outcome: Outcome; detail: string };
      if (rule.oracle === true && target.oracle === undefined) {
        verdict = {
          outcome: "skipped",
          detail: "needs a DMA oracle (a device such as QEMU's edu)",
        };
      } else if (rule.hazard !== undefined && options.hazardous !== true) {
        verdict = { outcome: "skipped", detail: `may take the device down: ${rule.hazard}` };
      } else {
        const ctx = new CheckContext(target, {
          offered,
          timeoutMs,
          quietMs,
          memo,
          features: options.features,
        });
        try {
          verdict = outcomeOf(rule, await rule.check(ctx));
        } catch (error) {
          verdict = error instanceof PreconditionError
            ? { outcome: "skipped", detail: `setup failed: ${error.message}` }
            : {
              outcome: rule.level === "SHOULD" ? "deviation" : "fail",
              detail: `the check could not finish: ${(error as Error).message}`,
            };
        } finally {
          await ctx.close().catch(() => {});
        }
      }
      const result: RuleResult = {
        id: rule.id,
        section: rule.section,
        level: rule.level,
        summary: rule.summary,
        ...verdict,
        ms: Math.round(performance.now() - start),
      };
      results.push(result);
      options.onResult?.(result);
    }
  } finally {
    if (bypass !== null) await restoreBypass(target, bypass, timeoutMs).catch(() => {});
    await resetDevice(target.transport, timeoutMs).catch(() => {});
  }
  const totals = { pass: 0, fail: 0, deviation: 0, skipped: 0 };
  for (const r of results) totals[r.outcome]++;
  return {
    results,
    totals,
    offered,
    mustFailed: results.some((r) => r.outcome === "fail" && r.level === "MUST"),
  };
}
