/**
 * The checks an ATTACH to a domain that already has endpoints must pass first: the domain's
 * mappings stay clear of the newcomer's reserved regions, and the reserved regions of all its
 * endpoints can be merged (§5.13.6.3.2, §5.13.6.7.1.1).
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import type { DomainRecord, DomainTable } from "./domains.ts";
import { driverError } from "./errors.ts";
import { mergeReservedRegions, ReservedRegionConflictError } from "./probe.ts";

/**
 * Throws IommuError "DRIVER" when `endpoint` cannot join `record`'s domain: a mapping overlaps
 * one of its non-identity reserved regions, or its reserved regions conflict with those of the
 * endpoints already there (`allowIdentity`: IDENTITY regions may sit next to endpoints without).
 */
export function checkReservedCompatible(
  domains: DomainTable,
  record: DomainRecord,
  endpoint: number,
  allowIdentity: boolean,
): void {
  // The domain's mappings must stay clear of the newcomer's reserved regions (MSI doorbell,
  // firmware memory): the driver SHOULD NOT map them (§5.13.6.7.1.1), and the device SHOULD
  // refuse an endpoint whose properties clash with the domain (§5.13.6.3.2).
  for (const r of domains.reservedOf(endpoint)) {
    if (r.kind === "identity") continue; // An identity region is to be mapped 1:1.
    const sLo = Number(r.start & 0xffff_ffffn), sHi = Number(r.start >> 32n);
    const eLo = Number(r.end & 0xffff_ffffn), eHi = Number(r.end >> 32n);
    if (record.mappings.overlaps(sLo, sHi, eLo, eHi)) {
      throw driverError(
        `Cannot attach endpoint ${endpoint} to domain ${record.id}: the domain maps addresses ` +
          `in its ${r.kind} region ${hex(r.start)}-${hex(r.end)}`,
      );
    }
  }
  const lists = [...record.endpoints].filter((e) => e !== endpoint).map((e) =>
    domains.reservedOf(e)
  );
  if (lists.length === 0) return;
  lists.push(domains.reservedOf(endpoint));
  try {
    mergeReservedRegions(lists, allowIdentity);
  } catch (error) {
    if (error instanceof ReservedRegionConflictError) {
      throw driverError(
        `Cannot attach endpoint ${endpoint} to domain ${record.id}: ${error.message}`,
      );
    }
    throw error;
  }
}
