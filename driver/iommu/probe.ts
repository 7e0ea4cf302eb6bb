/**
 * PROBE properties (virtio 1.3 §5.13.6.7): parsing the device-written property area, and the
 * merging of reserved regions of endpoints that share a domain (seed 004's combination table).
 * The parser never reads past the buffer the driver owns, whatever lengths the device wrote.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import {
  PROP_HEADER_SIZE,
  PROP_TYPE_MASK,
  RESV_MEM_END,
  RESV_MEM_SIZE,
  RESV_MEM_START,
  RESV_MEM_SUBTYPE,
  VIRTIO_IOMMU_PROBE_T_NONE,
  VIRTIO_IOMMU_PROBE_T_RESV_MEM,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
} from "../../spec/iommu.ts";

/**
 * Kind of a reserved region: `reserved` (never map), `msi` (the MSI doorbell, identity-mapped
 * by the device), `identity` (the draft subtype of seed 004: must be identity-mapped).
 */
export type ReservedKind = "reserved" | "msi" | "identity";

/** A reserved IOVA range of an endpoint; `end` is inclusive. */
export interface ReservedRegion {
  /** What the region is for. */
  kind: ReservedKind;
  /** First address. */
  start: bigint;
  /** Last address (inclusive). */
  end: bigint;
}

/** A property the parser did not interpret, kept for display. */
export interface UnknownProperty {
  /** The property type (12 bits). */
  type: number;
  /** Its length field (bytes after the 4-byte header). */
  length: number;
}

/** What PROBE told about an endpoint. */
export interface ProbeResult {
  /** The endpoint probed. */
  endpoint: number;
  /** Reserved regions, sorted by start. */
  regions: ReservedRegion[];
  /** Properties of unknown type that were skipped. */
  unknown: UnknownProperty[];
  /** Properties ignored because reserved bits were set or they were malformed. */
  ignored: number;
}

/** Options for {@link parseProbeProperties}. */
export interface ProbeParseOptions {
  /**
   * RESV_MEM subtype number to read as `identity` (seed 004's draft subtype; not in the
   * published spec, where an unknown subtype is RESERVED). Default: none.
   */
  identitySubtype?: number;
}

function le64(view: DataView, offset: number): bigint {
  return (BigInt(view.getUint32(offset + 4, true)) << 32n) |
    BigInt(view.getUint32(offset, true));
}

/**
 * Parses `probeSize` bytes of properties at `offset` in `view` (§5.13.6.7.2): stops at type
 * NONE or at the end of the area, steps by `length + 4`, skips unknown types, ignores a
 * property with reserved type bits set (MUST), reads an unknown RESV_MEM subtype as RESERVED
 * (SHOULD), and never reads past the area: a property whose length overruns it ends parsing.
 */
export function parseProbeProperties(
  view: DataView,
  offset: number,
  probeSize: number,
  endpoint: number,
  options: ProbeParseOptions = {},
): ProbeResult {
  const result: ProbeResult = { endpoint, regions: [], unknown: [], ignored: 0 };
  let cur = 0;
  while (cur + PROP_HEADER_SIZE <= probeSize) {
    const word = view.getUint16(offset + cur, true);
    const length = view.getUint16(offset + cur + 2, true);
    const type = word & PROP_TYPE_MASK;
    if (type === VIRTIO_IOMMU_PROBE_T_NONE) break; // End of the list (§5.13.6.7).
    const total = PROP_HEADER_SIZE + length;
    if (cur + total > probeSize) {
      // The property claims more bytes than the area holds: nothing past here is trustworthy.
      result.ignored++;
      break;
    }
    if ((word & ~PROP_TYPE_MASK) !== 0) {
      result.ignored++; // Reserved bits 12-15 set: the driver MUST ignore the property.
    } else if (type === VIRTIO_IOMMU_PROBE_T_RESV_MEM) {
      if (total < RESV_MEM_SIZE) {
        result.ignored++;
      } else {
        const at = offset + cur;
        const subtype = view.getUint8(at + RESV_MEM_SUBTYPE);
        const start = le64(view, at + RESV_MEM_START);
        const end = le64(view, at + RESV_MEM_END);
        if (end < start) {
          result.ignored++;
        } else {
          const kind: ReservedKind = subtype === VIRTIO_IOMMU_RESV_MEM_T_MSI
            ? "msi"
            : subtype === options.identitySubtype
            ? "identity"
            // RESERVED, and any unknown subtype (§5.13.6.7.1.2: SHOULD treat as RESERVED).
            : "reserved";
          result.regions.push({ kind, start, end });
        }
      }
    } else {
      result.unknown.push({ type, length });
    }
    cur += total;
  }
  result.regions.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  return result;
}

/** Thrown when reserved regions of endpoints cannot share a domain (seed 004: N + I). */
export class ReservedRegionConflictError extends Error {
  /** The identity region that has no counterpart. */
  readonly region: ReservedRegion;
  /** Creates the error. */
  constructor(region: ReservedRegion) {
    super(
      `Cannot share a domain: identity region ${hex(region.start)}-${
        hex(region.end)
      } of one endpoint covers addresses another endpoint may use for DMA`,
    );
    this.name = "ReservedRegionConflictError";
    this.region = region;
  }
}

const RANK: Record<ReservedKind, number> = { msi: 1, reserved: 2, identity: 3 };

/**
 * Merges the reserved regions of endpoints that share a domain (seed 004): where regions of
 * several endpoints overlap the result is R + M = R, M + M = M, anything + I = I. An identity
 * region over addresses where some endpoint has nothing (N + I) would let that endpoint reach
 * firmware memory: it throws {@link ReservedRegionConflictError} unless `allowIdentity` is set.
 * Returns disjoint regions sorted by start.
 */
export function mergeReservedRegions(
  perEndpoint: readonly (readonly ReservedRegion[])[],
  allowIdentity = false,
): ReservedRegion[] {
  // Sweep over every boundary; inside each elementary interval take the strongest kind and
  // count how many endpoints cover it.
  const points = new Set<bigint>();
  for (const list of perEndpoint) {
    for (const r of list) {
      points.add(r.start);
      points.add(r.end + 1n);
    }
  }
  const sorted = [...points].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: ReservedRegion[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const start = sorted[i];
    const end = sorted[i + 1] - 1n;
    let kind: ReservedKind | null = null;
    let covering = 0;
    for (const list of perEndpoint) {
      const hit = list.find((r) => r.start <= start && end <= r.end);
      if (!hit) continue;
      covering++;
      if (kind === null || RANK[hit.kind] > RANK[kind]) kind = hit.kind;
    }
    if (kind === null) continue;
    if (kind === "identity" && covering < perEndpoint.length && !allowIdentity) {
      throw new ReservedRegionConflictError({ kind, start, end });
    }
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.end + 1n === start) last.end = end;
    else out.push({ kind, start, end });
  }
  return out;
}
