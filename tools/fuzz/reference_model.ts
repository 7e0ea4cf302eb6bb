/**
 * The reference model of the model-based test (tools/fuzz/model.ts): the spec's semantics of
 * attach/detach/map/unmap/probe/translate/reset as a caller of the driver sees them, naive and
 * obviously right (bigint, arrays, linear scans), over a small fixed universe of domains,
 * endpoints and reserved regions that {@link MOCK_OPTIONS} gives the mock device too.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import type { MockIommuOptions } from "../../mock/iommu/options.ts";

/** One step of a sequence. */
export type Op =
  | { k: "attach"; d: number; ep: number }
  | { k: "detach"; d: number; ep: number }
  | { k: "map"; d: number; iova: bigint; phys: bigint; size: bigint; flags: number }
  | { k: "unmap"; d: number; iova: bigint; size: bigint }
  | { k: "probe"; ep: number }
  | { k: "translate"; ep: number; iova: bigint; access: "read" | "write" }
  | { k: "reset" };

/** The model's page, and where its IOVAs and physical addresses start. */
export const PAGE = 0x1000n;
/** First IOVA the generated ops use. */
export const BASE = 0x10000n;
/** First physical address the generated ops use. */
export const PHYS_BASE = 0x100_0000n;
/** Domain range of the device: 1..4 (0 and 5 are outside). */
export const DOMAIN_START = 1;
/** Last domain of the device's range. */
export const DOMAIN_END = 4;
/** Endpoints the device knows; 40 is unknown to it. */
export const ENDPOINTS: readonly number[] = [8, 16, 24];
/** An endpoint the device does not know. */
export const UNKNOWN_ENDPOINT = 40;

/** An inclusive reserved region of the device config, with its kind. */
interface Region {
  start: bigint;
  end: bigint;
  kind: "reserved" | "msi";
}

/** Static reserved regions of each endpoint (the device's config, reported by PROBE). */
const REGIONS: Record<number, Region[]> = {
  8: [],
  16: [{ start: BASE + 12n * PAGE, end: BASE + 14n * PAGE - 1n, kind: "reserved" }],
  24: [{ start: BASE + 14n * PAGE, end: BASE + 15n * PAGE - 1n, kind: "msi" }],
};

/** The mock's options for the model's universe. */
export const MOCK_OPTIONS: MockIommuOptions = {
  bypass: false,
  queueSizes: [8, 8],
  domainRange: { start: DOMAIN_START, end: DOMAIN_END },
  endpoints: ENDPOINTS.map((id) => ({
    id,
    reservedRegions: REGIONS[id].map((r) => ({ start: r.start, end: r.end, subtype: r.kind })),
  })),
};

/** Formats an op as a call, for the shrunk reproduction. */
export function formatOp(op: Op): string {
  const h = (v: bigint): string => hex(v);
  switch (op.k) {
    case "attach":
    case "detach":
      return `${op.k}(${op.d}, ${op.ep})`;
    case "map":
      return `map(${op.d}, ${h(op.iova)}, ${h(op.phys)}, ${h(op.size)}, ${op.flags})`;
    case "unmap":
      return `unmap(${op.d}, ${h(op.iova)}, ${h(op.size)})`;
    case "probe":
      return `probe(${op.ep})`;
    case "translate":
      return `translate(${op.ep}, ${h(op.iova)}, "${op.access}")`;
    case "reset":
      return "reset()";
  }
}

/** A mapping in the reference model (inclusive end). */
export interface Mapping {
  start: bigint;
  end: bigint;
  phys: bigint;
  flags: number;
}

/** A domain in the reference model. */
interface ModelDomain {
  endpoints: Set<number>;
  maps: Mapping[];
}

function overlaps(aStart: bigint, aEnd: bigint, bStart: bigint, bEnd: bigint): boolean {
  return aStart <= bEnd && bStart <= aEnd;
}

/**
 * The spec's semantics as a caller of the driver sees them (virtio 1.3 §5.13.6), naive and
 * obviously right. Driver side: a domain remembers its mappings while it has no endpoint and
 * replays them when one attaches; the driver refuses (DRIVER) what the spec says it MUST NOT
 * send. Device side: domains die with their last endpoint (§5.13.6.4), MAP into a reserved
 * region is INVAL, UNMAP splitting a mapping is RANGE, translation faults as §5.13.5 says.
 */
export class ReferenceModel {
  /** Driver records: domain → endpoints and mappings (Map order = creation order). */
  #drv = new Map<number, ModelDomain>();
  #drvEp = new Map<number, number>();
  /** Endpoint → domain whose re-attach failed at a reset: the next reset tries again. */
  #reattach = new Map<number, number>();
  /** Reserved regions the driver learnt by PROBE. */
  #probed = new Map<number, Region[]>();
  /** Device state. */
  #dev = new Map<number, ModelDomain>();
  #devEp = new Map<number, number>();

  /** Applies `op` and returns its outcome. */
  apply(op: Op): string {
    switch (op.k) {
      case "attach":
        if (!this.#inRange(op.d)) return "DRIVER";
        return this.#attach(op.d, op.ep);
      case "detach":
        return this.#detach(op.d, op.ep);
      case "map":
        return this.#map(op);
      case "unmap":
        return this.#unmap(op.d, op.iova, op.size);
      case "probe": {
        const regions = REGIONS[op.ep];
        if (regions === undefined) return "NOENT";
        this.#probed.set(op.ep, regions);
        return "OK " + JSON.stringify(sortRegions(regions).map(regionText));
      }
      case "translate":
        return this.#translate(op.ep, op.iova, op.access);
      case "reset":
        return this.#reset();
    }
  }

  /** Domain → mappings on the driver side, as text, for the state comparison. */
  driverState(): string {
    return stateText(this.#drv);
  }

  /** Domain → mappings on the device side, as text. */
  deviceState(): string {
    return stateText(this.#dev);
  }

  #inRange(d: number): boolean {
    return d >= DOMAIN_START && d <= DOMAIN_END;
  }

  #attach(d: number, ep: number): string {
    const rec = this.#drv.get(d);
    if (rec?.endpoints.has(ep)) return "OK"; // already there: nothing sent
    // The driver will not expose a probed reserved region the domain already maps.
    const probed = this.#probed.get(ep) ?? [];
    if (rec?.maps.some((m) => probed.some((r) => overlaps(m.start, m.end, r.start, r.end)))) {
      return "DRIVER";
    }
    if (REGIONS[ep] === undefined) return "NOENT";
    this.#reattach.delete(ep);
    // Device: moves the endpoint (implicit detach), creating the domain.
    this.#devDetach(ep);
    let dom = this.#dev.get(d);
    if (!dom) this.#dev.set(d, dom = { endpoints: new Set(), maps: [] });
    dom.endpoints.add(ep);
    this.#devEp.set(ep, d);
    // Driver records.
    const prev = this.#drvEp.get(ep);
    if (prev !== undefined) this.#drv.get(prev)?.endpoints.delete(ep);
    let record = this.#drv.get(d);
    if (!record) this.#drv.set(d, record = { endpoints: new Set(), maps: [] });
    const fresh = record.endpoints.size === 0;
    record.endpoints.add(ep);
    this.#drvEp.set(ep, d);
    if (!fresh) return "OK";
    // A domain the device has just created gets the remembered mappings again; if the device
    // refuses one, the driver detaches the endpoint again (attach is all or nothing), and the
    // domain keeps remembering every mapping.
    let first = "OK";
    for (const m of [...record.maps].sort((a, b) => (a.start < b.start ? -1 : 1))) {
      const s = this.#devMap(d, m);
      if (s !== "OK" && first === "OK") first = s;
    }
    if (first !== "OK") {
      this.#devDetach(ep);
      record.endpoints.delete(ep);
      this.#drvEp.delete(ep);
    }
    return first;
  }

  #devDetach(ep: number): void {
    const old = this.#devEp.get(ep);
    if (old === undefined) return;
    const dom = this.#dev.get(old)!;
    dom.endpoints.delete(ep);
    this.#devEp.delete(ep);
    if (dom.endpoints.size === 0) this.#dev.delete(old);
  }

  #detach(d: number, ep: number): string {
    if (!this.#inRange(d)) return "DRIVER";
    this.#reattach.delete(ep);
    if (REGIONS[ep] === undefined) return "NOENT";
    if (this.#devEp.get(ep) !== d) return "INVAL";
    this.#devDetach(ep);
    this.#drv.get(d)?.endpoints.delete(ep);
    if (this.#drvEp.get(ep) === d) this.#drvEp.delete(ep);
    return "OK";
  }

  /** The device's MAP. */
  #devMap(d: number, m: Mapping): string {
    const dom = this.#dev.get(d);
    if (!dom) return "NOENT";
    for (const ep of dom.endpoints) {
      for (const r of REGIONS[ep]) if (overlaps(m.start, m.end, r.start, r.end)) return "INVAL";
    }
    if (dom.maps.some((x) => overlaps(m.start, m.end, x.start, x.end))) return "INVAL";
    dom.maps.push({ ...m });
    return "OK";
  }

  #map(op: Extract<Op, { k: "map" }>): string {
    if (!this.#inRange(op.d)) return "DRIVER";
    // Unknown bits, or no access at all (the driver refuses flags 0 as a caller's mistake).
    if ((op.flags & ~7) !== 0 || (op.flags & 3) === 0) return "DRIVER";
    if (op.iova % PAGE !== 0n || op.phys % PAGE !== 0n || op.size % PAGE !== 0n) return "DRIVER";
    const m: Mapping = {
      start: op.iova,
      end: op.iova + op.size - 1n,
      phys: op.phys,
      flags: op.flags,
    };
    const rec = this.#drv.get(op.d);
    if (!rec) return this.#devMap(op.d, m);
    for (const ep of rec.endpoints) {
      for (const r of this.#probed.get(ep) ?? []) {
        if (overlaps(m.start, m.end, r.start, r.end)) return "DRIVER";
      }
    }
    if (rec.maps.some((x) => overlaps(m.start, m.end, x.start, x.end))) return "DRIVER";
    if (rec.endpoints.size === 0) {
      rec.maps.push(m);
      return "OK";
    }
    const s = this.#devMap(op.d, m);
    if (s === "OK") rec.maps.push(m);
    return s;
  }

  #unmap(d: number, iova: bigint, size: bigint): string {
    if (!this.#inRange(d)) return "DRIVER";
    const end = iova + size - 1n;
    const rec = this.#drv.get(d);
    const inside = (x: Mapping): boolean => x.start >= iova && x.end <= end;
    const touched = (x: Mapping): boolean => overlaps(iova, end, x.start, x.end);
    if (rec) {
      if (rec.maps.some((x) => touched(x) && !inside(x))) return "DRIVER";
      if (rec.endpoints.size === 0) {
        rec.maps = rec.maps.filter((x) => !inside(x));
        return "OK";
      }
    }
    const dom = this.#dev.get(d);
    if (!dom) return "NOENT";
    if (dom.maps.some((x) => touched(x) && !inside(x))) return "RANGE";
    dom.maps = dom.maps.filter((x) => !inside(x));
    if (rec) rec.maps = rec.maps.filter((x) => !inside(x));
    return "OK";
  }

  #translate(ep: number, iova: bigint, access: "read" | "write"): string {
    const regions = REGIONS[ep];
    if (regions === undefined) return "fault UNKNOWN";
    for (const r of regions) {
      if (iova < r.start || iova > r.end) continue;
      return r.kind === "msi" ? `ok ${hex(iova)}` : "fault MAPPING";
    }
    const d = this.#devEp.get(ep);
    if (d === undefined) return "fault DOMAIN";
    const m = this.#dev.get(d)!.maps.find((x) => iova >= x.start && iova <= x.end);
    if (!m) return "fault MAPPING";
    const needed = access === "write" ? 2 : 1;
    if ((m.flags & needed) === 0) return "fault MAPPING";
    return `ok ${hex(m.phys + (iova - m.start))}`;
  }

  #reset(): string {
    // The device forgets everything; the driver re-attaches first the endpoints whose re-attach
    // failed at an earlier reset (until the caller attached or detached them), then each
    // endpoint in the order it created the domains; each first endpoint of a domain replays
    // its mappings. One that fails again is kept for the next reset.
    const attached = new Map(this.#reattach);
    for (const [d, rec] of this.#drv) {
      for (const ep of rec.endpoints) attached.set(ep, d);
      rec.endpoints.clear();
    }
    this.#reattach.clear();
    this.#drvEp.clear();
    this.#dev.clear();
    this.#devEp.clear();
    let first = "OK";
    for (const [ep, d] of attached) {
      const s = this.#attach(d, ep);
      if (s !== "OK" && first === "OK") first = s;
      if (!this.#drv.get(d)?.endpoints.has(ep)) this.#reattach.set(ep, d);
    }
    return first;
  }
}

function sortRegions(regions: Region[]): Region[] {
  return [...regions].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** A reserved region as text, as both sides print it. */
export function regionText(r: { kind: string; start: bigint; end: bigint }): string {
  return `${r.kind} ${hex(r.start)}-${hex(r.end)}`;
}

function stateText(domains: Map<number, ModelDomain>): string {
  const parts: string[] = [];
  for (const d of [...domains.keys()].sort((a, b) => a - b)) {
    const maps = sortMaps(domains.get(d)!.maps);
    if (maps.length === 0) continue;
    parts.push(`${d}: ${maps.map(mapText).join(" ")}`);
  }
  return parts.join("; ");
}

function sortMaps(maps: Mapping[]): Mapping[] {
  return [...maps].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** A mapping as text, as both sides print it. */
export function mapText(m: Mapping): string {
  return `${hex(m.start)}-${hex(m.end)}>${hex(m.phys)}/${m.flags}`;
}
