/**
 * The virtio-iommu driver (virtio 1.3 §5.13): initialisation over any {@link Transport},
 * ATTACH, DETACH, MAP, UNMAP and PROBE with caller input checked before anything is sent,
 * domains that remember their mappings, reserved regions, bypass, and fault events.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import type { Transport } from "../../transport/transport.ts";
import {
  featureBit,
  featureNames,
  hasFeature,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from "../../spec/features.ts";
import { beginInit, failDevice, finishInit, resetDevice } from "../virtio/init.ts";
import { type Address, joinAddress, split } from "../../util/u64.ts";
import { type IommuConfig, readIommuConfig } from "./config.ts";
import { RequestChecks } from "./checks.ts";
import { type DomainRecord, DomainTable, SavedMappings } from "./domains.ts";
import { RequestBatch } from "./batch.ts";
import { MappingPlanner, PLAN_RECORD_ONLY, PLAN_SEND, PLAN_SEND_UNTRACKED } from "./planner.ts";
import { DeviceResetError, driverError, IommuError } from "./errors.ts";
import { EventQueue } from "./event_queue.ts";
import type { FaultEvent } from "./events.ts";
import {
  mergeReservedRegions,
  parseProbeProperties,
  type ProbeResult,
  type ReservedRegion,
  ReservedRegionConflictError,
} from "./probe.ts";
import { type Completion, RequestQueue } from "./request_queue.ts";
import { encodeAttach, encodeDetach, encodeMap, encodeProbe, encodeUnmap } from "./requests.ts";
import type { IsolationGroup } from "../topology/resolve.ts";
import {
  ATTACH_SIZE,
  CONFIG_BYPASS,
  DETACH_SIZE,
  EVENT_QUEUE,
  IOMMU_FEATURE_NAMES,
  MAP_SIZE,
  PROBE_SIZE,
  REQUEST_QUEUE,
  TAIL_SIZE,
  UNMAP_SIZE,
  VIRTIO_ID_IOMMU,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
} from "../../spec/iommu.ts";

/** Endpoints may read through the mapping. */
export const MAP_READ: number = VIRTIO_IOMMU_MAP_F_READ;
/** Endpoints may write through the mapping. */
export const MAP_WRITE: number = VIRTIO_IOMMU_MAP_F_WRITE;
/** The mapping targets device memory (needs F_MMIO). */
export const MAP_MMIO: number = VIRTIO_IOMMU_MAP_F_MMIO;

/** Feature bits this driver understands (virtio 1.3 §5.13.3; never the legacy F_BYPASS). */
export const SUPPORTED_FEATURES: bigint = featureBit(VIRTIO_F_VERSION_1) |
  featureBit(VIRTIO_F_INDIRECT_DESC) |
  featureBit(VIRTIO_F_EVENT_IDX) |
  featureBit(VIRTIO_IOMMU_F_INPUT_RANGE) |
  featureBit(VIRTIO_IOMMU_F_DOMAIN_RANGE) |
  featureBit(VIRTIO_IOMMU_F_MAP_UNMAP) |
  featureBit(VIRTIO_IOMMU_F_PROBE) |
  featureBit(VIRTIO_IOMMU_F_MMIO) |
  featureBit(VIRTIO_IOMMU_F_BYPASS_CONFIG);

/** Options for {@link VirtioIommu.create}. */
export interface VirtioIommuOptions {
  /** Restrict the features the driver accepts (ANDed with what it supports). */
  features?: bigint;
  /** Time a request may take before it rejects with RequestTimeoutError, in ms (default 2000). */
  timeoutMs?: number;
  /**
   * How long to busy-poll for answers after each notification before sleeping on timers, in
   * ms (default 2; 0 never spins).
   */
  spinMs?: number;
  /** Largest queue size to use; the device's maximum is used when smaller (default 256). */
  maxQueueSize?: number;
  /** Allow IDENTITY reserved regions next to endpoints without one (seed 004 N + I). */
  allowIdentity?: boolean;
  /** RESV_MEM subtype read as IDENTITY (the draft subtype of seed 004; default none). */
  identitySubtype?: number;
}

/** Options for {@link VirtioIommu.attach}. */
export interface AttachOptions {
  /** Create or join a bypass (identity) domain: ATTACH_F_BYPASS (needs BYPASS_CONFIG). */
  bypass?: boolean;
  /**
   * What to do when the endpoint shares an isolation group (see
   * {@link VirtioIommu.setIsolationGroups}) with other endpoints: `"attach"` (default) attaches
   * the whole group, `"refuse"` throws an IommuError naming the group.
   */
  group?: "attach" | "refuse";
}

/** Options for {@link VirtioIommu.map}. */
export interface MapOptions {
  /**
   * Split the range into the largest page sizes page_size_mask allows, one MAP each, instead of
   * one MAP for the whole range.
   */
  split?: boolean;
}

/** One mapping of a domain, as the driver remembers it. */
export interface MappingInfo {
  /** First IOVA. */
  iova: bigint;
  /** Last IOVA (inclusive). */
  last: bigint;
  /** Physical address of `iova`. */
  phys: bigint;
  /** MAP flags. */
  flags: number;
}

/** A domain as the driver remembers it. */
export interface DomainInfo {
  /** Domain ID. */
  id: number;
  /** A bypass domain. */
  bypass: boolean;
  /** Attached endpoints, sorted. */
  endpoints: number[];
  /** Number of mappings. */
  mappings: number;
}

/** What {@link VirtioIommu.create} negotiated and read. */
export interface IommuInfo {
  /** Transport kind. */
  transport: string;
  /** Negotiated feature bits. */
  features: bigint;
  /** Names of the negotiated features. */
  featureNames: string[];
  /** Device configuration. */
  config: IommuConfig;
  /** Request queue size. */
  requestQueueSize: number;
  /** Event queue size. */
  eventQueueSize: number;
}

const DEFAULT_TIMEOUT_MS = 2000;
/** Requests in flight that direct 2-descriptor chains must allow before indirect ones are used. */
const MIN_DIRECT_SLOTS = 64;
/** Fault reports kept for takeFaults() before the oldest are dropped. */
export const MAX_KEPT_FAULTS = 4096;

/** A failed fast-path request has nothing to take back. */
const UNDO_NONE = 0;
/** A failed MAP takes its record back. */
const UNDO_MAP = 1;
/** A failed UNMAP puts back the records it removed. */
const UNDO_UNMAP = 2;
const DEFAULT_MAX_QUEUE = 256;
/** The promise of every fast-path request that settled before its call returned. */
const RESOLVED: Promise<void> = Promise.resolve();

/** Largest power of two ≤ n. */
function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}

/**
 * A virtio-iommu device driven from userspace.
 *
 * @example Attach, map, translate on the mock device
 * ```ts
 * import { MAP_READ, MAP_WRITE, MmioTransport, VirtioIommu } from "@viommu/viommu";
 * import { MmioDevice, MockIommuDevice, SimulatedMemory } from "@viommu/viommu/testing";
 *
 * const memory = new SimulatedMemory();
 * const device = new MockIommuDevice();
 * const iommu = await VirtioIommu.create(MmioTransport.create(new MmioDevice(device, memory)), memory);
 * await iommu.attach(1, 0x08);
 * await iommu.map(1, 0x10000, 0x20000, 0x1000, MAP_READ | MAP_WRITE);
 * const t = device.translate(0x08, 0x10010n, "read");
 * console.assert(t.ok && t.address === 0x20010n); // phys 0x20000 + 0x10
 * ```
 */
export class VirtioIommu {
  #transport: Transport;
  #dma: DmaAllocator;
  #options: VirtioIommuOptions;
  #features = 0n;
  #config!: IommuConfig;
  /** The MAP/UNMAP checks and records, shared with batches (holds the closed flag). */
  #planner!: MappingPlanner;
  #requests!: RequestQueue;
  #events!: EventQueue;
  #probeBuffer: DmaRegion | null = null;
  #probeLock: Promise<unknown> = Promise.resolve();
  #domains = new DomainTable();
  #faults: FaultEvent[] = [];
  #droppedFaults = 0;
  #faultListeners = new Set<(event: FaultEvent) => void>();
  #groups = new Map<number, IsolationGroup>();
  // Per-slot state of fast-path requests (see #mapFast).
  #resolveOf: ((() => void) | null)[] = [];
  #rejectOf: (((error: Error) => void) | null)[] = [];
  /** The fast-path slot being sent right now (-1: none), and its outcome if it settled meanwhile. */
  #syncSlot = -1;
  #syncDone = false;
  #syncError: Error | null = null;
  #undoOf = new Uint8Array(0);
  #undoFields = new Uint32Array(0);
  #savedOf: SavedMappings[] = [];
  /** Attachments to restore after a reset, kept across a reset that failed before restoring. */
  #reattach = new Map<number, { domain: number; endpoint: number; bypass: boolean }>();

  private constructor(transport: Transport, dma: DmaAllocator, options: VirtioIommuOptions) {
    this.#transport = transport;
    this.#dma = dma;
    this.#options = options;
  }

  /**
   * Initialises the device (virtio 1.3 §3.1.1) and returns the driver. Refuses a device that
   * is not an IOMMU, lacks MAP_UNMAP or VERSION_1, or reports page_size_mask 0; the device is
   * left with FAILED set in that case.
   */
  static async create(
    transport: Transport,
    dma: DmaAllocator,
    options: VirtioIommuOptions = {},
  ): Promise<VirtioIommu> {
    if (transport.deviceId !== VIRTIO_ID_IOMMU) {
      throw new IommuError(
        "DRIVER",
        -1,
        `Device ID ${transport.deviceId} is not a virtio-iommu (${VIRTIO_ID_IOMMU})`,
      );
    }
    const iommu = new VirtioIommu(transport, dma, options);
    await iommu.#init();
    return iommu;
  }

  async #init(): Promise<void> {
    const t = this.#transport;
    const supported = SUPPORTED_FEATURES & (this.#options.features ?? SUPPORTED_FEATURES);
    // Steps 1-6: reset, ACKNOWLEDGE, DRIVER, features (MAP_UNMAP required, §5.13.3.1), FEATURES_OK.
    this.#features = await beginInit(t, {
      supported,
      required: featureBit(VIRTIO_IOMMU_F_MAP_UNMAP),
      timeoutMs: this.#options.timeoutMs,
    });
    try {
      // Step 7: device-specific setup: config, then the two queues.
      this.#config = readIommuConfig(t, this.#features);
      this.#planner = new MappingPlanner(this.#newChecks(), this.#domains);
      const eventIdx = hasFeature(this.#features, VIRTIO_F_EVENT_IDX);
      // Indirect descriptors let a small ring hold twice the requests, but cost a table per
      // request on both sides (about 0.5 us per MAP+UNMAP pair under TCG): used only when
      // direct chains would leave fewer than MIN_DIRECT_SLOTS requests in flight.
      const requestQueueSize = this.#queueSize(REQUEST_QUEUE);
      const indirect = hasFeature(this.#features, VIRTIO_F_INDIRECT_DESC) &&
        requestQueueSize / 2 < MIN_DIRECT_SLOTS;
      this.#requests = new RequestQueue(t, this.#dma, requestQueueSize, {
        timeoutMs: this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        spinMs: this.#options.spinMs,
        eventIdx,
        indirect,
      });
      const slots = this.#requests.slots;
      this.#resolveOf = new Array(slots).fill(null);
      this.#rejectOf = new Array(slots).fill(null);
      this.#undoOf = new Uint8Array(slots);
      this.#undoFields = new Uint32Array(slots * 7);
      this.#savedOf = Array.from({ length: slots }, () => new SavedMappings());
      this.#events = new EventQueue(
        t,
        this.#dma,
        this.#queueSize(EVENT_QUEUE),
        eventIdx,
        (event) => this.#deliver(event),
      );
      if (this.#config.probeSize > 0) {
        this.#probeBuffer = this.#dma.alloc(PROBE_SIZE + this.#config.probeSize + TAIL_SIZE, 4096);
      }
      this.#goLive();
    } catch (error) {
      failDevice(t);
      throw error;
    }
  }

  /** The checks for the current config; MAP flags: READ, WRITE, and MMIO with F_MMIO. */
  #newChecks(): RequestChecks {
    return new RequestChecks(
      this.#config,
      VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE |
        (hasFeature(this.#features, VIRTIO_IOMMU_F_MMIO) ? VIRTIO_IOMMU_MAP_F_MMIO : 0),
    );
  }

  /** Hands both rings to the device and sets DRIVER_OK (end of step 7, step 8 of §3.1.1). */
  #goLive(): void {
    this.#requests.enable();
    this.#events.enable();
    // Step 8: DRIVER_OK; only then may the event buffers be announced (§3.1.1, §2.7.13.3.1).
    finishInit(this.#transport);
    this.#events.kick();
  }

  #queueSize(index: number): number {
    const max = this.#transport.maxQueueSize(index);
    if (max === 0) {
      failDevice(this.#transport);
      throw new IommuError("DRIVER", -1, `The device has no queue ${index}`);
    }
    return floorPow2(Math.min(max, this.#options.maxQueueSize ?? DEFAULT_MAX_QUEUE));
  }

  /** What was negotiated and read at initialisation. */
  get info(): IommuInfo {
    return {
      transport: this.#transport.kind,
      features: this.#features,
      featureNames: featureNames(this.#features, IOMMU_FEATURE_NAMES),
      config: { ...this.#config },
      requestQueueSize: this.#requests.vq.size,
      eventQueueSize: this.#events.vq.size,
    };
  }

  /** The negotiated feature bits. */
  get features(): bigint {
    return this.#features;
  }

  /** The device configuration read at initialisation. */
  get config(): IommuConfig {
    return this.#config;
  }

  /** Requests sent and not yet settled (including those waiting for a free slot). */
  get pending(): number {
    return this.#requests.pending;
  }

  #open(): void {
    this.#planner.open();
  }

  // ---------------------------------------------------------------------------------------
  // Sending.

  /**
   * Encodes with `encode(view, offset)` in a free slot (waiting FIFO when none is free) and
   * sends. The encoder runs synchronously when a slot is free, so scratch state is safe.
   * `undo` runs before the promise rejects (to take back the driver's records).
   */
  #request(
    readLen: number,
    encode: (view: DataView, offset: number) => void,
    undo?: () => void,
  ): Promise<void> {
    this.#open();
    const q = this.#requests;
    if (q.broken) {
      undo?.();
      return Promise.reject(q.broken); // map()/unmap() reject, never throw
    }
    return new Promise<void>((resolve, reject) => {
      const done: Completion = (error) => {
        if (error === null) return resolve();
        undo?.();
        reject(error);
      };
      const slot = q.tryTakeSlot();
      if (slot >= 0) {
        encode(q.view(slot), q.offset(slot));
        q.sendSlot(slot, readLen, done);
        return;
      }
      // Ring full: wait our turn; encode when a slot is ours.
      q.acquire((s, error) => {
        if (s < 0) {
          // Timed out waiting for a slot, or the queue failed meanwhile.
          done(error ?? q.broken ?? new DeviceResetError("The request queue failed"), s);
          return;
        }
        encode(q.view(s), q.offset(s));
        q.sendSlot(s, readLen, done);
      });
    });
  }

  #sendAttach(domain: number, endpoint: number, flags: number): Promise<void> {
    return this.#request(ATTACH_SIZE, (v, o) => encodeAttach(v, o, domain, endpoint, flags));
  }

  #sendDetach(domain: number, endpoint: number): Promise<void> {
    return this.#request(DETACH_SIZE, (v, o) => encodeDetach(v, o, domain, endpoint));
  }

  #sendMap(
    domain: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    pLo: number,
    pHi: number,
    flags: number,
    undo?: () => void,
  ): Promise<void> {
    return this.#request(
      MAP_SIZE,
      (v, o) => encodeMap(v, o, domain, sLo, sHi, eLo, eHi, pLo, pHi, flags),
      undo,
    );
  }

  #sendUnmap(
    domain: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    undo?: () => void,
  ): Promise<void> {
    return this.#request(
      UNMAP_SIZE,
      (v, o) => encodeUnmap(v, o, domain, sLo, sHi, eLo, eHi),
      undo,
    );
  }

  // ---------------------------------------------------------------------------------------
  // Public requests.

  /**
   * Attaches `endpoint` to `domain` (virtio 1.3 §5.13.6.3), creating the domain on the device.
   * An endpoint attached elsewhere moves (the device detaches it implicitly); one already in
   * `domain` stays, and nothing is sent. When the domain had no endpoint, its remembered
   * mappings are replayed, as Linux does.
   */
  async attach(domain: number, endpoint: number, options: AttachOptions = {}): Promise<void> {
    this.#open();
    const group = this.#groups.get(endpoint);
    if (group === undefined || group.endpointIds.length < 2) {
      return this.#attachOne(domain, endpoint, options);
    }
    // Endpoints that cannot be isolated from each other MUST share a domain (§5.13.6.3.1,
    // seeds 002 and 001): the whole group moves, or nothing does.
    if ((options.group ?? "attach") === "refuse") {
      throw driverError(
        `Cannot attach endpoint ${endpoint} alone: it shares isolation group ${group.id} ` +
          `(${group.devices.join(", ")}; endpoints ${group.endpointIds.join(", ")})`,
      );
    }
    for (const member of group.endpointIds) await this.#attachOne(domain, member, options);
  }

  /**
   * Tells the driver which endpoints cannot be isolated from each other (from the topology's
   * `isolationGroups()`); attach then keeps each group in one domain.
   */
  setIsolationGroups(groups: Iterable<IsolationGroup>): void {
    this.#groups.clear();
    for (const group of groups) {
      for (const endpoint of group.endpointIds) this.#groups.set(endpoint, group);
    }
  }

  async #attachOne(domain: number, endpoint: number, options: AttachOptions): Promise<void> {
    this.#planner.checks.domain(domain);
    this.#planner.checks.id(endpoint, "endpoint");
    const bypass = options.bypass ?? false;
    if (bypass && !hasFeature(this.#features, VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
      throw driverError(
        "Cannot attach a bypass domain: VIRTIO_IOMMU_F_BYPASS_CONFIG not negotiated",
      );
    }
    const record = this.#domains.get(domain);
    if (record && record.bypass !== bypass) {
      // §5.13.6.3.1: SHOULD set the flag when joining a bypass domain and not otherwise.
      throw driverError(
        `Cannot attach endpoint ${endpoint} to domain ${domain}: it is ${
          record.bypass ? "" : "not "
        }a bypass domain`,
      );
    }
    // Already there: nothing to do. (Re-sending would make QEMU 7.2 detach the endpoint first,
    // destroying a single-endpoint domain and its mappings.)
    if (record?.endpoints.has(endpoint)) return;
    if (record && !bypass) this.#checkReservedCompatible(record, endpoint);
    await this.#sendAttach(domain, endpoint, bypass ? VIRTIO_IOMMU_ATTACH_F_BYPASS : 0);
    const fresh = this.#domains.attached(domain, bypass, endpoint);
    if (fresh) await this.#replay(this.#domains.get(domain)!);
  }

  #checkReservedCompatible(record: DomainRecord, endpoint: number): void {
    // The domain's mappings must stay clear of the newcomer's reserved regions (MSI doorbell,
    // firmware memory): the driver SHOULD NOT map them (§5.13.6.7.1.1), and the device SHOULD
    // refuse an endpoint whose properties clash with the domain (§5.13.6.3.2).
    for (const r of this.#domains.reservedOf(endpoint)) {
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
      this.#domains.reservedOf(e)
    );
    if (lists.length === 0) return;
    lists.push(this.#domains.reservedOf(endpoint));
    try {
      mergeReservedRegions(lists, this.#options.allowIdentity ?? false);
    } catch (error) {
      if (error instanceof ReservedRegionConflictError) {
        throw driverError(
          `Cannot attach endpoint ${endpoint} to domain ${record.id}: ${error.message}`,
        );
      }
      throw error;
    }
  }

  /** Re-sends every remembered mapping of a domain the device has just created. */
  async #replay(record: DomainRecord): Promise<void> {
    const m = record.mappings;
    const sends: Promise<void>[] = [];
    m.forEach((s) => {
      sends.push(
        this.#sendMap(
          record.id,
          m.startLo(s),
          m.startHi(s),
          m.endLo(s),
          m.endHi(s),
          m.physLo(s),
          m.physHi(s),
          m.flags(s),
        ),
      );
    });
    await Promise.all(sends);
  }

  /** Detaches `endpoint` from `domain` (virtio 1.3 §5.13.6.4). The domain keeps its mappings. */
  async detach(domain: number, endpoint: number): Promise<void> {
    this.#planner.checks.domain(domain);
    this.#planner.checks.id(endpoint, "endpoint");
    await this.#sendDetach(domain, endpoint);
    this.#domains.detached(domain, endpoint);
  }

  /**
   * Maps `[iova, iova + size)` to `phys` in `domain` with `flags` (MAP_READ | MAP_WRITE |
   * MAP_MMIO; virtio 1.3 §5.13.6.5). Refused before sending when unaligned to the granule,
   * outside input_range, overlapping a mapping or a reserved region, or on a bypass domain. A
   * domain that currently has no endpoint only records the mapping (it is sent on attach).
   */
  map(
    domain: number,
    iova: Address,
    phys: Address,
    size: Address,
    flags: number,
    options?: MapOptions,
  ): Promise<void> {
    // No default `{}`: that would allocate an object per call on the hot path.
    const split = options?.split === true;
    if (!split) {
      const slot = this.#fastSlot();
      if (slot >= 0) return this.#mapFast(slot, domain, iova, phys, size, flags);
    }
    return this.#mapSlow(domain, iova, phys, size, flags, split);
  }

  /** {@link VirtioIommu.map} when splitting, or when every slot is busy (this path may allocate). */
  #mapSlow(
    domain: number,
    iova: Address,
    phys: Address,
    size: Address,
    flags: number,
    split: boolean,
  ): Promise<void> {
    let plan: number;
    try {
      if (split) {
        this.#open();
        this.#planner.checks.domain(domain);
        this.#planner.checks.flags(flags);
        this.#planner.checks.range("map", iova, size, phys);
        return this.#mapSplit(domain, flags);
      }
      plan = this.#planner.prepareMap(domain, iova, phys, size, flags);
    } catch (error) {
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) return Promise.resolve();
    const a = this.#planner.checks.iova,
      b = this.#planner.checks.last,
      c = this.#planner.checks.phys;
    const sLo = a.lo, sHi = a.hi, eLo = b.lo, eHi = b.hi, pLo = c.lo, pHi = c.hi;
    if (plan === PLAN_SEND_UNTRACKED) {
      return this.#sendMap(domain, sLo, sHi, eLo, eHi, pLo, pHi, flags);
    }
    return this.#sendMap(
      domain,
      sLo,
      sHi,
      eLo,
      eHi,
      pLo,
      pHi,
      flags,
      () => this.#domains.forgetMap(domain, sLo, sHi, eLo, eHi, pLo, pHi),
    );
  }

  // One-at-a-time fast path: with a slot free, a request is checked, recorded and encoded
  // straight into its slot, and settles through per-slot state: one promise per request and
  // no closure of ours, which matters most where JIT code is slow (a TCG guest).

  /** A free request slot for the fast path, or -1 (queue broken, full, or callers waiting). */
  #fastSlot(): number {
    const q = this.#requests;
    if (this.#planner.closed || q === undefined || q.broken) return -1;
    return q.tryTakeSlot();
  }

  #mapFast(
    slot: number,
    domain: number,
    iova: Address,
    phys: Address,
    size: Address,
    flags: number,
  ): Promise<void> {
    const q = this.#requests;
    let plan: number;
    try {
      plan = this.#planner.prepareMap(domain, iova, phys, size, flags);
    } catch (error) {
      q.release(slot);
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) {
      q.release(slot);
      return Promise.resolve();
    }
    const v = q.view(slot),
      o = q.offset(slot),
      a = this.#planner.checks.iova,
      b = this.#planner.checks.last,
      c = this.#planner.checks.phys;
    encodeMap(v, o, domain, a.lo, a.hi, b.lo, b.hi, c.lo, c.hi, flags);
    this.#undoOf[slot] = plan === PLAN_SEND ? UNDO_MAP : UNDO_NONE;
    const f = this.#undoFields, at = slot * 7;
    f[at] = domain;
    f[at + 1] = a.lo;
    f[at + 2] = a.hi;
    f[at + 3] = b.lo;
    f[at + 4] = b.hi;
    f[at + 5] = c.lo;
    f[at + 6] = c.hi;
    return this.#sendFast(slot, MAP_SIZE);
  }

  #unmapFast(slot: number, domain: number, iova: Address, size: Address): Promise<void> {
    const q = this.#requests;
    const saved = this.#savedOf[slot];
    saved.length = 0;
    let plan: number;
    try {
      plan = this.#planner.prepareUnmap(domain, iova, size, saved);
    } catch (error) {
      q.release(slot);
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) {
      q.release(slot);
      return Promise.resolve();
    }
    const v = q.view(slot),
      o = q.offset(slot),
      a = this.#planner.checks.iova,
      b = this.#planner.checks.last;
    encodeUnmap(v, o, domain, a.lo, a.hi, b.lo, b.hi);
    this.#undoOf[slot] = plan === PLAN_SEND ? UNDO_UNMAP : UNDO_NONE;
    this.#undoFields[slot * 7] = domain;
    return this.#sendFast(slot, UNMAP_SIZE);
  }

  /**
   * Sends a fast-path request. A device that answers during the notification (QEMU under TCG,
   * the mock) has settled it before sendNow() returns: then the outcome is known and no
   * deferred promise is needed, which saves most of the cost of a promise per request.
   */
  #sendFast(slot: number, readLen: number): Promise<void> {
    this.#syncSlot = slot;
    this.#syncDone = false;
    try {
      this.#requests.sendNow(slot, readLen, this.#completeFast);
    } finally {
      this.#syncSlot = -1;
    }
    if (this.#syncDone) {
      const error = this.#syncError;
      this.#syncError = null;
      return error === null ? RESOLVED : Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      this.#resolveOf[slot] = resolve;
      this.#rejectOf[slot] = reject;
    });
  }

  /** Settles a fast-path request; on failure first takes back what it recorded. */
  #completeFast: Completion = (error, slot) => {
    if (slot === this.#syncSlot) {
      // Answered inside #sendFast: it returns the outcome itself.
      this.#syncDone = true;
      this.#syncError = error;
      if (error !== null) this.#undoFast(slot);
      return;
    }
    const resolve = this.#resolveOf[slot];
    const reject = this.#rejectOf[slot];
    this.#resolveOf[slot] = null;
    this.#rejectOf[slot] = null;
    if (error === null) {
      resolve?.();
      return;
    }
    this.#undoFast(slot);
    reject?.(error);
  };

  /** Takes back what a failed fast-path request recorded. */
  #undoFast(slot: number): void {
    const undo = this.#undoOf[slot];
    if (undo === UNDO_MAP) {
      // From the driver's own copy: the slot is shared memory the device could have changed.
      const f = this.#undoFields, at = slot * 7;
      this.#domains.forgetMap(
        f[at],
        f[at + 1],
        f[at + 2],
        f[at + 3],
        f[at + 4],
        f[at + 5],
        f[at + 6],
      );
    } else if (undo === UNDO_UNMAP) {
      const saved = this.#savedOf[slot];
      this.#domains.restoreMappings(this.#undoFields[slot * 7], saved.data, 0, saved.length);
    }
  }

  /** MAP split into the largest page sizes page_size_mask allows (#a, #b, #c hold the range). */
  async #mapSplit(domain: number, flags: number): Promise<void> {
    let iova = joinAddress(this.#planner.checks.iova.lo, this.#planner.checks.iova.hi);
    let phys = joinAddress(this.#planner.checks.phys.lo, this.#planner.checks.phys.hi);
    const last = joinAddress(this.#planner.checks.last.lo, this.#planner.checks.last.hi);
    const mask = this.#config.pageSizeMask;
    const chunks: Array<[bigint, bigint, bigint]> = [];
    while (iova <= last) {
      const remaining = last - iova + 1n;
      let size = 1n << BigInt(this.#planner.checks.granule);
      for (let bit = 63n; bit >= 0n; bit--) {
        const page = 1n << bit;
        if ((mask & page) === 0n || page > remaining) continue;
        if (iova % page !== 0n || phys % page !== 0n) continue;
        size = page;
        break;
      }
      chunks.push([iova, phys, size]);
      iova += size;
      phys += size;
    }
    const done: Array<[bigint, bigint]> = [];
    try {
      for (const [i, p, s] of chunks) {
        await this.map(domain, i, p, s, flags);
        done.push([i, s]);
      }
    } catch (error) {
      // All or nothing: take back the chunks that went through.
      for (const [i, s] of done) await this.unmap(domain, i, s).catch(() => {});
      throw error;
    }
  }

  /**
   * Unmaps `[iova, iova + size)` in `domain` (virtio 1.3 §5.13.6.6): removes every mapping
   * inside it. Refused before sending when it would split a mapping (the spec's driver MUST).
   */
  unmap(domain: number, iova: Address, size: Address): Promise<void> {
    const slot = this.#fastSlot();
    if (slot >= 0) return this.#unmapFast(slot, domain, iova, size);
    return this.#unmapSlow(domain, iova, size);
  }

  /** {@link VirtioIommu.unmap} when every slot is busy: wait in line (this path may allocate). */
  #unmapSlow(domain: number, iova: Address, size: Address): Promise<void> {
    const saved = new SavedMappings();
    let plan: number;
    try {
      plan = this.#planner.prepareUnmap(domain, iova, size, saved);
    } catch (error) {
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) return Promise.resolve();
    const a = this.#planner.checks.iova, b = this.#planner.checks.last;
    if (plan === PLAN_SEND_UNTRACKED) return this.#sendUnmap(domain, a.lo, a.hi, b.lo, b.hi);
    return this.#sendUnmap(
      domain,
      a.lo,
      a.hi,
      b.lo,
      b.hi,
      () => this.#domains.restoreMappings(domain, saved.data, 0, saved.length),
    );
  }

  /**
   * A reusable batch of MAP/UNMAP requests: queue many, send them with one notification per
   * ring-full, await once. Allocation-free per request once grown; see {@link RequestBatch}.
   */
  batch(): RequestBatch {
    this.#open();
    return new RequestBatch(this.#requests, this.#planner);
  }

  /**
   * Asks the device for `endpoint`'s properties (virtio 1.3 §5.13.6.7) and remembers its
   * reserved regions, which MAP then avoids. Needs F_PROBE.
   */
  probe(endpoint: number): Promise<ProbeResult> {
    const run = this.#probeLock.then(() => this.#probe(endpoint));
    this.#probeLock = run.catch(() => {});
    return run;
  }

  async #probe(endpoint: number): Promise<ProbeResult> {
    this.#open();
    this.#planner.checks.id(endpoint, "endpoint");
    const buffer = this.#probeBuffer;
    if (buffer === null || !hasFeature(this.#features, VIRTIO_IOMMU_F_PROBE)) {
      throw driverError("Cannot probe: VIRTIO_IOMMU_F_PROBE not negotiated");
    }
    const probeSize = this.#config.probeSize;
    buffer.bytes.fill(0);
    encodeProbe(buffer.view, 0, endpoint);
    const q = this.#requests;
    await new Promise<void>((resolve, reject) => {
      q.acquire((slot, error) => {
        if (slot < 0) {
          reject(error ?? q.broken ?? new DeviceResetError("The request queue failed"));
          return;
        }
        // Properties area of exactly probe_size bytes, then the tail (§5.13.6.7.1 MUST).
        q.send(
          slot,
          PROBE_SIZE,
          (error) => (error ? reject(error) : resolve()),
          buffer,
          probeSize + TAIL_SIZE,
        );
      });
    });
    const result = parseProbeProperties(buffer.view, PROBE_SIZE, probeSize, endpoint, {
      identitySubtype: this.#options.identitySubtype,
    });
    this.#domains.setReserved(endpoint, result.regions);
    return result;
  }

  /** The reserved regions remembered for `endpoint` from its last PROBE. */
  reservedRegions(endpoint: number): ReservedRegion[] {
    return this.#domains.reservedOf(endpoint).map((r) => ({ ...r }));
  }

  /**
   * Sets the global `bypass` config field (virtio 1.3 §5.13.4): whether unattached endpoints
   * bypass translation. Only with BYPASS_CONFIG negotiated; the driver writes only 0 or 1.
   */
  setBypass(enabled: boolean): void {
    this.#open();
    if (!hasFeature(this.#features, VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
      throw driverError("Cannot set bypass: VIRTIO_IOMMU_F_BYPASS_CONFIG not negotiated");
    }
    this.#transport.writeConfig8(CONFIG_BYPASS, enabled ? 1 : 0);
    this.#config.bypass = enabled ? 1 : 0;
  }

  /** Reads the `bypass` field now (null without BYPASS_CONFIG). */
  readBypass(): number | null {
    if (!hasFeature(this.#features, VIRTIO_IOMMU_F_BYPASS_CONFIG)) return null;
    return this.#transport.readConfig8(CONFIG_BYPASS) & 1;
  }

  /** Picks a domain ID inside domain_range that the driver does not use yet. */
  allocateDomain(options: AttachOptions = {}): number {
    const id = this.#domains.allocate(
      this.#config.domainStart,
      this.#config.domainEnd,
      options.bypass ?? false,
    );
    if (id < 0) throw driverError("No free domain ID left in the device's domain range");
    return id;
  }

  /** Forgets an empty domain and its remembered mappings. Returns false if it has endpoints. */
  freeDomain(domain: number): boolean {
    return this.#domains.forget(domain);
  }

  /** The domains the driver knows. */
  domains(): DomainInfo[] {
    return this.#domains.all().map((d) => ({
      id: d.id,
      bypass: d.bypass,
      endpoints: [...d.endpoints].sort((a, b) => a - b),
      mappings: d.mappings.size,
    }));
  }

  /** The mappings the driver remembers for `domain`, in address order. */
  mappings(domain: number): MappingInfo[] {
    const record = this.#domains.get(domain);
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

  /** The physical address `iova` maps to in `domain`, from the driver's records, or null. */
  iovaToPhys(domain: number, iova: Address): bigint | null {
    const record = this.#domains.get(domain);
    if (!record) return null;
    const a = split(iova, "iova", this.#planner.checks.iova);
    const s = record.mappings.find(a.lo, a.hi);
    if (s < 0) return null;
    const m = record.mappings;
    return joinAddress(m.physLo(s), m.physHi(s)) +
      (joinAddress(a.lo, a.hi) - joinAddress(m.startLo(s), m.startHi(s)));
  }

  // ---------------------------------------------------------------------------------------
  // Events.

  #deliver(event: FaultEvent): void {
    // A device can post faults without end: keep the newest MAX_KEPT_FAULTS for takeFaults()
    // and count the rest, rather than grow without bound. Listeners see every one.
    if (this.#faults.length >= MAX_KEPT_FAULTS) {
      this.#faults.shift();
      this.#droppedFaults++;
    }
    this.#faults.push(event);
    for (const listener of this.#faultListeners) listener(event);
  }

  /** Fault reports dropped from the takeFaults() backlog because it was full (oldest first). */
  get droppedFaults(): number {
    return this.#droppedFaults;
  }

  /** Reads the event queue now; returns how many fault reports arrived. */
  pollEvents(): number {
    this.#open();
    return this.#events.collect();
  }

  /** Fault reports the device sent that are dropped because they were malformed. */
  get ignoredEvents(): number {
    return this.#events.ignored;
  }

  /** Returns the faults received since the last call (polling the event queue first). */
  takeFaults(): FaultEvent[] {
    this.pollEvents();
    return this.#faults.splice(0);
  }

  /** Calls `listener` for every fault report; returns a function that unsubscribes. */
  onFault(listener: (event: FaultEvent) => void): () => void {
    this.#faultListeners.add(listener);
    return () => this.#faultListeners.delete(listener);
  }

  /**
   * Waits for the next fault report, polling the event queue; resolves null after
   * `timeoutMs` without one.
   */
  async nextFault(timeoutMs = 1000): Promise<FaultEvent | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      this.pollEvents();
      const event = this.#faults.shift();
      if (event) return event;
      if (performance.now() >= deadline) return null;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /**
   * The fault reports as an async iterator: `for await (const f of iommu.faults()) …`. It
   * ends when `signal` aborts, after `idleMs` without a report (default: never), or when the
   * driver is closed.
   */
  async *faults(options: { signal?: AbortSignal; idleMs?: number } = {}): AsyncGenerator<
    FaultEvent,
    void,
    void
  > {
    const { signal, idleMs = Infinity } = options;
    let idleSince = performance.now();
    while (!this.#planner.closed && !signal?.aborted) {
      this.pollEvents();
      const event = this.#faults.shift();
      if (event) {
        yield event;
        idleSince = performance.now();
        continue;
      }
      if (performance.now() - idleSince >= idleMs) return;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle.

  /**
   * Resets the device and initialises it again. Every pending request rejects with
   * DeviceResetError. With `reattach` (default true) every endpoint is attached again and the
   * mappings of each domain are replayed.
   */
  async reset(options: { reattach?: boolean } = {}): Promise<void> {
    this.#open();
    const error = new DeviceResetError("The device was reset with the request pending");
    this.#requests.restart(error);
    this.#events.restart();
    // Endpoints a failed earlier reset left unattached are re-attached by this one too.
    for (const a of this.#domains.detachAll()) this.#reattach.set(a.endpoint, a);
    const t = this.#transport;
    this.#features = await beginInit(t, {
      supported: this.#features,
      required: featureBit(VIRTIO_IOMMU_F_MAP_UNMAP),
      timeoutMs: this.#options.timeoutMs,
    });
    try {
      this.#config = readIommuConfig(t, this.#features);
      this.#planner.checks = this.#newChecks();
      this.#goLive();
    } catch (e) {
      failDevice(t);
      throw e;
    }
    const attached = [...this.#reattach.values()];
    this.#reattach.clear();
    if (options.reattach ?? true) {
      // Every endpoint gets its chance even when one re-attach fails; the first error is thrown.
      let first: unknown = null;
      for (const { domain, endpoint, bypass } of attached) {
        await this.#attachOne(domain, endpoint, { bypass }).catch((e) => {
          first ??= e;
        });
      }
      if (first !== null) throw first;
    }
  }

  /**
   * Resets the device and frees the driver's DMA memory. The driver is unusable afterwards. A
   * device that does not acknowledge the reset within a second could still write to the rings
   * and buffers (virtio 1.3 §2.4.1: it stops using them only once reset), so then nothing is
   * freed and close() rejects with DeviceInitError "reset": the memory stays with the device.
   */
  async close(): Promise<void> {
    if (this.#planner.closed) return;
    this.#planner.closed = true;
    this.#requests.fail(new DeviceResetError("The driver was closed with the request pending"));
    await resetDevice(this.#transport);
    this.#requests.destroy();
    this.#events.destroy();
    if (this.#probeBuffer) this.#dma.free(this.#probeBuffer);
  }
}
