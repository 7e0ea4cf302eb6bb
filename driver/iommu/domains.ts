/**
 * What the driver remembers about domains (as Linux's viommu_domain does): the endpoints
 * attached to each, whether it is a bypass domain, and its mappings in an {@link IntervalMap},
 * so that a domain whose last endpoint left (and which the device therefore destroyed, virtio
 * 1.3 §5.13.6.4) can be rebuilt by replaying its mappings on the next ATTACH.
 *
 * @module
 */

import { IntervalMap, type IntervalSink } from "../../util/interval_map.ts";
import type { ReservedRegion } from "./probe.ts";
import { formatAddress } from "../../util/hex.ts";
import { compare, type Halves } from "../../util/u64.ts";
import { driverError } from "./errors.ts";
import type { UncertainLog } from "./uncertain.ts";

/** One domain as the driver knows it. */
export interface DomainRecord {
  /** Domain ID as sent in requests. */
  readonly id: number;
  /** Created with ATTACH_F_BYPASS: identity, no MAP/UNMAP. */
  readonly bypass: boolean;
  /** Endpoints attached right now. Empty means the device has no such domain at the moment. */
  readonly endpoints: Set<number>;
  /** The mappings, kept across detach of the last endpoint for replay. */
  readonly mappings: IntervalMap;
  /**
   * Reserved regions of the attached endpoints as u32 quadruples (startLo, startHi, endLo,
   * endHi), so MAP can check them on its hot path without bigint.
   */
  reserved: Uint32Array;
}

const NO_REGIONS = new Uint32Array(0);

/** The driver's domain and endpoint bookkeeping. Plain data plus a few rules. */
export class DomainTable {
  #domains = new Map<number, DomainRecord>();
  #endpointDomain = new Map<number, number>();
  #reserved = new Map<number, ReservedRegion[]>();
  #nextId = -1;
  /**
   * Set while a queue reset fails the requests in flight: every record a failed request
   * takes back is noted there too, since the device may have executed the request.
   */
  uncertain: UncertainLog | null = null;

  /** The record of domain `id`, or undefined when the driver never attached anything to it. */
  get(id: number): DomainRecord | undefined {
    return this.#domains.get(id);
  }

  /** Every domain the driver knows, in ID order. */
  all(): DomainRecord[] {
    return [...this.#domains.values()].sort((a, b) => a.id - b.id);
  }

  /** The domain endpoint `endpoint` is attached to, or undefined. */
  domainOf(endpoint: number): number | undefined {
    return this.#endpointDomain.get(endpoint);
  }

  /** Creates the record of domain `id` if needed and returns it. */
  ensure(id: number, bypass: boolean): DomainRecord {
    let record = this.#domains.get(id);
    if (!record) {
      record = {
        id,
        bypass,
        endpoints: new Set(),
        mappings: new IntervalMap(),
        reserved: NO_REGIONS,
      };
      this.#domains.set(id, record);
    }
    return record;
  }

  /**
   * Records a successful ATTACH: the endpoint leaves its previous domain (the device's implicit
   * detach, §5.13.6.3) and joins `id`. Returns true when `id` had no endpoint before, i.e. the
   * device created it afresh and its remembered mappings must be replayed.
   */
  attached(id: number, bypass: boolean, endpoint: number): boolean {
    const previous = this.#endpointDomain.get(endpoint);
    if (previous === id) return false;
    if (previous !== undefined) {
      const old = this.#domains.get(previous);
      old?.endpoints.delete(endpoint);
      if (old) this.#refreshReserved(old);
    }
    const record = this.ensure(id, bypass);
    const fresh = record.endpoints.size === 0;
    record.endpoints.add(endpoint);
    this.#endpointDomain.set(endpoint, id);
    this.#refreshReserved(record);
    return fresh;
  }

  /** Records a successful DETACH. */
  detached(id: number, endpoint: number): void {
    const record = this.#domains.get(id);
    record?.endpoints.delete(endpoint);
    if (record) this.#refreshReserved(record);
    if (this.#endpointDomain.get(endpoint) === id) this.#endpointDomain.delete(endpoint);
  }

  /** Forgets domain `id` and its mappings (it must have no endpoints). */
  forget(id: number): boolean {
    const record = this.#domains.get(id);
    if (!record || record.endpoints.size > 0) return false;
    this.#domains.delete(id);
    return true;
  }

  /**
   * After a device reset every endpoint is unattached (§5.13.6): returns who was attached
   * where, and empties the endpoint sets so re-attaching replays the mappings.
   */
  detachAll(): Array<{ domain: number; endpoint: number; bypass: boolean }> {
    const out: Array<{ domain: number; endpoint: number; bypass: boolean }> = [];
    for (const record of this.#domains.values()) {
      for (const endpoint of record.endpoints) {
        out.push({ domain: record.id, endpoint, bypass: record.bypass });
      }
      record.endpoints.clear();
      record.reserved = NO_REGIONS;
    }
    this.#endpointDomain.clear();
    return out;
  }

  /**
   * Throws unless MAP/UNMAP may go to `record` (§5.13.6.5.1: not to a bypass domain); for MAP
   * also checks [start, last] against the reserved regions of the domain's endpoints
   * (§5.13.6.7.1.1: the driver SHOULD NOT map them).
   */
  checkMappable(record: DomainRecord, verb: string, start: Halves, last: Halves): void {
    if (record.bypass) refuseBypass(record, verb);
    if (verb !== "map") return;
    const r = record.reserved;
    for (let i = 0; i < r.length; i += 4) {
      // Overlap: region.start <= last && start <= region.end.
      if (
        compare(r[i], r[i + 1], last.lo, last.hi) <= 0 &&
        compare(start.lo, start.hi, r[i + 2], r[i + 3]) <= 0
      ) {
        refuseReserved(record, start, last, i);
      }
    }
  }

  /**
   * Forgets the record of a MAP the device refused, unless a later UNMAP already removed it
   * and another mapping took its place (slots are reused).
   */
  forgetMap(
    domain: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    pLo: number,
    pHi: number,
  ): void {
    this.uncertain?.range(domain, sLo, sHi, eLo, eHi);
    const m = this.#domains.get(domain)?.mappings;
    if (m === undefined) return;
    const now = m.find(sLo, sHi);
    if (
      now >= 0 && m.startLo(now) === sLo && m.startHi(now) === sHi && m.endLo(now) === eLo &&
      m.endHi(now) === eHi && m.physLo(now) === pLo && m.physHi(now) === pHi
    ) {
      m.remove(now);
    }
  }

  /**
   * Puts back mappings removed by an UNMAP the device refused (it SHOULD NOT remove anything
   * on failure, §5.13.6.6.2): `saved[from..to)` holds 7 numbers per mapping.
   */
  restoreMappings(domain: number, saved: ArrayLike<number>, from: number, to: number): void {
    const m = this.#domains.get(domain)?.mappings;
    if (m === undefined) return;
    for (let i = from; i < to; i += 7) {
      this.uncertain?.range(domain, saved[i], saved[i + 1], saved[i + 2], saved[i + 3]);
      m.insert(
        saved[i],
        saved[i + 1],
        saved[i + 2],
        saved[i + 3],
        saved[i + 4],
        saved[i + 5],
        saved[i + 6],
      );
    }
  }

  /** Remembers the reserved regions PROBE reported for `endpoint`. */
  setReserved(endpoint: number, regions: ReservedRegion[]): void {
    this.#reserved.set(endpoint, regions);
    const id = this.#endpointDomain.get(endpoint);
    const record = id === undefined ? undefined : this.#domains.get(id);
    if (record) this.#refreshReserved(record);
  }

  /** Recomputes `record.reserved` from its endpoints' regions. */
  #refreshReserved(record: DomainRecord): void {
    const quads: number[] = [];
    for (const endpoint of record.endpoints) {
      for (const r of this.reservedOf(endpoint)) {
        quads.push(
          Number(r.start & 0xffff_ffffn),
          Number(r.start >> 32n),
          Number(r.end & 0xffff_ffffn),
          Number(r.end >> 32n),
        );
      }
    }
    record.reserved = quads.length === 0 ? NO_REGIONS : Uint32Array.from(quads);
  }

  /** The reserved regions of `endpoint` (empty when it was never probed). */
  reservedOf(endpoint: number): ReservedRegion[] {
    return this.#reserved.get(endpoint) ?? [];
  }

  /**
   * A domain ID in [start, end] that the driver does not use yet, or -1 when none is left.
   * IDs are handed out round-robin so a just-freed ID is not reused at once.
   */
  allocate(start: number, end: number, bypass = false): number {
    const span = end - start + 1;
    for (let i = 0; i < Math.min(span, this.#domains.size + 1); i++) {
      this.#nextId = this.#nextId < start || this.#nextId >= end ? start : this.#nextId + 1;
      if (!this.#domains.has(this.#nextId)) {
        this.ensure(this.#nextId, bypass);
        return this.#nextId;
      }
    }
    return -1;
  }
}

/**
 * Mappings taken out by an UNMAP, kept so they can be put back if the device refuses it:
 * 7 numbers each (start, end, phys halves, flags) in a growable typed array.
 */
export class SavedMappings implements IntervalSink {
  /** The saved numbers; valid up to {@link SavedMappings.length}. */
  data: Float64Array = new Float64Array(70);
  /** Numbers in use. */
  length = 0;

  /** Saves one mapping. Allocation-free once grown. */
  keep(
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    pLo: number,
    pHi: number,
    flags: number,
  ): void {
    if (this.length + 7 > this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    const d = this.data;
    const n = this.length;
    d[n] = sLo;
    d[n + 1] = sHi;
    d[n + 2] = eLo;
    d[n + 3] = eHi;
    d[n + 4] = pLo;
    d[n + 5] = pHi;
    d[n + 6] = flags;
    this.length = n + 7;
  }
}

/** Throws for a MAP or UNMAP on a bypass domain (kept out of the hot path). */
function refuseBypass(record: DomainRecord, verb: string): never {
  throw driverError(`Cannot ${verb} in domain ${record.id}: it is a bypass domain`);
}

/** Throws for a MAP over reserved region `i` (its index in `record.reserved`). */
function refuseReserved(record: DomainRecord, start: Halves, last: Halves, i: number): never {
  const r = record.reserved;
  throw driverError(
    `Cannot map ${formatAddress(start.lo, start.hi)}-${
      formatAddress(last.lo, last.hi)
    } in domain ` +
      `${record.id}: overlaps the reserved region ${formatAddress(r[i], r[i + 1])}-` +
      `${formatAddress(r[i + 2], r[i + 3])} of an endpoint`,
  );
}
