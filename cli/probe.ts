/**
 * `viommu probe <endpoint>`: the endpoint's properties from a PROBE request (virtio 1.3
 * §5.13.6.6): its reserved regions by type, and any property the driver did not understand.
 *
 * @module
 */

import type { ProbeResult } from "../driver/iommu/probe.ts";
import { heading, keyValues, type Painter } from "./format.ts";
import { hex } from "../util/hex.ts";

/** The probe result as JSON fields: `endpoint`, `regions: [{type, start, end}]`, `unknown`. */
export function probeJson(result: ProbeResult): Record<string, unknown> {
  return {
    endpoint: result.endpoint,
    regions: result.regions.map((r) => ({ type: r.kind, start: hex(r.start), end: hex(r.end) })),
    unknown: result.unknown.map((u) => ({ type: u.type, length: u.length })),
    ignored: result.ignored,
  };
}

/** The probe result for people. */
export function formatProbe(result: ProbeResult, painter: Painter): string {
  let out = heading(painter, `Endpoint ${hex(result.endpoint)}`);
  const rows: [string, string][] = result.regions.map((r) => [
    "reserved",
    `${r.kind.padEnd(9)}${hex(r.start)}-${hex(r.end)}`,
  ]);
  if (rows.length === 0) rows.push(["reserved", "none"]);
  for (const u of result.unknown) {
    rows.push(["unknown", `property type ${u.type}, ${u.length} bytes`]);
  }
  if (result.ignored > 0) rows.push(["ignored", `${result.ignored} malformed properties`]);
  out += keyValues(painter, rows);
  return out;
}
