/**
 * The driver-side half of MAP and UNMAP (virtio 1.3 §5.13.6.5, §5.13.6.6): check the caller's
 * input, keep the driver's records of each domain's mappings, and decide what goes to the
 * device. One object per driver, shared by its one-at-a-time path and its batches, so the rules
 * live in one place and every caller reaches them through plain method calls (which the JIT
 * can inline, unlike per-instance closures).
 *
 * @module
 */

import { formatAddress } from "../../util/hex.ts";
import type { Address, Halves } from "../../util/u64.ts";
import type { RequestChecks } from "./checks.ts";
import type { DomainTable, SavedMappings } from "./domains.ts";
import { driverError } from "./errors.ts";

/** Send it, but the driver keeps no record (a domain the driver did not create). */
export const PLAN_SEND_UNTRACKED = 0;
/** Recorded only: the domain has no endpoint, the mapping is sent when one attaches. */
export const PLAN_RECORD_ONLY = 1;
/** Recorded and sent. */
export const PLAN_SEND = 2;

/** Checks and records MAP/UNMAP requests for one driver. Internal to the driver. */
export class MappingPlanner {
  /** The checks for the device's current configuration (replaced after a reset). */
  checks: RequestChecks;
  /** The driver's domains and their mappings. */
  readonly domains: DomainTable;
  /** Set once the driver is closed: every request is refused from then on. */
  closed = false;

  /** A planner over `checks` and `domains`. */
  constructor(checks: RequestChecks, domains: DomainTable) {
    this.checks = checks;
    this.domains = domains;
  }

  /** Throws IommuError "DRIVER" once the driver is closed. */
  open(): void {
    if (this.closed) refuseClosed();
  }

  /**
   * Checks a MAP and records it (§5.13.6.5), leaving iova/last/phys in `checks`. Returns a
   * PLAN_* value; throws IommuError "DRIVER" for a refusal.
   */
  prepareMap(domain: number, iova: Address, phys: Address, size: Address, flags: number): number {
    this.open();
    const checks = this.checks;
    checks.domain(domain);
    checks.flags(flags);
    checks.range("map", iova, size, phys);
    const record = this.domains.get(domain);
    // Not a domain this driver created: let the device judge (typically S_NOENT).
    if (record === undefined) return PLAN_SEND_UNTRACKED;
    const a = checks.iova, b = checks.last, c = checks.phys;
    this.domains.checkMappable(record, "map", a, b);
    if (record.mappings.insert(a.lo, a.hi, b.lo, b.hi, c.lo, c.hi, flags) < 0) {
      refuseMapping("map", domain, a, b, "overlaps an existing mapping");
    }
    return record.endpoints.size === 0 ? PLAN_RECORD_ONLY : PLAN_SEND;
  }

  /**
   * Checks an UNMAP and removes the records it covers (§5.13.6.6), appending each removed
   * mapping's 7 numbers to `saved` so a refusal can put them back. Leaves iova/last in
   * `checks`. Throws IommuError "DRIVER" when it would split a mapping (the driver MUST NOT).
   */
  prepareUnmap(domain: number, iova: Address, size: Address, saved: SavedMappings): number {
    this.open();
    const checks = this.checks;
    checks.domain(domain);
    checks.range("unmap", iova, size);
    const record = this.domains.get(domain);
    if (record === undefined) return PLAN_SEND_UNTRACKED;
    const a = checks.iova, b = checks.last;
    this.domains.checkMappable(record, "unmap", a, b);
    // Atomic like the device's UNMAP: a range that would split a mapping removes nothing.
    if (record.mappings.removeRange(a.lo, a.hi, b.lo, b.hi, saved) < 0) {
      refuseMapping("unmap", domain, a, b, "it would split a mapping");
    }
    return record.endpoints.size === 0 ? PLAN_RECORD_ONLY : PLAN_SEND;
  }
}

/** Throws the refusal of a request on a closed driver (kept out of the hot path). */
function refuseClosed(): never {
  throw driverError("The driver was closed");
}

/** Throws the driver's refusal of a MAP or UNMAP of `a`-`b` (kept out of the hot path). */
function refuseMapping(verb: string, domain: number, a: Halves, b: Halves, why: string): never {
  throw driverError(
    `Cannot ${verb} ${formatAddress(a.lo, a.hi)}-${
      formatAddress(b.lo, b.hi)
    } in domain ${domain}: ${why}`,
  );
}
