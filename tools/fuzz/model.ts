/**
 * Model-based testing of the virtio-iommu driver: random seeded sequences of
 * attach/detach/map/unmap/probe/translate/reset run against the driver on the mock device AND
 * against {@link ReferenceModel}, a small naive model of the spec's semantics (bigint, arrays,
 * linear scans) as seen by a caller of the driver; every outcome is compared, and a divergence
 * is shrunk by delta debugging to a shortest sequence that still diverges.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { VirtioIommu } from "../../driver/iommu/device.ts";
import { IommuError } from "../../driver/iommu/errors.ts";
import type { RingLayout } from "../../driver/virtio/virtqueue.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { FaultRandom } from "../../mock/iommu/faults.ts";
import { MockIommuDevice } from "../../mock/iommu/device.ts";
import type { MockIommuOptions } from "../../mock/iommu/options.ts";
import { MmioDevice } from "../../mock/mmio_device.ts";
import { MmioTransport } from "../../transport/mmio.ts";

/** One step of a sequence. */
export type Op =
  | { k: "attach"; d: number; ep: number }
  | { k: "detach"; d: number; ep: number }
  | { k: "map"; d: number; iova: bigint; phys: bigint; size: bigint; flags: number }
  | { k: "unmap"; d: number; iova: bigint; size: bigint }
  | { k: "probe"; ep: number }
  | { k: "translate"; ep: number; iova: bigint; access: "read" | "write" }
  | { k: "reset" };

const PAGE = 0x1000n;
const BASE = 0x10000n;
const PHYS_BASE = 0x100_0000n;
/** Domain range of the device: 1..4 (0 and 5 are outside). */
const DOMAIN_START = 1;
const DOMAIN_END = 4;
/** Endpoints the device knows; 40 is unknown to it. */
const ENDPOINTS = [8, 16, 24];
const UNKNOWN_ENDPOINT = 40;

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

/** Generates `length` random ops from `seed`. */
export function generate(seed: number, length: number): Op[] {
  const r = new FaultRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[r.below(xs.length)];
  const domain = (): number => r.next() < 0.05 ? pick([0, 5]) : pick([1, 1, 1, 2, 2, 3, 4]);
  const endpoint = (): number => r.next() < 0.05 ? UNKNOWN_ENDPOINT : pick(ENDPOINTS);
  const ops: Op[] = [];
  for (let i = 0; i < length; i++) {
    // Start with attaches, so that most sequences have something to map into.
    const x = i < 3 ? 0 : r.below(100);
    if (x < 20) ops.push({ k: "attach", d: domain(), ep: endpoint() });
    else if (x < 28) ops.push({ k: "detach", d: domain(), ep: endpoint() });
    else if (x < 58) {
      let iova = BASE + BigInt(r.below(16)) * PAGE;
      if (r.next() < 0.03) iova += 0x800n;
      ops.push({
        k: "map",
        d: domain(),
        iova,
        phys: PHYS_BASE + BigInt(r.below(64)) * PAGE,
        size: BigInt(1 + r.below(4)) * PAGE,
        flags: pick([1, 2, 3, 3, 3, 0, 7, 0x10]),
      });
    } else if (x < 73) {
      ops.push({
        k: "unmap",
        d: domain(),
        iova: BASE + BigInt(r.below(16)) * PAGE,
        size: BigInt(1 + r.below(6)) * PAGE,
      });
    } else if (x < 78) ops.push({ k: "probe", ep: endpoint() });
    else if (x < 97) {
      ops.push({
        k: "translate",
        ep: endpoint(),
        iova: BASE + BigInt(r.below(17)) * PAGE + BigInt(r.below(0x1000)),
        access: r.next() < 0.5 ? "read" : "write",
      });
    } else ops.push({ k: "reset" });
  }
  return ops;
}

/** A mapping in the reference model (inclusive end). */
interface Mapping {
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
    // A domain the device has just created gets the remembered mappings again.
    let first = "OK";
    for (const m of [...record.maps].sort((a, b) => (a.start < b.start ? -1 : 1))) {
      const s = this.#devMap(d, m);
      if (s !== "OK" && first === "OK") first = s;
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
    if ((op.flags & ~7) !== 0) return "DRIVER";
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
    // The device forgets everything; the driver re-attaches each endpoint, in the order it
    // created the domains, and each first endpoint of a domain replays its mappings.
    const attached: Array<[number, number]> = [];
    for (const [d, rec] of this.#drv) {
      for (const ep of rec.endpoints) attached.push([d, ep]);
      rec.endpoints.clear();
    }
    this.#drvEp.clear();
    this.#dev.clear();
    this.#devEp.clear();
    let first = "OK";
    for (const [d, ep] of attached) {
      const s = this.#attach(d, ep);
      if (s !== "OK" && first === "OK") first = s;
    }
    return first;
  }
}

function sortRegions(regions: Region[]): Region[] {
  return [...regions].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

function regionText(r: { kind: string; start: bigint; end: bigint }): string {
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

function mapText(m: Mapping): string {
  return `${hex(m.start)}-${hex(m.end)}>${hex(m.phys)}/${m.flags}`;
}

/** The driver on the mock, driven by the same ops. */
export class System {
  #iommu: VirtioIommu;
  #device: MockIommuDevice;

  private constructor(iommu: VirtioIommu, device: MockIommuDevice) {
    this.#iommu = iommu;
    this.#device = device;
  }

  /** Creates the driver on a fresh mock over MMIO, with the `ring` layout (default split). */
  static async create(ring: RingLayout = "split"): Promise<System> {
    const memory = new SimulatedMemory();
    const device = new MockIommuDevice({ ...MOCK_OPTIONS, packed: ring === "packed" });
    const transport = MmioTransport.create(new MmioDevice(device, memory));
    const iommu = await VirtioIommu.create(transport, memory, {
      maxQueueSize: 8,
      timeoutMs: 1000,
      spinMs: 0,
    });
    return new System(iommu, device);
  }

  /** Applies `op` and returns its outcome, in the model's words. */
  async apply(op: Op): Promise<string> {
    const io = this.#iommu;
    try {
      switch (op.k) {
        case "attach":
          await io.attach(op.d, op.ep);
          return "OK";
        case "detach":
          await io.detach(op.d, op.ep);
          return "OK";
        case "map":
          await io.map(op.d, op.iova, op.phys, op.size, op.flags);
          return "OK";
        case "unmap":
          await io.unmap(op.d, op.iova, op.size);
          return "OK";
        case "probe": {
          const r = await io.probe(op.ep);
          return "OK " + JSON.stringify(r.regions.map(regionText));
        }
        case "translate": {
          const t = this.#device.translate(op.ep, op.iova, op.access);
          io.takeFaults(); // keep the event queue drained
          return t.ok ? `ok ${hex(t.address)}` : `fault ${t.fault.reason}`;
        }
        case "reset":
          await io.reset();
          return "OK";
      }
    } catch (e) {
      if (e instanceof IommuError) return e.status;
      return `THREW ${e instanceof Error ? e.name + ": " + e.message : String(e)}`;
    }
  }

  /** Domain → mappings as the driver remembers them. */
  driverState(): string {
    const parts: string[] = [];
    for (const d of this.#iommu.domains().map((x) => x.id).sort((a, b) => a - b)) {
      const maps = this.#iommu.mappings(d);
      if (maps.length === 0) continue;
      parts.push(
        `${d}: ${
          maps.map((m) => mapText({ start: m.iova, end: m.last, phys: m.phys, flags: m.flags }))
            .join(" ")
        }`,
      );
    }
    return parts.join("; ");
  }

  /** Domain → mappings as the device holds them. */
  deviceState(): string {
    const parts: string[] = [];
    for (const d of this.#device.domains().map((x) => x.id)) {
      const maps = this.#device.mappings(d);
      if (maps.length === 0) continue;
      parts.push(
        `${d}: ${
          maps.map((m) => mapText({ start: m.start, end: m.end, phys: m.phys, flags: m.flags }))
            .join(" ")
        }`,
      );
    }
    return parts.join("; ");
  }

  /** Requests still pending (must be 0 between ops). */
  get pending(): number {
    return this.#iommu.pending;
  }

  /** Closes the driver. */
  close(): Promise<void> {
    return this.#iommu.close();
  }
}

/** Where a sequence diverged. */
export interface Divergence {
  /** Index of the op. */
  step: number;
  /** What diverged: the outcome, driver state or device state. */
  what: string;
  /** The model's answer. */
  expected: string;
  /** The system's answer. */
  actual: string;
}

function newModel(): ReferenceModel {
  return new ReferenceModel();
}

/** Runs `ops` on both (the model from `makeModel`); returns the first divergence, or null. */
export async function runSequence(
  ops: readonly Op[],
  makeModel: () => ReferenceModel = newModel,
  ring: RingLayout = "split",
): Promise<Divergence | null> {
  const model = makeModel();
  const system = await System.create(ring);
  try {
    for (let i = 0; i < ops.length; i++) {
      const expected = model.apply(ops[i]);
      const actual = await system.apply(ops[i]);
      if (expected !== actual) return { step: i, what: "outcome", expected, actual };
      if (system.pending !== 0) {
        return { step: i, what: "pending", expected: "0", actual: String(system.pending) };
      }
      const md = model.driverState(), sd = system.driverState();
      if (md !== sd) return { step: i, what: "driver mappings", expected: md, actual: sd };
      const mv = model.deviceState(), sv = system.deviceState();
      if (mv !== sv) return { step: i, what: "device mappings", expected: mv, actual: sv };
    }
    return null;
  } finally {
    await system.close();
  }
}

/**
 * Delta debugging: removes chunks of ops (halves, quarters, … single ops) while the sequence
 * still diverges, until no single op can go. Returns the shortest sequence found.
 */
export async function shrink(
  ops: readonly Op[],
  makeModel: () => ReferenceModel = newModel,
  ring: RingLayout = "split",
): Promise<Op[]> {
  let current = [...ops];
  // Nothing after the first divergence matters.
  const first = await runSequence(current, makeModel, ring);
  if (first === null) return current;
  current = current.slice(0, first.step + 1);
  let chunk = Math.max(1, current.length >> 1);
  for (;;) {
    let removed = false;
    for (let at = 0; at < current.length;) {
      const candidate = [...current.slice(0, at), ...current.slice(at + chunk)];
      if (candidate.length > 0 && (await runSequence(candidate, makeModel, ring)) !== null) {
        current = candidate;
        removed = true;
      } else {
        at += chunk;
      }
    }
    if (chunk === 1 && !removed) return current;
    if (!removed) chunk = Math.max(1, chunk >> 1);
  }
}

/** Figures of a model run. */
export interface ModelRun {
  /** Sequences run. */
  sequences: number;
  /** Ops applied. */
  ops: number;
  /** Divergences found: seed, shrunk reproduction, and what diverged. */
  divergences: Array<{ seed: number; repro: string[]; divergence: Divergence }>;
}

/**
 * Runs `count` sequences from seeds `firstSeed`, `firstSeed + 1`, …; stops after
 * `maxDivergences` divergences (each shrunk).
 */
export async function runModel(
  count: number,
  options: {
    firstSeed?: number;
    length?: number;
    maxDivergences?: number;
    /** The ring layout the driver runs on (default split). */
    ring?: RingLayout;
  } = {},
): Promise<ModelRun> {
  const ring = options.ring ?? "split";
  const onRing = (ops: readonly Op[]) => runSequence(ops, newModel, ring);
  const firstSeed = options.firstSeed ?? 1;
  const run: ModelRun = { sequences: 0, ops: 0, divergences: [] };
  for (let i = 0; i < count; i++) {
    const seed = firstSeed + i;
    const ops = generate(seed, options.length ?? 24);
    run.sequences++;
    run.ops += ops.length;
    const d = await onRing(ops);
    if (d === null) continue;
    const small = await shrink(ops, newModel, ring);
    const divergence = (await onRing(small)) ?? d;
    run.divergences.push({ seed, repro: small.map(formatOp), divergence });
    if (run.divergences.length >= (options.maxDivergences ?? 1)) break;
  }
  return run;
}
