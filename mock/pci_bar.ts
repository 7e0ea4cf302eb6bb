/**
 * BAR 4 of the mock virtio-pci function, laid out like QEMU's: common cfg at 0x0, ISR at
 * 0x1000, device cfg at 0x2000, notify at 0x3000 (16 KiB). It decodes driver accesses into
 * {@link VirtioCore} calls: the common cfg by field and width (virtio 1.3 §4.1.4.3, §4.1.3.1),
 * the ISR byte that clears on read (§4.1.4.5), device config, and notify writes, which it
 * hands to the function that knows each queue's notify offset (§4.1.4.4).
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { checkAccess, type RegisterSpace } from "../transport/registers.ts";
import { CommonCfg, commonCfgFieldWidth } from "../spec/pci.ts";
import type { PciInterrupts } from "./pci_interrupts.ts";
import { QUEUE_DESC, QUEUE_DEVICE, QUEUE_DRIVER, type VirtioCore } from "./virtio_core.ts";

/** Offset of the common cfg inside BAR 4, as QEMU lays it out. */
export const COMMON_BASE = 0x0000;
/** Offset of the ISR byte. */
export const ISR_BASE = 0x1000;
/** Offset of the device config. */
export const DEVICE_BASE = 0x2000;
/** Offset of the notify area. */
export const NOTIFY_BASE = 0x3000;
/** Size of each of the four regions. */
export const REGION_SIZE = 0x1000;
/** Size of BAR 4. */
export const BAR4_SIZE = 0x4000;
/** The BAR the virtio structures live in. */
export const VIRTIO_BAR = 4;

/** What BAR 4 needs of its function: the core, its interrupts, and each queue's notify offset. */
export interface VirtioBarOwner {
  /** The generic device core. */
  readonly core: VirtioCore;
  /** The function's INTx line and MSI-X vectors. */
  readonly irq: PciInterrupts;
  /** `queue_notify_off` of queue `index`. */
  queueNotifyOff(index: number): number;
  /** Handles a driver write at `offset` in the notify region. */
  notifyWrite(offset: number, width: number, value: number): void;
}

/** BAR 4: common cfg, ISR, device cfg and notify regions. */
export class VirtioBar implements RegisterSpace {
  readonly size = BAR4_SIZE;
  readonly #fn: VirtioBarOwner;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #queueSelect = 0;

  /** BAR 4 of `fn`. */
  constructor(fn: VirtioBarOwner) {
    this.#fn = fn;
  }

  #commonRead(off: number, width: number): number {
    const core = this.#fn.core;
    if (commonCfgFieldWidth(off) !== width) return this.#badWidth(off, width, false);
    const q = this.#queueSelect;
    switch (off) {
      case CommonCfg.DEVICE_FEATURE_SELECT:
        return this.#deviceFeatureSelect;
      case CommonCfg.DEVICE_FEATURE:
        return core.readDeviceFeatures(this.#deviceFeatureSelect);
      case CommonCfg.DRIVER_FEATURE_SELECT:
        return this.#driverFeatureSelect;
      case CommonCfg.DRIVER_FEATURE:
        return core.readDriverFeatures(this.#driverFeatureSelect);
      case CommonCfg.CONFIG_MSIX_VECTOR:
        return this.#fn.irq.configVector; // VIRTIO_MSI_NO_VECTOR without MSI-X
      case CommonCfg.QUEUE_MSIX_VECTOR:
        return this.#fn.irq.queueVector(q);
      case CommonCfg.NUM_QUEUES:
        return core.queueCount;
      case CommonCfg.DEVICE_STATUS:
        return core.readStatus();
      case CommonCfg.CONFIG_GENERATION:
        return core.configGeneration & 0xff;
      case CommonCfg.QUEUE_SELECT:
        return q;
      case CommonCfg.QUEUE_SIZE:
        return core.queueSize(q);
      case CommonCfg.QUEUE_ENABLE:
        return core.queueReady(q) ? 1 : 0;
      case CommonCfg.QUEUE_NOTIFY_OFF:
        return this.#fn.queueNotifyOff(q);
    }
    if (off >= CommonCfg.QUEUE_DESC && off < CommonCfg.QUEUE_NOTIF_CONFIG_DATA) {
      const part = (off - CommonCfg.QUEUE_DESC) >> 3;
      return core.queueAddress(q, part, (off >> 2) & 1);
    }
    if (off === CommonCfg.QUEUE_RESET) return core.queueResetting(q) ? 1 : 0; // §4.1.4.3
    return 0; // queue_notif_config_data, admin queue fields.
  }

  #commonWrite(off: number, width: number, value: number): void {
    const core = this.#fn.core;
    if (commonCfgFieldWidth(off) !== width) {
      this.#badWidth(off, width, true);
      return;
    }
    const q = this.#queueSelect;
    switch (off) {
      case CommonCfg.DEVICE_FEATURE_SELECT:
        this.#deviceFeatureSelect = value >>> 0;
        return;
      case CommonCfg.DRIVER_FEATURE_SELECT:
        this.#driverFeatureSelect = value >>> 0;
        return;
      case CommonCfg.DRIVER_FEATURE:
        core.writeDriverFeatures(this.#driverFeatureSelect, value);
        return;
      case CommonCfg.CONFIG_MSIX_VECTOR:
        this.#fn.irq.setConfigVector(value);
        return;
      case CommonCfg.QUEUE_MSIX_VECTOR:
        this.#fn.irq.setQueueVector(q, value);
        return;
      case CommonCfg.DEVICE_STATUS:
        core.writeStatus(value);
        if ((value & 0xff) === 0) this.#fn.irq.resetVectors();
        return;
      case CommonCfg.QUEUE_SELECT:
        this.#queueSelect = value;
        return;
      case CommonCfg.QUEUE_SIZE:
        core.setQueueSize(q, value);
        return;
      case CommonCfg.QUEUE_ENABLE:
        if (value === 0) {
          core.violation(`virtio 1.3 §4.1.4.3.2: driver wrote 0 to queue_enable of queue ${q}`);
          return;
        }
        core.setQueueReady(q, true);
        return;
      case CommonCfg.QUEUE_RESET:
        if (value === 1) core.resetQueue(q);
        return;
    }
    if (off >= CommonCfg.QUEUE_DESC && off < CommonCfg.QUEUE_NOTIF_CONFIG_DATA) {
      const part = (off - CommonCfg.QUEUE_DESC) >> 3;
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
      if (offset === ISR_BASE && width === 1) {
        // §4.1.4.5.1: reading the ISR clears it and deasserts INTx.
        const isr = core.takeInterruptStatus();
        this.#fn.irq.updateLine();
        return isr;
      }
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
