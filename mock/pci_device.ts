/**
 * An in-memory modern virtio-pci function (virtio 1.3 §4.1): a 256-byte config space with the
 * vendor capability list, and BAR 4 laid out like QEMU's (common cfg at 0x0, ISR at 0x1000,
 * device cfg at 0x2000, notify at 0x3000 with `notify_off_multiplier` 4; 16 KiB). It shares
 * {@link VirtioCore} with the MMIO register file: only where the registers are differs.
 * Options inject odd capability lists for transport tests.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { checkAccess, MemoryRegisters, type RegisterSpace } from "../transport/registers.ts";
import type { SimulatedMemory } from "../transport/memory.ts";
import type { DeviceModel } from "./device.ts";
import {
  QUEUE_DESC,
  QUEUE_DEVICE,
  QUEUE_DRIVER,
  VirtioCore,
  type VirtioCoreOptions,
} from "./virtio_core.ts";

/** The virtio PCI vendor ID. */
export const PCI_VENDOR_VIRTIO = 0x1af4;
/** `cfg_type` of the common configuration capability (virtio 1.3 §4.1.4). */
export const PCI_CAP_COMMON_CFG = 1;
/** `cfg_type` of the notification capability. */
export const PCI_CAP_NOTIFY_CFG = 2;
/** `cfg_type` of the ISR capability. */
export const PCI_CAP_ISR_CFG = 3;
/** `cfg_type` of the device-specific configuration capability. */
export const PCI_CAP_DEVICE_CFG = 4;
/** `cfg_type` of the PCI configuration access capability. */
export const PCI_CAP_PCI_CFG = 5;

/** Offsets inside BAR 4, as QEMU lays it out. */
const COMMON_BASE = 0x0000;
const ISR_BASE = 0x1000;
const DEVICE_BASE = 0x2000;
const NOTIFY_BASE = 0x3000;
const REGION_SIZE = 0x1000;
const BAR4_SIZE = 0x4000;
/** The BAR the virtio structures live in. */
const VIRTIO_BAR = 4;
/** First capability offset in config space. */
const CAP_START = 0x40;

/** A capability to put in the list, for tests that need unusual ones. */
export interface PciCapSpec {
  /** `cfg_type` (1 COMMON, 2 NOTIFY, 3 ISR, 4 DEVICE, 5 PCI_CFG, others reserved). */
  cfgType: number;
  /** `bar` field. */
  bar: number;
  /** `offset` field. */
  offset: number;
  /** `length` field. */
  length: number;
  /** Capability ID; default 0x09 (vendor-specific). */
  vendor?: number;
  /** `notify_off_multiplier` for a NOTIFY capability; default 4. */
  multiplier?: number;
}

/** Options for {@link PciFunction}. */
export interface PciFunctionOptions extends VirtioCoreOptions {
  /** PCI vendor ID; default 0x1AF4. */
  vendorId?: number;
  /** PCI device ID; default 0x1040 + the model's device ID. */
  pciDeviceId?: number;
  /** PCI subsystem ID; default 0x1100 (QEMU's for modern devices). */
  subsystemId?: number;
  /** Revision ID; default 1. */
  revision?: number;
  /** `notify_off_multiplier` of the standard NOTIFY capability; default 4. */
  notifyMultiplier?: number;
  /** `queue_notify_off` of each queue; default the queue index. */
  queueNotifyOff?: readonly number[];
  /** Capabilities placed before the standard ones. */
  capsBefore?: readonly PciCapSpec[];
  /** Capabilities placed after the standard ones. */
  capsAfter?: readonly PciCapSpec[];
  /** Standard capabilities (by `cfg_type`) to leave out. */
  omitCaps?: readonly number[];
  /** `cap_next` of the last capability; default 0 (use 0x40 to make a loop). */
  lastNext?: number;
  /** Whether the status register advertises a capability list; default true. */
  capabilityList?: boolean;
}

/** Width of the common-cfg field starting at `offset` (0 when no field starts there). */
function commonFieldWidth(offset: number): number {
  if (offset < 16) return (offset & 3) === 0 ? 4 : 0;
  if (offset === 20 || offset === 21) return 1;
  if (offset < 32) return (offset & 1) === 0 && offset !== 20 ? 2 : 0;
  if (offset < 56) return (offset & 3) === 0 ? 4 : 0;
  if (offset < 64) return (offset & 1) === 0 ? 2 : 0;
  return 0;
}

/** The PCI config space: reads are plain, writes to virtio capabilities are violations. */
class PciConfigSpace extends MemoryRegisters {
  readonly #core: VirtioCore;
  /** Ranges [start, end) of capabilities the driver must not write. */
  readonly #protected: Array<[number, number]> = [];

  constructor(core: VirtioCore) {
    super(256);
    this.#core = core;
  }

  protect(start: number, end: number): void {
    this.#protected.push([start, end]);
  }

  #allowed(offset: number, width: number): boolean {
    for (const [start, end] of this.#protected) {
      if (offset < end && offset + width > start) {
        this.#core.violation(
          `virtio 1.3 §4.1.4: driver wrote capability bytes at config ${hex(offset)}`,
        );
        return false;
      }
    }
    // Identity, class, header type and capability pointer are read-only.
    if (offset < 4 || (offset >= 8 && offset < 0x10) || (offset >= 0x2c && offset < 0x3c)) {
      return false;
    }
    return true;
  }

  override write8(offset: number, value: number): void {
    checkAccess(offset, 1, this.size);
    if (this.#allowed(offset, 1)) super.write8(offset, value);
  }
  override write16(offset: number, value: number): void {
    checkAccess(offset, 2, this.size);
    if (this.#allowed(offset, 2)) super.write16(offset, value);
  }
  override write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    if (this.#allowed(offset, 4)) super.write32(offset, value);
  }
}

/** BAR 4: common cfg, ISR, device cfg and notify regions. */
class VirtioBar implements RegisterSpace {
  readonly size = BAR4_SIZE;
  readonly #fn: PciFunction;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #queueSelect = 0;

  constructor(fn: PciFunction) {
    this.#fn = fn;
  }

  #commonRead(off: number, width: number): number {
    const core = this.#fn.core;
    if (commonFieldWidth(off) !== width) return this.#badWidth(off, width, false);
    const q = this.#queueSelect;
    switch (off) {
      case 0:
        return this.#deviceFeatureSelect;
      case 4:
        return core.readDeviceFeatures(this.#deviceFeatureSelect);
      case 8:
        return this.#driverFeatureSelect;
      case 12:
        return core.readDriverFeatures(this.#driverFeatureSelect);
      case 16:
      case 26:
        return 0xffff; // VIRTIO_MSI_NO_VECTOR: this function has no MSI-X.
      case 18:
        return core.queueCount;
      case 20:
        return core.readStatus();
      case 21:
        return core.configGeneration & 0xff;
      case 22:
        return q;
      case 24:
        return core.queueSize(q);
      case 28:
        return core.queueReady(q) ? 1 : 0;
      case 30:
        return this.#fn.queueNotifyOff(q);
    }
    if (off >= 32 && off < 56) {
      const part = (off - 32) >> 3;
      return core.queueAddress(q, part, (off >> 2) & 1);
    }
    if (off === 58) return core.queueResetting(q) ? 1 : 0; // queue_reset (§4.1.4.3)
    return 0; // queue_notif_config_data, admin queue fields.
  }

  #commonWrite(off: number, width: number, value: number): void {
    const core = this.#fn.core;
    if (commonFieldWidth(off) !== width) {
      this.#badWidth(off, width, true);
      return;
    }
    const q = this.#queueSelect;
    switch (off) {
      case 0:
        this.#deviceFeatureSelect = value >>> 0;
        return;
      case 8:
        this.#driverFeatureSelect = value >>> 0;
        return;
      case 12:
        core.writeDriverFeatures(this.#driverFeatureSelect, value);
        return;
      case 16:
      case 26:
        return; // No MSI-X: the vector stays VIRTIO_MSI_NO_VECTOR.
      case 20:
        core.writeStatus(value);
        return;
      case 22:
        this.#queueSelect = value;
        return;
      case 24:
        core.setQueueSize(q, value);
        return;
      case 28:
        if (value === 0) {
          core.violation(`virtio 1.3 §4.1.4.3.2: driver wrote 0 to queue_enable of queue ${q}`);
          return;
        }
        core.setQueueReady(q, true);
        return;
      case 58:
        if (value === 1) core.resetQueue(q);
        return;
    }
    if (off >= 32 && off < 56) {
      const part = (off - 32) >> 3;
      const which = part === 0 ? QUEUE_DESC : part === 1 ? QUEUE_DRIVER : QUEUE_DEVICE;
      core.setQueueAddress(q, which, (off >> 2) & 1, value);
      return;
    }
    core.violation(
      `virtio 1.3 §4.1.4.3.2: write of read-only common cfg field at ${hex(off)}`,
    );
  }

  #badWidth(off: number, width: number, write: boolean): number {
    this.#fn.core.violation(
      `virtio 1.3 §4.1.3.1: ${width * 8}-bit ${write ? "write" : "read"} at common cfg ` +
        `${hex(off)} does not match a field's width`,
    );
    return 0;
  }

  #read(offset: number, width: number): number {
    checkAccess(offset, width, this.size);
    const core = this.#fn.core;
    if (offset < ISR_BASE) return this.#commonRead(offset - COMMON_BASE, width);
    if (offset < DEVICE_BASE) {
      if (offset === ISR_BASE && width === 1) return core.takeInterruptStatus();
      core.violation(`virtio 1.3 §4.1.4.5: ${width * 8}-bit read in the ISR region`);
      return 0;
    }
    if (offset < NOTIFY_BASE) return core.readConfig(offset - DEVICE_BASE, width);
    core.violation(`virtio 1.3 §4.1.4.4: read of notify region at ${hex(offset)}`);
    return 0;
  }

  #write(offset: number, width: number, value: number): void {
    checkAccess(offset, width, this.size);
    const core = this.#fn.core;
    if (offset < ISR_BASE) {
      this.#commonWrite(offset - COMMON_BASE, width, value);
    } else if (offset < DEVICE_BASE) {
      core.violation(`virtio 1.3 §4.1.4.5: write to the read-only ISR region`);
    } else if (offset < NOTIFY_BASE) {
      core.writeConfig(offset - DEVICE_BASE, width, value);
    } else {
      this.#fn.notifyWrite(offset - NOTIFY_BASE, width, value);
    }
  }

  read8(offset: number): number {
    return this.#read(offset, 1);
  }
  read16(offset: number): number {
    return this.#read(offset, 2);
  }
  read32(offset: number): number {
    return this.#read(offset, 4) >>> 0;
  }
  write8(offset: number, value: number): void {
    this.#write(offset, 1, value & 0xff);
  }
  write16(offset: number, value: number): void {
    this.#write(offset, 2, value & 0xffff);
  }
  write32(offset: number, value: number): void {
    this.#write(offset, 4, value >>> 0);
  }
}

/** A modern virtio-pci function in memory: config space plus BAR 4. */
export class PciFunction {
  /** The generic device core (violations, faults, queues). */
  readonly core: VirtioCore;
  /** The 256-byte PCI config space. */
  readonly config: RegisterSpace;
  /** `notify_off_multiplier` of the standard NOTIFY capability. */
  readonly notifyMultiplier: number;
  #bar4: VirtioBar;
  #queueNotifyOff: readonly number[] | null;

  /** Creates the function for `model` over `memory`; see {@link PciFunctionOptions}. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: PciFunctionOptions = {}) {
    this.core = new VirtioCore(model, memory, options);
    this.notifyMultiplier = options.notifyMultiplier ?? 4;
    this.#queueNotifyOff = options.queueNotifyOff ?? null;
    this.#bar4 = new VirtioBar(this);
    const config = new PciConfigSpace(this.core);
    this.config = config;
    PciFunction.#buildConfig(config, model, options, this.notifyMultiplier);
  }

  static #buildConfig(
    config: PciConfigSpace,
    model: DeviceModel,
    options: PciFunctionOptions,
    multiplier: number,
  ): void {
    const v = config.view;
    v.setUint16(0x00, options.vendorId ?? PCI_VENDOR_VIRTIO, true);
    v.setUint16(0x02, options.pciDeviceId ?? 0x1040 + model.deviceId, true);
    v.setUint16(0x06, options.capabilityList === false ? 0 : 0x10, true);
    v.setUint8(0x08, options.revision ?? 1);
    v.setUint8(0x0b, 0xff); // class: unassigned
    v.setUint32(0x20, 0xfe00000c, true); // BAR 4: 64-bit prefetchable memory
    v.setUint16(0x2c, PCI_VENDOR_VIRTIO, true);
    v.setUint16(0x2e, options.subsystemId ?? 0x1100, true);
    v.setUint8(0x3d, 1); // INTA#
    const omit = options.omitCaps ?? [];
    const standard: PciCapSpec[] = [
      { cfgType: PCI_CAP_COMMON_CFG, bar: VIRTIO_BAR, offset: COMMON_BASE, length: REGION_SIZE },
      { cfgType: PCI_CAP_ISR_CFG, bar: VIRTIO_BAR, offset: ISR_BASE, length: REGION_SIZE },
      { cfgType: PCI_CAP_DEVICE_CFG, bar: VIRTIO_BAR, offset: DEVICE_BASE, length: REGION_SIZE },
      {
        cfgType: PCI_CAP_NOTIFY_CFG,
        bar: VIRTIO_BAR,
        offset: NOTIFY_BASE,
        length: REGION_SIZE,
        multiplier,
      },
      { cfgType: PCI_CAP_PCI_CFG, bar: 0, offset: 0, length: 0 },
    ].filter((c) => !omit.includes(c.cfgType));
    const caps = [...(options.capsBefore ?? []), ...standard, ...(options.capsAfter ?? [])];
    let at = CAP_START;
    let prevNext = 0x34;
    for (const cap of caps) {
      const vendor = cap.vendor ?? 0x09;
      const len = cap.cfgType === PCI_CAP_NOTIFY_CFG || cap.cfgType === PCI_CAP_PCI_CFG ? 20 : 16;
      if (at + len > 256) throw new RangeError("Too many capabilities for PCI config space");
      v.setUint8(prevNext, at);
      v.setUint8(at, vendor);
      v.setUint8(at + 2, len);
      v.setUint8(at + 3, cap.cfgType);
      v.setUint8(at + 4, cap.bar);
      v.setUint32(at + 8, cap.offset, true);
      v.setUint32(at + 12, cap.length, true);
      if (cap.cfgType === PCI_CAP_NOTIFY_CFG) v.setUint32(at + 16, cap.multiplier ?? 4, true);
      // The driver may write only the PCI_CFG capability's body (virtio 1.3 §4.1.4.9).
      if (vendor === 0x09) {
        config.protect(at, cap.cfgType === PCI_CAP_PCI_CFG ? at + 4 : at + len);
      }
      prevNext = at + 1;
      at += len;
    }
    v.setUint8(prevNext, options.lastNext ?? 0);
  }

  /** The register window of BAR `index`: BAR 4 holds the virtio structures, others are null. */
  bar(index: number): RegisterSpace | null {
    return index === VIRTIO_BAR ? this.#bar4 : null;
  }

  /** `queue_notify_off` of queue `index`. */
  queueNotifyOff(index: number): number {
    if (index >= this.core.queueCount) return 0;
    return this.#queueNotifyOff?.[index] ?? index;
  }

  /** Handles a driver write at `offset` in the notify region (virtio 1.3 §4.1.4.4). */
  notifyWrite(offset: number, width: number, value: number): void {
    const core = this.core;
    if (width !== 2) {
      core.violation(
        `virtio 1.3 §4.1.5.2: ${width * 8}-bit notify write; a 16-bit queue index is required`,
      );
      return;
    }
    let queue = -1;
    const mult = this.notifyMultiplier;
    if (mult === 0) {
      queue = value;
    } else {
      for (let i = 0; i < core.queueCount; i++) {
        if (this.queueNotifyOff(i) * mult === offset) {
          queue = i;
          break;
        }
      }
    }
    if (queue < 0) {
      core.violation(
        `virtio 1.3 §4.1.4.4: notify write at ${hex(offset)} matches no queue`,
      );
      return;
    }
    if (value !== queue) {
      core.violation(
        `virtio 1.3 §4.1.5.2: notify write for queue ${queue} carries index ${value}`,
      );
      return;
    }
    core.notify(queue);
  }
}
