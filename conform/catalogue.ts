/**
 * The catalogue: every device-side rule of virtio 1.3 §5.13 the suite checks, and the generic
 * device rules a driver can observe (§2.1.2, §2.2.2, §2.4.1, §2.5.2, §2.7, §4.1.4.3.1, §6.2),
 * as data. Rules the spec states that a driver cannot observe are listed in the README with
 * the reason.
 *
 * @module
 */

import { ATTACH_RULES } from "./attach_rules.ts";
import type { Rule } from "./context.ts";
import { DETACH_RULES } from "./detach_rules.ts";
import { DEVICE_RULES } from "./device_rules.ts";
import { FAULT_RULES } from "./fault_rules.ts";
import { FEATURE_RULES } from "./feature_rules.ts";
import { FRAMING_RULES } from "./framing_rules.ts";
import { MAP_RULES } from "./map_rules.ts";
import { PROBE_RULES } from "./probe_rules.ts";
import { UNMAP_RULES } from "./unmap_rules.ts";
import type { Level } from "./types.ts";

/** Every rule, in the order a run reports them. */
export const CATALOGUE: readonly Rule[] = [
  ...FEATURE_RULES,
  ...DEVICE_RULES,
  ...FRAMING_RULES,
  ...ATTACH_RULES,
  ...DETACH_RULES,
  ...MAP_RULES,
  ...UNMAP_RULES,
  ...PROBE_RULES,
  ...FAULT_RULES,
];

/** The rule with `id`, or undefined. */
export function findRule(id: string): Rule | undefined {
  return CATALOGUE.find((r) => r.id === id);
}

/**
 * The rules `patterns` select (ids, or `area.*` for every rule of an area), in catalogue
 * order. Throws RangeError naming a pattern that selects nothing.
 */
export function selectRules(patterns: readonly string[]): Rule[] {
  const matches = (rule: Rule, p: string): boolean =>
    p.endsWith(".*") ? rule.id.startsWith(p.slice(0, -1)) : rule.id === p;
  for (const p of patterns) {
    if (!CATALOGUE.some((r) => matches(r, p))) {
      throw new RangeError(`No conformance rule matches "${p}"`);
    }
  }
  return CATALOGUE.filter((r) => patterns.some((p) => matches(r, p)));
}

/** How many rules of each keyword the catalogue holds. */
export function countByLevel(rules: readonly Rule[] = CATALOGUE): Record<Level, number> {
  const out: Record<Level, number> = { MUST: 0, SHOULD: 0, MAY: 0 };
  for (const r of rules) out[r.level]++;
  return out;
}
