/**
 * The virtio-iommu driver (virtio 1.3 §5.13): initialisation over any {@link Transport},
 * ATTACH, DETACH, MAP, UNMAP and PROBE with caller input checked before anything is sent,
 * domains that remember their mappings, reserved regions, bypass, and fault events.
 *
 * This file is the driver's public face and its lifecycle (create, reset, close, and where
 * interrupts and queue recovery are wired in); the work is elsewhere: `api.ts` (option and
 * record shapes), `planner.ts` + `checks.ts` (MAP/UNMAP rules and records), `fast_path.ts`
 * (one-at-a-time MAP/UNMAP), `send.ts` (requests that wait for a slot, replay),
 * `attach_checks.ts`, `records.ts`, `batch.ts`, `fault_inbox.ts`, `request_queue.ts`,
 * `event_queue.ts`, `queue_recovery.ts` (RING_RESET) and `../virtio/interrupt_setup.ts`. Over the
 * 400-line guideline because each public method carries its JSDoc and the spec rule it keeps;
 * the bodies are short delegations.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import type { Transport } from "../../transport/transport.ts";
import {
  featureBit,
  featureNames,
  hasFeature,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
} from "../../spec/features.ts";
import type { RingLayout } from "../virtio/virtqueue.ts";
import { QueueRecovery } from "./queue_recovery.ts";
import { beginInit, failDevice, finishInit, resetDevice } from "../virtio/init.ts";
import { InterruptSetup } from "../virtio/interrupt_setup.ts";
import type { InterruptStats } from "../../transport/interrupts.ts";
import { type Address, joinAddress } from "../../util/u64.ts";
import { type IommuConfig, readIommuConfig } from "./config.ts";
import { RequestChecks } from "./checks.ts";
import { DomainTable, SavedMappings } from "./domains.ts";
import { RequestBatch } from "./batch.ts";
import { MappingPlanner, PLAN_RECORD_ONLY, PLAN_SEND_UNTRACKED } from "./planner.ts";
import { DeviceResetError, driverError, IommuError, QueueResetError } from "./errors.ts";
import { EventQueue } from "./event_queue.ts";
import type { FaultEvent } from "./events.ts";
import { FaultInbox, type FaultIterateOptions } from "./fault_inbox.ts";
export { MAX_KEPT_FAULTS } from "./fault_inbox.ts";
import { parseProbeProperties, type ProbeResult, type ReservedRegion } from "./probe.ts";
import { RequestQueue } from "./request_queue.ts";
import { FastRequests } from "./fast_path.ts";
import { domainInfos, mappingInfos, pageChunks, physOf } from "./records.ts";
import { RequestSender } from "./send.ts";
import { checkReservedCompatible } from "./attach_checks.ts";
import {
  checkAddress,
  checkAttachOptions,
  checkBoolean,
  checkCreateOptions,
  checkFaultOptions,
  checkFunction,
  checkGroups,
  checkMs,
  checkResetOptions,
  checkU32,
  mapOptionsError,
} from "./arguments.ts";
import { encodeProbe } from "./requests.ts";
import type { IsolationGroup } from "../topology/resolve.ts";
import {
  CONFIG_BYPASS,
  EVENT_QUEUE,
  IOMMU_FEATURE_NAMES,
  PROBE_SIZE,
  REQUEST_QUEUE,
  TAIL_SIZE,
  VIRTIO_ID_IOMMU,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
} from "../../spec/iommu.ts";

import {
  type AttachOptions,
  type DomainInfo,
  type IommuInfo,
  type MapOptions,
  type MappingInfo,
  SUPPORTED_FEATURES,
  type VirtioIommuOptions,
} from "./api.ts";
export {
  type AttachOptions,
  type DomainInfo,
  type IommuInfo,
  MAP_MMIO,
  MAP_READ,
  MAP_WRITE,
  type MapOptions,
  type MappingInfo,
  SUPPORTED_FEATURES,
  type VirtioIommuOptions,
} from "./api.ts";

const DEFAULT_TIMEOUT_MS = 2000;
/** Requests in flight that direct 2-descriptor chains must allow before indirect ones are used. */
const MIN_DIRECT_SLOTS = 64;

const DEFAULT_MAX_QUEUE = 256;

/** Largest power of two ≤ n. */
function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}

/**
 * A virtio-iommu device driven from userspace.
 *
 * Errors: a bad argument to any method (wrong type, out of range, an unknown option value, MAP
 * flags without READ or WRITE) is an {@link IommuError} with status `"DRIVER"` whose message
 * names the parameter and the value (`Invalid domain 3n: expected a 32-bit unsigned integer`),
 * as are requests the driver MUST NOT send (misaligned, outside input_range or domain_range,
 * into a reserved region) and calls after close(). Methods that return a promise reject with
 * it; the others throw it. Nothing is sent. A device's refusal is an IommuError with its status
 * (`"INVAL"`, `"NOENT"`, …); see also RequestTimeoutError and DeviceResetError.
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
  #inbox = new FaultInbox();
  #pollEventsBound = (): void => {
    this.pollEvents();
  };
  #groups = new Map<number, IsolationGroup>();
  /** Sends requests that wait for a slot when none is free (attach, detach, replay, slow MAP/UNMAP). */
  #send!: RequestSender;
  /** The one-at-a-time MAP/UNMAP path (undefined until the queues exist). */
  #fast!: FastRequests;
  /** Resets of one queue while the device runs (VIRTIO_F_RING_RESET); null without it. */
  #recovery: QueueRecovery | null = null;
  /**
   * Attachments to restore after a reset: kept across a reset that failed before restoring, and
   * for each re-attach that failed, until the caller attaches or detaches that endpoint.
   */
  #reattach = new Map<number, { domain: number; endpoint: number; bypass: boolean }>();
  /** The interrupts taken, or why the driver polls. */
  #interrupts!: InterruptSetup;
  #configListeners = new Set<(config: IommuConfig) => void>();

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
    checkCreateOptions(options);
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
    const ring = this.#options.ring ?? "auto";
    let supported = SUPPORTED_FEATURES & (this.#options.features ?? SUPPORTED_FEATURES);
    if (ring === "split") supported &= ~featureBit(VIRTIO_F_RING_PACKED);
    // Steps 1-6: reset, ACKNOWLEDGE, DRIVER, features (MAP_UNMAP required, §5.13.3.1), FEATURES_OK.
    this.#features = await beginInit(t, {
      supported,
      required: featureBit(VIRTIO_IOMMU_F_MAP_UNMAP) |
        (ring === "packed" ? featureBit(VIRTIO_F_RING_PACKED) : 0n),
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
      const layout = this.ring;
      this.#requests = new RequestQueue(t, this.#dma, requestQueueSize, {
        timeoutMs: this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        spinMs: this.#options.spinMs,
        eventIdx,
        indirect,
        layout,
        onBroken: (error) => this.#recovery?.requestRingBroken(error) ?? false,
      });
      this.#fast = new FastRequests(this.#requests, this.#planner);
      this.#send = new RequestSender(this.#requests, this.#planner);
      this.#events = new EventQueue(
        t,
        this.#dma,
        this.#queueSize(EVENT_QUEUE),
        eventIdx,
        (event) => this.#inbox.deliver(event),
        layout,
      );
      if (hasFeature(this.#features, VIRTIO_F_RING_RESET)) {
        this.#recovery = new QueueRecovery({
          transport: t,
          requests: this.#requests,
          events: this.#events,
          domains: this.#domains,
          sender: this.#send,
          config: () => this.#config,
          timeoutMs: this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        });
      }
      if (this.#config.probeSize > 0) {
        this.#probeBuffer = this.#dma.alloc(PROBE_SIZE + this.#config.probeSize + TAIL_SIZE, 4096);
      }
      this.#interrupts = new InterruptSetup(t, this.#options.interrupts);
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

  /**
   * Hands both rings to the device (their MSI-X vectors first, §4.1.5.1.2) and sets DRIVER_OK
   * (end of step 7, step 8 of §3.1.1), then starts taking interrupts if there are any.
   */
  #goLive(): void {
    const irq = this.#interrupts;
    irq.assign([REQUEST_QUEUE, EVENT_QUEUE]);
    this.#requests.enable();
    this.#events.enable();
    // Step 8: DRIVER_OK; only then may the event buffers be announced (§3.1.1, §2.7.13.3.1).
    finishInit(this.#transport);
    this.#events.kick();
    if (!irq.active) {
      this.#pollFromNowOn(); // vectors refused after a reset: poll from now on
      return;
    }
    this.#requests.useInterrupts(true);
    this.#inbox.eventDriven = true;
    irq.start({
      usedBuffer: () => this.#onUsedBuffer(),
      configChange: () => this.#onConfigChange(),
      ended: () => this.#pollFromNowOn(),
    });
    this.#events.enableInterrupts();
  }

  /** A used-buffer interrupt: answers and fault reports (a shared line covers both queues). */
  #onUsedBuffer(): void {
    if (this.#planner.closed) return;
    this.#requests.onInterrupt();
    try {
      this.#events.collect();
    } catch {
      // A broken event queue: the next pollEvents()/takeFaults()/nextFault() throws it.
    }
  }

  /**
   * A configuration-change interrupt: DEVICE_NEEDS_RESET fails the request queue at once
   * (§2.1.2); otherwise the config is read again (bypass may have changed) and listeners told.
   */
  #onConfigChange(): void {
    if (this.#planner.closed || !this.#requests.checkDevice()) return;
    const old = this.#config;
    const fresh = readIommuConfig(this.#transport, this.#features);
    this.#config = fresh;
    if (
      fresh.pageSizeMask !== old.pageSizeMask || fresh.inputStart !== old.inputStart ||
      fresh.inputEnd !== old.inputEnd || fresh.domainStart !== old.domainStart ||
      fresh.domainEnd !== old.domainEnd
    ) {
      this.#planner.checks = this.#newChecks();
    }
    for (const listener of this.#configListeners) listener({ ...fresh });
  }

  /** The interrupt source went away: requests and fault waiters poll again. */
  #pollFromNowOn(): void {
    this.#requests.useInterrupts(false);
    this.#inbox.eventDriven = false;
    this.#inbox.wake();
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
      interrupts: this.#interrupts.info,
      ring: this.ring,
      queueReset: this.#recovery !== null,
    };
  }

  /**
   * Interrupts taken since creation (used buffers, config changes, spurious), or null when the
   * driver never took any.
   */
  get interruptStats(): InterruptStats | null {
    return this.#interrupts.stats;
  }

  /**
   * Calls `listener` with the config read again after each configuration-change interrupt
   * (the device changed `bypass`, for example); returns a function that unsubscribes. Only
   * while the driver takes interrupts: a polling driver reads the config only when told to.
   */
  onConfigChange(listener: (config: IommuConfig) => void): () => void {
    this.#configListeners.add(listener);
    return () => this.#configListeners.delete(listener);
  }

  /** The ring layout in use: packed when VIRTIO_F_RING_PACKED was negotiated (§2.8). */
  get ring(): RingLayout {
    return hasFeature(this.#features, VIRTIO_F_RING_PACKED) ? "packed" : "split";
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
  // Public requests.

  /**
   * Attaches `endpoint` to `domain` (virtio 1.3 §5.13.6.3), creating the domain on the device.
   * An endpoint attached elsewhere moves (the device detaches it implicitly); one already in
   * `domain` stays, and nothing is sent. When the domain had no endpoint, its remembered
   * mappings are replayed, as Linux does.
   */
  async attach(domain: number, endpoint: number, options: AttachOptions = {}): Promise<void> {
    this.#open();
    checkAttachOptions(options);
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
    const list = checkGroups(groups);
    this.#groups.clear();
    for (const group of list) {
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
    if (record && !bypass) {
      checkReservedCompatible(
        this.#domains,
        record,
        endpoint,
        this.#options.allowIdentity ?? false,
      );
    }
    await this.#send.attach(domain, endpoint, bypass ? VIRTIO_IOMMU_ATTACH_F_BYPASS : 0);
    this.#reattach.delete(endpoint); // The caller's attach replaces a failed re-attach's.
    const fresh = this.#domains.attached(domain, bypass, endpoint);
    if (fresh) await this.#replayOrDetach(domain, endpoint);
  }

  /**
   * Replays the remembered mappings into a domain the device has just created. If the device
   * refuses any, the endpoint is detached again, so that attach() is all or nothing: it
   * rejects with the first refusal, the endpoint is not attached, and the domain still
   * remembers every mapping (replayed at the next attach). Only if that DETACH fails too does
   * the endpoint stay attached, on both sides, to a domain missing the refused mappings.
   */
  async #replayOrDetach(domain: number, endpoint: number): Promise<void> {
    try {
      await this.#send.replay(this.#domains.get(domain)!);
    } catch (error) {
      await this.#send.detach(domain, endpoint).then(
        () => this.#domains.detached(domain, endpoint),
        () => {/* The device failed again; the first error says why the attach failed. */},
      );
      throw error;
    }
  }

  /** Detaches `endpoint` from `domain` (virtio 1.3 §5.13.6.4). The domain keeps its mappings. */
  async detach(domain: number, endpoint: number): Promise<void> {
    this.#planner.checks.domain(domain);
    this.#planner.checks.id(endpoint, "endpoint");
    this.#reattach.delete(endpoint); // Nor will a later reset() attach it again.
    await this.#send.detach(domain, endpoint);
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
    const bad = options === undefined ? null : mapOptionsError(options);
    if (bad !== null) return Promise.reject(bad);
    const split = options?.split === true;
    if (!split) {
      const slot = this.#fastSlot();
      if (slot >= 0) return this.#fast.map(slot, domain, iova, phys, size, flags);
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
      return this.#send.map(domain, sLo, sHi, eLo, eHi, pLo, pHi, flags);
    }
    return this.#send.map(
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

  /** A free request slot for the fast path, or -1 (queue broken, full, or callers waiting). */
  #fastSlot(): number {
    return this.#planner.closed || this.#fast === undefined ? -1 : this.#fast.slot();
  }

  /** MAP split into the largest page sizes page_size_mask allows (#a, #b, #c hold the range). */
  async #mapSplit(domain: number, flags: number): Promise<void> {
    const c = this.#planner.checks;
    const chunks = pageChunks(
      joinAddress(c.iova.lo, c.iova.hi),
      joinAddress(c.phys.lo, c.phys.hi),
      joinAddress(c.last.lo, c.last.hi),
      this.#config.pageSizeMask,
      c.granule,
    );
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
    if (slot >= 0) return this.#fast.unmap(slot, domain, iova, size);
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
    if (plan === PLAN_SEND_UNTRACKED) return this.#send.unmap(domain, a.lo, a.hi, b.lo, b.hi);
    return this.#send.unmap(
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
    checkU32(endpoint, "endpoint");
    return this.#domains.reservedOf(endpoint).map((r) => ({ ...r }));
  }

  /**
   * Sets the global `bypass` config field (virtio 1.3 §5.13.4): whether unattached endpoints
   * bypass translation. Only with BYPASS_CONFIG negotiated; the driver writes only 0 or 1.
   */
  setBypass(enabled: boolean): void {
    this.#open();
    checkBoolean(enabled, "enabled");
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
    checkAttachOptions(options);
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
    checkU32(domain, "domain");
    return this.#domains.forget(domain);
  }

  /** The domains the driver knows. */
  domains(): DomainInfo[] {
    return domainInfos(this.#domains);
  }

  /** The mappings the driver remembers for `domain`, in address order. */
  mappings(domain: number): MappingInfo[] {
    checkU32(domain, "domain");
    return mappingInfos(this.#domains, domain);
  }

  /** The physical address `iova` maps to in `domain`, from the driver's records, or null. */
  iovaToPhys(domain: number, iova: Address): bigint | null {
    checkU32(domain, "domain");
    const a = checkAddress(iova, "iova", this.#planner.checks.iova);
    return physOf(this.#domains, domain, a.lo, a.hi);
  }

  // ---------------------------------------------------------------------------------------
  // Events.

  /** Fault reports dropped from the takeFaults() backlog because it was full (oldest first). */
  get droppedFaults(): number {
    return this.#inbox.dropped;
  }

  /**
   * Reads the event queue now; returns how many fault reports arrived. A device that broke the
   * event ring gets the queue reset (and every buffer posted again) when VIRTIO_F_RING_RESET
   * was negotiated; without it the {@link VirtqueueError} is thrown.
   */
  pollEvents(): number {
    this.#open();
    try {
      return this.#events.collect();
    } catch (error) {
      if (this.#recovery?.eventRingBroken(error) !== true) throw error;
      return 0;
    }
  }

  /**
   * Resets one queue while the device keeps running (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1,
   * §4.1.4.3 / §4.2.2), so domains and mappings stay. `"event"`: every event buffer is posted
   * again. `"request"`: requests in flight reject with {@link QueueResetError} (the device may
   * or may not have executed them); requests made meanwhile wait; the device is first put back
   * in step with the driver's records for what the failed requests touched, then the waiting
   * requests go. The driver also does this by itself when the device breaks a ring. Rejects
   * with IommuError "DRIVER" without RING_RESET, and with VirtqueueError when the device does
   * not complete the reset (the queue then stays failed until {@link VirtioIommu.reset}).
   */
  resetQueue(queue: "request" | "event"): Promise<void> {
    this.#open();
    const recovery = this.#recovery;
    if (recovery === null) {
      return Promise.reject(
        driverError("Cannot reset a queue: VIRTIO_F_RING_RESET not negotiated"),
      );
    }
    if (queue === "event") return recovery.resetEvents();
    return recovery.resetRequests(
      new QueueResetError("The request queue was reset with the request in flight"),
    );
  }

  /** Queues reset alone so far (VIRTIO_F_RING_RESET), by queue. */
  get queueResets(): { request: number; event: number } {
    return {
      request: this.#recovery?.requestResets ?? 0,
      event: this.#recovery?.eventResets ?? 0,
    };
  }

  /** Fault reports the device sent that are dropped because they were malformed. */
  get ignoredEvents(): number {
    return this.#events.ignored;
  }

  /** Returns the faults received since the last call (polling the event queue first). */
  takeFaults(): FaultEvent[] {
    this.pollEvents();
    return this.#inbox.take();
  }

  /** Calls `listener` for every fault report; returns a function that unsubscribes. */
  onFault(listener: (event: FaultEvent) => void): () => void {
    checkFunction(listener, "listener");
    return this.#inbox.listen(listener);
  }

  /**
   * Waits for the next fault report; resolves null after `timeoutMs` without one. With
   * interrupts it sleeps until the event queue's interrupt delivers one; otherwise it polls
   * the event queue every millisecond.
   */
  nextFault(timeoutMs = 1000): Promise<FaultEvent | null> {
    try {
      checkMs(timeoutMs, "timeoutMs");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#inbox.next(timeoutMs, this.#pollEventsBound);
  }

  /**
   * The fault reports as an async iterator: `for await (const f of iommu.faults()) …`. It
   * ends when `signal` aborts, after `idleMs` without a report (default: never), or when the
   * driver is closed. Event-driven with interrupts, polling every millisecond without.
   */
  faults(options: FaultIterateOptions = {}): AsyncGenerator<FaultEvent, void, void> {
    checkFaultOptions(options);
    return this.#inbox.iterate(options, this.#pollEventsBound, () => this.#planner.closed);
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
    checkResetOptions(options);
    this.#recovery?.cancel();
    const error = new DeviceResetError("The device was reset with the request pending");
    this.#requests.restart(error);
    this.#events.restart();
    // Endpoints a failed earlier reset left unattached are re-attached by this one too.
    for (const a of this.#domains.detachAll()) this.#reattach.set(a.endpoint, a);
    const t = this.#transport;
    const layout = this.ring;
    this.#features = await beginInit(t, {
      supported: this.#features,
      // The queues keep their ring layout: the device must offer it again.
      required: featureBit(VIRTIO_IOMMU_F_MAP_UNMAP) |
        (layout === "packed" ? featureBit(VIRTIO_F_RING_PACKED) : 0n),
      timeoutMs: this.#options.timeoutMs,
    });
    if (!hasFeature(this.#features, VIRTIO_F_RING_RESET)) this.#recovery = null;
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
      // One that fails (its ATTACH, or its replay) is re-attached by the next reset.
      let first: unknown = null;
      for (const a of attached) {
        await this.#attachOne(a.domain, a.endpoint, { bypass: a.bypass }).catch((e) => {
          if (!this.#domains.get(a.domain)?.endpoints.has(a.endpoint)) {
            this.#reattach.set(a.endpoint, a);
          }
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
    this.#interrupts.stop();
    this.#inbox.wake();
    this.#recovery?.cancel();
    this.#requests.fail(new DeviceResetError("The driver was closed with the request pending"));
    await resetDevice(this.#transport);
    this.#requests.destroy();
    this.#events.destroy();
    if (this.#probeBuffer) this.#dma.free(this.#probeBuffer);
  }
}
