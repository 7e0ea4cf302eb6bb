/**
 * `viommu probe <endpoint>`: the endpoint's properties from a PROBE request (virtio 1.3
 * §5.13.6.6): its reserved regions by kind, and any property the driver did not understand.
 * Field names are the library's `ProbeResult`, `ReservedRegion` and `UnknownProperty`.
 *
 * @module
 */

import type { ProbeResult } from "../driver/iommu/probe.ts";
import { heading, keyValues, type Painter } from "./format.ts";
import { hex } from "../util/hex.ts";

/**
 * The probe result as JSON fields: `endpoint`, `regions: [{kind, start, end}]`,
 * `unknown: [{type, length}]`, `ignored` (64-bit addresses as `0x…` strings).
 */
export function probeJson(result: ProbeResult): Record<string, unknown> {
  return {
    endpoint: result.endpoint,
    regions: result.regions.map((r) => ({ kind: r.kind, start: hex(r.start), end: hex(r.end) })),
    unknown: result.unknown.map((u) => ({ type: u.type, length: u.length })),
    ignored: result.ignored,
  };
}

/** The probe result for people. */
export function formatProbe(result: ProbeResult, painter: Painter): string {
  let out = heading(painter, `endpoint ${hex(result.endpoint)}`);
  const rows: [string, string][] = result.regions.map((r) => [
    "regions",
    `${r.kind.padEnd(9)}${hex(r.start)}-${hex(r.end)}`,
  ]);
  if (rows.length === 0) rows.push(["regions", "none"]);
  for (const u of result.unknown) {
    rows.push(["unknown", `type ${hex(u.type)}, length ${u.length}`]);
  }
  if (result.ignored > 0) rows.push(["ignored", `${result.ignored} malformed properties`]);
  out += keyValues(painter, rows);
  return out;
}
