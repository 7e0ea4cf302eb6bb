/**
 * Views of the driver's own records for callers (domains, mappings, translation), and the
 * page split of a MAP with `split: true`. Read-only: nothing here sends a request.
 *
 * @module
 */

import { joinAddress } from "../../util/u64.ts";
import type { DomainInfo, MappingInfo } from "./api.ts";
import type { DomainTable } from "./domains.ts";

/** The domains in `table`, endpoints sorted. */
export function domainInfos(table: DomainTable): DomainInfo[] {
  return table.all().map((d) => ({
    id: d.id,
    bypass: d.bypass,
    endpoints: [...d.endpoints].sort((a, b) => a - b),
    mappings: d.mappings.size,
  }));
}

/** The mappings `table` remembers for `domain`, in address order (none for an unknown domain). */
export function mappingInfos(table: DomainTable, domain: number): MappingInfo[] {
  const record = table.get(domain);
  if (!record) return [];
  const m = record.mappings;
  const out: MappingInfo[] = [];
  m.forEach((s) => {
    out.push({
      iova: joinAddress(m.startLo(s), m.startHi(s)),
      last: joinAddress(m.endLo(s), m.endHi(s)),
      phys: joinAddress(m.physLo(s), m.physHi(s)),
      flags: m.flags(s),
    });
  });
  return out;
}

/** The physical address IOVA `lo`/`hi` maps to in `domain` by `table`'s records, or null. */
export function physOf(table: DomainTable, domain: number, lo: number, hi: number): bigint | null {
  const record = table.get(domain);
  if (!record) return null;
  const m = record.mappings;
  const s = m.find(lo, hi);
  if (s < 0) return null;
  return joinAddress(m.physLo(s), m.physHi(s)) +
    (joinAddress(lo, hi) - joinAddress(m.startLo(s), m.startHi(s)));
}

/**
 * Splits `[iova, last]` (mapped to `phys`) into the largest pages `pageSizeMask` allows
 * (§5.13.4: page_size_mask), each aligned in both address spaces; at least the granule
 * (`1 << granuleShift`). Returns `[iova, phys, size]` triples in order.
 */
export function pageChunks(
  iova: bigint,
  phys: bigint,
  last: bigint,
  pageSizeMask: bigint,
  granuleShift: number,
): Array<[bigint, bigint, bigint]> {
  const chunks: Array<[bigint, bigint, bigint]> = [];
  while (iova <= last) {
    const remaining = last - iova + 1n;
    let size = 1n << BigInt(granuleShift);
    for (let bit = 63n; bit >= 0n; bit--) {
      const page = 1n << bit;
      if ((pageSizeMask & page) === 0n || page > remaining) continue;
      if (iova % page !== 0n || phys % page !== 0n) continue;
      size = page;
      break;
    }
    chunks.push([iova, phys, size]);
    iova += size;
    phys += size;
  }
  return chunks;
}
