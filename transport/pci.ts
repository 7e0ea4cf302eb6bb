/**
 * The modern virtio-pci transport (virtio 1.3 §4.1): finds the common, notify, ISR and device
 * configuration structures through the vendor capabilities in PCI config space and implements
 * the {@link Transport} primitives over them.
 *
 * Transitional devices (PCI device IDs 0x1000–0x103f) are driven only through their modern
 * capabilities, taking the virtio device ID from the PCI subsystem ID (virtio 1.3 §4.1.2.1);
 * one without them is legacy-only and refused.
 *
 * @example
 * ```ts
 * import { MemoryRegisters, PciTransport } from "@viommu/viommu";
 *
 * const config = new MemoryRegisters(256); // vendor 0: not a virtio function
 * try {
 *   PciTransport.create(config, () => null);
 * } catch (e) {
 *   console.assert((e as Error).message.startsWith("Not a virtio PCI function: vendor 0x0"));
 * }
 * ```
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import type { RegisterSpace } from "./registers.ts";
import { type QueueAddresses, type Transport, TransportError } from "./transport.ts";
import { checkQueueIndex, checkQueueSize } from "./_queue_checks.ts";

/** The PCI vendor ID of virtio functions. */
export const VIRTIO_PCI_VENDOR = 0x1af4;
/** First modern virtio PCI device ID (0x1040 + virtio device ID). */
export const VIRTIO_PCI_MODERN_BASE = 0x1040;
/** Capability ID of a vendor-specific capability. */
export const PCI_CAP_ID_VENDOR = 0x09;
/** How many capabilities the walk visits at most (Linux's PCI_FIND_CAP_TTL). */
export const PCI_CAP_WALK_LIMIT = 48;

/** Virtio PCI capability types (`cfg_type`, virtio 1.3 §4.1.4). */
export const VirtioPciCap = {
  COMMON: 1,
  NOTIFY: 2,
  ISR: 3,
  DEVICE: 4,
} as const;

/** Offsets in the common configuration structure (virtio 1.3 §4.1.4.3). */
export const CommonCfg = {
  DEVICE_FEATURE_SELECT: 0,
  DEVICE_FEATURE: 4,
  DRIVER_FEATURE_SELECT: 8,
  DRIVER_FEATURE: 12,
  CONFIG_MSIX_VECTOR: 16,
  NUM_QUEUES: 18,
  DEVICE_STATUS: 20,
  CONFIG_GENERATION: 21,
  QUEUE_SELECT: 22,
  QUEUE_SIZE: 24,
  QUEUE_MSIX_VECTOR: 26,
  QUEUE_ENABLE: 28,
  QUEUE_NOTIFY_OFF: 30,
  QUEUE_DESC: 32,
  QUEUE_DRIVER: 40,
  QUEUE_DEVICE: 48,
  QUEUE_NOTIF_CONFIG_DATA: 56,
  QUEUE_RESET: 58,
} as const;

/** Bytes of common cfg this transport needs (through queue_device). */
const COMMON_MIN_LENGTH = 56;
/** Bytes of common cfg that hold queue_reset (VIRTIO_F_RING_RESET, §4.1.4.3). */
const COMMON_RESET_LENGTH = CommonCfg.QUEUE_RESET + 2;
const CAP_NAMES = ["", "COMMON", "NOTIFY", "ISR", "DEVICE"];

/** Where one virtio structure lives. */
export interface PciCapLocation {
  /** Config-space offset of the capability that described it. */
  cap: number;
  /** BAR index (0–5). */
  bar: number;
  /** Offset inside the BAR. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/** The structures the capability walk found. */
export interface PciLayout {
  /** Common configuration. */
  common: PciCapLocation;
  /** Notification area. */
  notify: PciCapLocation;
  /** ISR status byte. */
  isr: PciCapLocation;
  /** Device-specific configuration. */
  device: PciCapLocation;
  /** `notify_off_multiplier` of the notify capability. */
  notifyOffMultiplier: number;
}

/** Returns the BAR window of BAR `index`, or null when it is not mapped. */
export type PciBarAccessor = (index: number) => RegisterSpace | null;

/** The modern virtio-pci transport. */
export class PciTransport implements Transport {
  /** Always `"pci"`. */
  readonly kind = "pci" as const;
  /** The virtio device ID. */
  readonly deviceId: number;
  /** The PCI device ID (0x1040 + device ID for modern devices). */
  readonly pciDeviceId: number;
  /** The PCI revision ID (any is accepted, virtio 1.3 §4.1.2.2). */
  readonly revision: number;
  /** Where the virtio structures were found. */
  readonly layout: PciLayout;
  /** `num_queues` from common cfg. */
  readonly numQueues: number;
  #common: RegisterSpace;
  #c: number;
  #notify: RegisterSpace;
  #isr: RegisterSpace;
  #isrOffset: number;
  #device: RegisterSpace;
  #deviceOffset: number;
  /** Notify offset inside the notify BAR per queue; -1 until the queue is enabled. */
  #notifyAt: Int32Array;

  /**
   * Checks the IDs, walks the capabilities and wraps the structures. Throws
   * {@link TransportError} for a function this driver cannot drive.
   */
  constructor(config: RegisterSpace, bar: PciBarAccessor) {
    if (config.size < 256) {
      throw new RangeError(`PCI config space of ${config.size} bytes is smaller than 256`);
    }
    const vendor = config.read16(0x00);
    const id = config.read16(0x02);
    if (vendor !== VIRTIO_PCI_VENDOR) {
      throw new TransportError(
        `Not a virtio PCI function: vendor ${hex(vendor)}, expected 0x1af4`,
      );
    }
    let deviceId: number;
    let transitional = false;
    if (id >= VIRTIO_PCI_MODERN_BASE && id <= 0x107f) {
      deviceId = id - VIRTIO_PCI_MODERN_BASE;
    } else if (id >= 0x1000 && id <= 0x103f) {
      transitional = true;
      deviceId = config.read16(0x2e); // subsystem ID (virtio 1.3 §4.1.2.1)
    } else {
      throw new TransportError(`Not a virtio PCI function: device ID ${hex(id)}`);
    }
    if (deviceId === 0) {
      throw new TransportError(`Virtio PCI function ${hex(id)} has reserved device ID 0`);
    }
    this.pciDeviceId = id;
    this.deviceId = deviceId;
    this.revision = config.read8(0x08);
    if ((config.read16(0x06) & 0x10) === 0 && !transitional) {
      throw new TransportError("Virtio PCI function has no capability list (status bit 4 clear)");
    }
    const found = walkCapabilities(config, bar);
    const missing = [1, 2, 3, 4].filter((t) => found.caps[t] === null);
    if (missing.length > 0) {
      const names = missing.map((t) => CAP_NAMES[t]).join(", ");
      if (transitional) {
        throw new TransportError(
          `Virtio PCI function ${hex(id)} is a legacy/transitional device without ` +
            `usable modern capabilities (missing ${names}); legacy devices are not supported`,
        );
      }
      throw new TransportError(`Virtio PCI function has no usable ${names} capability`);
    }
    const caps = found.caps as PciCapLocation[];
    this.layout = {
      common: caps[1],
      notify: caps[2],
      isr: caps[3],
      device: caps[4],
      notifyOffMultiplier: found.multiplier,
    };
    // Windows exist: the walk only keeps capabilities whose BAR window holds them.
    this.#common = bar(this.layout.common.bar)!;
    this.#c = this.layout.common.offset;
    this.#notify = bar(this.layout.notify.bar)!;
    this.#isr = bar(this.layout.isr.bar)!;
    this.#isrOffset = this.layout.isr.offset;
    this.#device = bar(this.layout.device.bar)!;
    this.#deviceOffset = this.layout.device.offset;
    this.numQueues = this.#common.read16(this.#c + CommonCfg.NUM_QUEUES);
    this.#notifyAt = new Int32Array(this.numQueues).fill(-1);
  }

  /** Same as the constructor; reads better at call sites. */
  static create(config: RegisterSpace, bar: PciBarAccessor): PciTransport {
    return new PciTransport(config, bar);
  }

  /** Reads `device_status`. */
  getStatus(): number {
    return this.#common.read8(this.#c + CommonCfg.DEVICE_STATUS);
  }

  /** Writes `device_status` (0 resets the device). */
  setStatus(status: number): void {
    this.#common.write8(this.#c + CommonCfg.DEVICE_STATUS, status & 0xff);
  }

  /** Reads the 64 offered feature bits through device_feature_select/device_feature. */
  readDeviceFeatures(): bigint {
    const r = this.#common;
    const c = this.#c;
    r.write32(c + CommonCfg.DEVICE_FEATURE_SELECT, 0);
    const lo = r.read32(c + CommonCfg.DEVICE_FEATURE);
    r.write32(c + CommonCfg.DEVICE_FEATURE_SELECT, 1);
    const hi = r.read32(c + CommonCfg.DEVICE_FEATURE);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Writes the 64 accepted feature bits through driver_feature_select/driver_feature. */
  writeDriverFeatures(features: bigint): void {
    const r = this.#common;
    const c = this.#c;
    r.write32(c + CommonCfg.DRIVER_FEATURE_SELECT, 0);
    r.write32(c + CommonCfg.DRIVER_FEATURE, Number(features & 0xffff_ffffn));
    r.write32(c + CommonCfg.DRIVER_FEATURE_SELECT, 1);
    r.write32(c + CommonCfg.DRIVER_FEATURE, Number((features >> 32n) & 0xffff_ffffn));
  }

  /** Reads `config_generation` (virtio 1.3 §2.5.1). */
  configGeneration(): number {
    return this.#common.read8(this.#c + CommonCfg.CONFIG_GENERATION);
  }

  #configAt(offset: number, width: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.layout.device.length) {
      throw new RangeError(
        `Device config offset ${hex(offset)} (+${width}) is outside the ` +
          `${hex(this.layout.device.length)}-byte device config`,
      );
    }
    return this.#deviceOffset + offset;
  }

  /** Reads an 8-bit device config field. */
  readConfig8(offset: number): number {
    return this.#device.read8(this.#configAt(offset, 1));
  }

  /** Reads an aligned 16-bit device config field. */
  readConfig16(offset: number): number {
    return this.#device.read16(this.#configAt(offset, 2));
  }

  /** Reads an aligned 32-bit device config field. */
  readConfig32(offset: number): number {
    return this.#device.read32(this.#configAt(offset, 4));
  }

  /** Writes an 8-bit device config field. */
  writeConfig8(offset: number, value: number): void {
    this.#device.write8(this.#configAt(offset, 1), value);
  }

  /** Selects queue `index` and reads `queue_size`, the maximum before setup (0: absent). */
  maxQueueSize(index: number): number {
    checkQueueIndex(index);
    if (index >= this.numQueues) return 0;
    this.#common.write16(this.#c + CommonCfg.QUEUE_SELECT, index);
    return this.#common.read16(this.#c + CommonCfg.QUEUE_SIZE);
  }

  /**
   * Sets up queue `index` (virtio 1.3 §4.1.5.1.3): select, read the maximum, check it is
   * disabled, write the size and the addresses (low half first), compute and check its notify
   * address, then write `queue_enable = 1`. Never writes 0 to `queue_enable`.
   */
  enableQueue(index: number, size: number, addresses: QueueAddresses): void {
    checkQueueIndex(index);
    if (index >= this.numQueues) {
      throw new TransportError(
        `Cannot enable queue ${index}: the device has ${this.numQueues} queues`,
      );
    }
    const r = this.#common;
    const c = this.#c;
    r.write16(c + CommonCfg.QUEUE_SELECT, index);
    const max = r.read16(c + CommonCfg.QUEUE_SIZE);
    if (max === 0) {
      throw new TransportError(`Cannot enable queue ${index}: the device does not have it`);
    }
    if (r.read16(c + CommonCfg.QUEUE_ENABLE) !== 0) {
      throw new TransportError(`Cannot enable queue ${index}: it is already enabled`);
    }
    checkQueueSize(index, size, max);
    const notifyOff = r.read16(c + CommonCfg.QUEUE_NOTIFY_OFF);
    const notify = this.layout.notify;
    const rel = notifyOff * this.layout.notifyOffMultiplier;
    if (rel + 2 > notify.length) {
      throw new TransportError(
        `Cannot enable queue ${index}: notify offset ${notifyOff} × ` +
          `${this.layout.notifyOffMultiplier} lies outside the ${notify.length}-byte notify area`,
      );
    }
    r.write16(c + CommonCfg.QUEUE_SIZE, size);
    r.write32(c + CommonCfg.QUEUE_DESC, addresses.descLo >>> 0);
    r.write32(c + CommonCfg.QUEUE_DESC + 4, addresses.descHi >>> 0);
    r.write32(c + CommonCfg.QUEUE_DRIVER, addresses.driverLo >>> 0);
    r.write32(c + CommonCfg.QUEUE_DRIVER + 4, addresses.driverHi >>> 0);
    r.write32(c + CommonCfg.QUEUE_DEVICE, addresses.deviceLo >>> 0);
    r.write32(c + CommonCfg.QUEUE_DEVICE + 4, addresses.deviceHi >>> 0);
    this.#notifyAt[index] = notify.offset + rel;
    r.write16(c + CommonCfg.QUEUE_ENABLE, 1);
  }

  /**
   * Writes the 16-bit queue index at the queue's notify address (virtio 1.3 §4.1.5.2).
   * Allocation-free; throws {@link TransportError} for a queue never enabled.
   */
  notify(index: number): void {
    const at = index >= 0 && index < this.#notifyAt.length ? this.#notifyAt[index] : -1;
    if (at < 0) throw new TransportError(`Cannot notify queue ${index}: it was never enabled`);
    this.#notify.write16(at, index);
  }

  /**
   * Selects queue `index` and writes 1 to `queue_reset` (VIRTIO_F_RING_RESET, §4.1.4.3). Throws
   * {@link TransportError} when the common configuration is too short to hold the field.
   */
  resetQueue(index: number): void {
    this.#selectForReset(index).write16(this.#c + CommonCfg.QUEUE_RESET, 1);
  }

  /** Selects queue `index` and reads `queue_reset`: 1 while its reset is in progress (§4.1.4.3.1). */
  queueResetPending(index: number): boolean {
    return this.#selectForReset(index).read16(this.#c + CommonCfg.QUEUE_RESET) !== 0;
  }

  /** Selects queue `index` and reads `queue_enable` (false for a queue the device lacks). */
  queueEnabled(index: number): boolean {
    checkQueueIndex(index);
    if (index >= this.numQueues) return false;
    this.#common.write16(this.#c + CommonCfg.QUEUE_SELECT, index);
    return this.#common.read16(this.#c + CommonCfg.QUEUE_ENABLE) !== 0;
  }

  /** Selects queue `index` for a queue reset register access. */
  #selectForReset(index: number): RegisterSpace {
    checkQueueIndex(index);
    if (index >= this.numQueues) {
      throw new TransportError(
        `Cannot reset queue ${index}: the device has ${this.numQueues} queues`,
      );
    }
    if (this.layout.common.length < COMMON_RESET_LENGTH) {
      throw new TransportError(
        `Cannot reset queue ${index}: the ${this.layout.common.length}-byte common ` +
          `configuration has no queue_reset field (needs ${COMMON_RESET_LENGTH} bytes)`,
      );
    }
    this.#common.write16(this.#c + CommonCfg.QUEUE_SELECT, index);
    return this.#common;
  }

  /** Reads the ISR byte; the read clears it (virtio 1.3 §4.1.4.5). */
  takeInterrupt(): number {
    return this.#isr.read8(this.#isrOffset);
  }
}

/** Result of {@link walkCapabilities}: the first usable capability of each type 1–4. */
export interface PciCapWalk {
  /** Indexed by `cfg_type`; null where none was usable. Index 0 is unused. */
  caps: (PciCapLocation | null)[];
  /** `notify_off_multiplier` of the chosen notify capability. */
  multiplier: number;
}

/**
 * Walks the capability list (virtio 1.3 §4.1.4): vendor capabilities only, the first usable
 * one of each type; reserved types, BARs above 5, and structures that do not fit in their
 * BAR's window are skipped. The walk stops at a pointer outside config space, after
 * {@link PCI_CAP_WALK_LIMIT} capabilities, or when a capability repeats (a loop). A function
 * without a capability list (status bit 4 clear) yields no capabilities.
 */
export function walkCapabilities(config: RegisterSpace, bar: PciBarAccessor): PciCapWalk {
  const caps: (PciCapLocation | null)[] = [null, null, null, null, null];
  let multiplier = 0;
  if ((config.read16(0x06) & 0x10) === 0) return { caps, multiplier };
  const visited = new Set<number>();
  let ptr = config.read8(0x34) & 0xfc;
  for (let n = 0; n < PCI_CAP_WALK_LIMIT && ptr !== 0; n++) {
    if (ptr < 0x40 || ptr + 2 > config.size || visited.has(ptr)) break;
    visited.add(ptr);
    const capId = config.read8(ptr);
    const next = config.read8(ptr + 1) & 0xfc;
    if (capId === PCI_CAP_ID_VENDOR && ptr + 16 <= config.size) {
      const capLen = config.read8(ptr + 2);
      const type = config.read8(ptr + 3);
      const barIndex = config.read8(ptr + 4);
      const known = type >= VirtioPciCap.COMMON && type <= VirtioPciCap.DEVICE;
      // A larger cap_len is accepted (virtio 1.3 §4.1.4); a NOTIFY cap needs its multiplier.
      const minLen = type === VirtioPciCap.NOTIFY ? 20 : 16;
      if (
        known && caps[type] === null && barIndex <= 5 && capLen >= minLen &&
        ptr + minLen <= config.size
      ) {
        const offset = config.read32(ptr + 8);
        const length = config.read32(ptr + 12);
        const window = bar(barIndex);
        if (window !== null && usable(type, offset, length, window.size)) {
          caps[type] = { cap: ptr, bar: barIndex, offset, length };
          if (type === VirtioPciCap.NOTIFY) multiplier = config.read32(ptr + 16);
        }
      }
    }
    ptr = next;
  }
  return { caps, multiplier };
}

/** Whether a structure of `type` at `offset`/`length` fits a window and its rules. */
function usable(type: number, offset: number, length: number, windowSize: number): boolean {
  if (offset + length > windowSize) return false;
  switch (type) {
    case VirtioPciCap.COMMON:
      return (offset & 3) === 0 && length >= COMMON_MIN_LENGTH; // §4.1.4.3: 4-byte aligned
    case VirtioPciCap.NOTIFY:
      return (offset & 1) === 0 && length >= 2;
    case VirtioPciCap.ISR:
      return length >= 1;
    default:
      return (offset & 3) === 0; // §4.1.4.6: device cfg 4-byte aligned
  }
}
