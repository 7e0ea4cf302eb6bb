/**
 * The mock virtio-iommu device (virtio 1.3 §5.13): a {@link DeviceModel} that runs behind the
 * MMIO register file or the PCI function of this folder, answers requests as the spec says
 * (or as QEMU 7.2 does, with `qemuCompat`), simulates endpoint DMA through
 * {@link MockIommuDevice.translate} and reports faults on the event queue. It records every
 * driver rule break it can see through {@link DeviceContext.violation}.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import {
  CONFIG_BYPASS,
  CONFIG_DOMAIN_END,
  CONFIG_DOMAIN_START,
  CONFIG_INPUT_END,
  CONFIG_INPUT_START,
  CONFIG_PAGE_SIZE_MASK,
  CONFIG_PROBE_SIZE,
  CONFIG_SIZE,
  EVENT_QUEUE,
  REQUEST_QUEUE,
  VIRTIO_ID_IOMMU,
  VIRTIO_IOMMU_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
} from "../../spec/iommu.ts";
import { hasFeature } from "../../spec/features.ts";
import { STATUS_FEATURES_OK } from "../../spec/status.ts";
import type { Chain, DeviceContext, DeviceModel } from "../device.ts";
import { IommuDomains } from "./domains.ts";
import { FaultReporter, type IommuFault } from "./events.ts";
import {
  type MockIommuOptions,
  type ResolvedIommuOptions,
  resolveIommuOptions,
} from "./options.ts";
import { IommuRequestHandler } from "./requests.ts";
import { joinAddress, lessThan64, U64_MAX } from "../../util/u64.ts";

/** Result of {@link MockIommuDevice.translate}: a physical address, or a fault. */
export type TranslateResult =
  | { ok: true; address: bigint; bypass: boolean }
  | { ok: false; fault: IommuFault };

/** A domain as seen by {@link MockIommuDevice.domains}. */
export interface MockDomainInfo {
  /** Domain ID. */
  id: number;
  /** Whether it is a bypass domain. */
  bypass: boolean;
  /** Attached endpoint IDs, ascending. */
  endpoints: number[];
  /** Number of mappings. */
  mappings: number;
}

/** A mapping as seen by {@link MockIommuDevice.mappings}. */
export interface MockMappingInfo {
  /** First IOVA. */
  start: bigint;
  /** Last IOVA (inclusive). */
  end: bigint;
  /** Physical address of `start`. */
  phys: bigint;
  /** `VIRTIO_IOMMU_MAP_F_*` bits. */
  flags: number;
}

/**
 * A strict virtio-iommu device model; defaults are QEMU 7.2's q35 device.
 *
 * @example
 * ```ts
 * import { MockIommuDevice } from "@viommu/viommu/testing";
 * const device = new MockIommuDevice({ bypass: false });
 * // Unattached endpoint, bypass off: the access faults with reason DOMAIN.
 * const result = device.translate(0x08, 0x1000n, "read");
 * if (result.ok) throw new Error("expected a fault");
 * ```
 */
export class MockIommuDevice implements DeviceModel {
  /** Virtio device ID 23. */
  readonly deviceId: number = VIRTIO_ID_IOMMU;
  /** Feature bits offered. */
  readonly features: bigint;
  /** [requestq, eventq] sizes. */
  readonly queueSizes: readonly number[];
  /** 40 bytes of `struct virtio_iommu_config`. */
  readonly configSize: number = CONFIG_SIZE;
  /** Whether it processes notifications before DRIVER_OK (`qemuCompat`, as QEMU 7.2 does). */
  readonly notifyBeforeDriverOk: boolean;
  #options: ResolvedIommuOptions;
  #domains: IommuDomains;
  #requests: IommuRequestHandler;
  #events: FaultReporter;
  #ctx: DeviceContext | null = null;
  #config = new Uint8Array(CONFIG_SIZE);
  #configView = new DataView(this.#config.buffer);
  #bypass: boolean;
  #requestsHandled = 0;

  /** Creates the device; see {@link MockIommuOptions} for the defaults. */
  constructor(options: MockIommuOptions = {}) {
    const o = resolveIommuOptions(options);
    this.#options = o;
    this.features = o.features;
    this.queueSizes = o.queueSizes;
    this.notifyBeforeDriverOk = o.qemuCompat;
    this.#bypass = o.bypass;
    this.#domains = new IommuDomains(o.endpoints);
    this.#events = new FaultReporter(o.eventOverflow);
    this.#requests = new IommuRequestHandler(o, this.#domains, {
      negotiated: (): bigint => this.#ctx?.negotiated ?? 0n,
      violation: (rule: string): void => this.#violation(rule),
    });
    // struct virtio_iommu_config (§5.13.4).
    const v = this.#configView;
    v.setBigUint64(CONFIG_PAGE_SIZE_MASK, o.pageSizeMask, true);
    v.setBigUint64(CONFIG_INPUT_START, o.inputRange.start, true);
    v.setBigUint64(CONFIG_INPUT_END, o.inputRange.end, true);
    v.setUint32(CONFIG_DOMAIN_START, o.domainRange.start, true);
    v.setUint32(CONFIG_DOMAIN_END, o.domainRange.end, true);
    v.setUint32(CONFIG_PROBE_SIZE, o.probeSize, true);
    this.#config[CONFIG_BYPASS] = this.#bypass ? 1 : 0;
  }

  /** The `bypass` config field as the device currently holds it. */
  get bypass(): boolean {
    return this.#bypass;
  }

  /** Requests answered on the request queue (including those answered with used length 0). */
  get requestsHandled(): number {
    return this.#requestsHandled;
  }

  /** Status of the last request, or -1 when it was returned unwritten (used length 0). */
  get lastStatus(): number {
    return this.#requests.lastStatus;
  }

  /** Faults written to the event queue. */
  get faultsPosted(): number {
    return this.#events.posted;
  }

  /** Faults lost for want of an event buffer. */
  get faultsDropped(): number {
    return this.#events.dropped;
  }

  /** Faults held for an event buffer (`eventOverflow: "wait"`). */
  get faultsPending(): number {
    return this.#events.pending;
  }

  /** Plugs the model into a transport front-end. */
  attach(context: DeviceContext): void {
    this.#ctx = context;
  }

  /** Reads `width` bytes of config at `offset` (little-endian; bytes past the end read 0). */
  readConfig(offset: number, width: number): number {
    let value = 0;
    for (let i = width - 1; i >= 0; i--) {
      const at = offset + i;
      value = value * 256 + (at >= 0 && at < CONFIG_SIZE ? this.#config[at] : 0);
    }
    return value >>> 0;
  }

  /**
   * Handles a driver config write. Only an 8-bit write of 0 or 1 to `bypass`, after
   * FEATURES_OK with BYPASS_CONFIG negotiated, is accepted (§5.13.4.1); anything else is
   * recorded as a violation and ignored. With `qemuCompat`, a write QEMU answers with
   * virtio_error (bypass without BYPASS_CONFIG, a value other than 0/1) also sets
   * DEVICE_NEEDS_RESET; spec-strict mode only ignores it, so a test can go on.
   */
  writeConfig(offset: number, width: number, value: number): void {
    const ctx = this.#ctx;
    if (offset !== CONFIG_BYPASS || width !== 1) {
      this.#violation(
        `virtio 1.3 §5.13.4.1: driver wrote ${width} byte(s) of config at offset ${offset}; only the 8-bit bypass field at ${CONFIG_BYPASS} is writable`,
      );
      return;
    }
    if (ctx === null) return;
    if ((ctx.status & STATUS_FEATURES_OK) === 0) {
      this.#violation("virtio 1.3 §3.1.1: driver wrote bypass before FEATURES_OK");
      return;
    }
    if (!hasFeature(ctx.negotiated, VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
      this.#violation(
        "virtio 1.3 §5.13.4.1: driver wrote bypass without VIRTIO_IOMMU_F_BYPASS_CONFIG negotiated",
      );
      if (this.#options.qemuCompat) ctx.needsReset("bypass written without BYPASS_CONFIG");
      return;
    }
    if (value !== 0 && value !== 1) {
      this.#violation(`virtio 1.3 §5.13.4.1: driver wrote ${value} to bypass; only 0 or 1 allowed`);
      if (this.#options.qemuCompat) ctx.needsReset(`bypass value ${value}`);
      return;
    }
    this.#setBypass(value === 1);
  }

  /** Processes the request queue (index 0) or retries held faults (index 1). */
  notify(index: number): void {
    const ctx = this.#ctx;
    if (ctx === null) return;
    if (index === EVENT_QUEUE) {
      this.#events.flush(ctx);
      return;
    }
    if (index !== REQUEST_QUEUE) return;
    const queue = ctx.queue(REQUEST_QUEUE);
    if (queue === null) return;
    let answered = 0;
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      const used = this.handle(chain);
      if (used < 0) {
        // QEMU 7.2's virtio_error: the chain is kept, never returned, and the device stops.
        ctx.needsReset("virtio-iommu bad head/tail size");
        break;
      }
      queue.push(chain.head, used);
      answered++;
    }
    if (answered > 0) ctx.interrupt(REQUEST_QUEUE);
  }

  /**
   * Handles one request chain over the attached context's memory and returns the used
   * length (bytes written); the caller puts it in the used ring. Returns -1 for a chain the
   * device keeps without answering (`qemuCompat`: a request without head or tail). Exposed
   * for tests that drive the model without a transport.
   */
  handle(chain: Chain): number {
    const ctx = this.#ctx;
    if (ctx === null) throw new TypeError("MockIommuDevice.handle() called before attach()");
    this.#requestsHandled++;
    return this.#requests.handle(ctx.memory, chain);
  }

  /** Device reset: every domain destroyed, every endpoint unattached; `bypass` is kept. */
  reset(): void {
    this.#domains.clear();
    this.#events.reset();
    this.#requests.lastStatus = -1;
  }

  /**
   * The device changes `bypass` on its own (as a host's management interface could): the
   * config generation moves and, after DRIVER_OK, a configuration change interrupt is raised.
   */
  changeBypass(value: boolean): void {
    this.#setBypass(value);
  }

  /** System reset: a device reset that also restores the boot value of `bypass`. */
  systemReset(): void {
    this.reset();
    this.#setBypass(this.#options.bypass);
  }

  /**
   * Simulates a DMA access by `endpoint` to `iova` (reference §1.6, §2): returns the physical
   * address, or a fault that is also posted on the event queue.
   */
  translate(endpoint: number, iova: bigint, access: "read" | "write"): TranslateResult {
    if (iova < 0n || iova > U64_MAX) {
      throw new RangeError(`Cannot translate iova ${hex(iova)}: not a 64-bit address`);
    }
    if (access !== "read" && access !== "write") {
      throw new TypeError(`Unknown access kind ${String(access)}`);
    }
    const lo = Number(iova & 0xffff_ffffn);
    const hi = Number(iova >> 32n);
    const write = access === "write";
    const accessFlag = write ? VIRTIO_IOMMU_FAULT_F_WRITE : VIRTIO_IOMMU_FAULT_F_READ;
    // Spec-strict faults carry the access kind; QEMU 7.2 sets it only on permission faults.
    const plainFlags = this.#options.qemuCompat
      ? VIRTIO_IOMMU_FAULT_F_ADDRESS
      : accessFlag | VIRTIO_IOMMU_FAULT_F_ADDRESS;
    const ep = this.#domains.endpoint(endpoint);
    const globalBypass = this.#globalBypass();
    // QEMU 7.2 knows an endpoint only once it was attached since the reset: before that, a
    // blocked access is reported as R_UNKNOWN, not R_DOMAIN.
    if (ep === undefined || (this.#options.qemuCompat && !ep.attachedSinceReset)) {
      if (globalBypass) return { ok: true, address: iova, bypass: true };
      return this.#fault("UNKNOWN", plainFlags, endpoint, iova);
    }
    // Reserved regions first, as QEMU does: MSI doorbells are identity, others fault.
    for (const r of ep.regions) {
      if (lessThan64(lo, hi, r.startLo, r.startHi) || lessThan64(r.endLo, r.endHi, lo, hi)) {
        continue;
      }
      if (r.subtype === VIRTIO_IOMMU_RESV_MEM_T_MSI) {
        return { ok: true, address: iova, bypass: false };
      }
      return this.#fault("MAPPING", plainFlags, endpoint, iova);
    }
    const domain = ep.domain;
    if (domain === null) {
      if (globalBypass) return { ok: true, address: iova, bypass: true };
      return this.#fault("DOMAIN", plainFlags, endpoint, iova);
    }
    const map = domain.mappings;
    if (domain.bypass || map === null) return { ok: true, address: iova, bypass: true };
    const slot = map.find(lo, hi);
    if (slot < 0) return this.#fault("MAPPING", plainFlags, endpoint, iova);
    // §5.13.6.5: MUST NOT allow writes through a mapping without WRITE; this device also
    // refuses reads through a mapping without READ.
    const needed = write ? VIRTIO_IOMMU_MAP_F_WRITE : VIRTIO_IOMMU_MAP_F_READ;
    if ((map.flags(slot) & needed) === 0) {
      return this.#fault("MAPPING", accessFlag | VIRTIO_IOMMU_FAULT_F_ADDRESS, endpoint, iova);
    }
    const start = joinAddress(map.startLo(slot), map.startHi(slot));
    const phys = joinAddress(map.physLo(slot), map.physHi(slot));
    return { ok: true, address: (phys + (iova - start)) & U64_MAX, bypass: false };
  }

  /** Existing domains, ascending by ID. */
  domains(): MockDomainInfo[] {
    const out: MockDomainInfo[] = [];
    for (const d of this.#domains.allDomains()) {
      out.push({
        id: d.id,
        bypass: d.bypass,
        endpoints: [...d.endpoints].sort((a, b) => a - b),
        mappings: d.mappings?.size ?? 0,
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** Mappings of domain `id`, ascending by start; empty for an unknown or bypass domain. */
  mappings(id: number): MockMappingInfo[] {
    const map = this.#domains.domain(id)?.mappings;
    if (map === undefined || map === null) return [];
    const out: MockMappingInfo[] = [];
    map.forEach((slot: number): void => {
      out.push({
        start: joinAddress(map.startLo(slot), map.startHi(slot)),
        end: joinAddress(map.endLo(slot), map.endHi(slot)),
        phys: joinAddress(map.physLo(slot), map.physHi(slot)),
        flags: map.flags(slot),
      });
    });
    return out.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  /** The domain endpoint `id` is attached to, or null when unattached or unknown. */
  endpointDomain(id: number): number | null {
    return this.#domains.endpoint(id)?.domain?.id ?? null;
  }

  /** Rules a/c of reference §1.6 for unattached endpoints. */
  #globalBypass(): boolean {
    // a) BYPASS_CONFIG offered and bypass == 1, negotiated or not.
    if (hasFeature(this.features, VIRTIO_IOMMU_F_BYPASS_CONFIG) && this.#bypass) return true;
    // c) legacy BYPASS negotiated.
    const negotiated = this.#ctx?.negotiated ?? 0n;
    return hasFeature(negotiated, VIRTIO_IOMMU_F_BYPASS);
  }

  #fault(
    reason: IommuFault["reason"],
    flags: number,
    endpoint: number,
    address: bigint,
  ): TranslateResult {
    const fault: IommuFault = { reason, flags, endpoint, address };
    this.#events.report(this.#ctx, fault);
    return { ok: false, fault: { ...fault } };
  }

  #setBypass(value: boolean): void {
    if (value === this.#bypass) return;
    this.#bypass = value;
    this.#config[CONFIG_BYPASS] = value ? 1 : 0;
    this.#ctx?.configChanged();
  }

  #violation(rule: string): void {
    this.#ctx?.violation(rule);
  }
}
