/**
 * An in-memory virtio-mmio version 2 register file (virtio 1.3 §4.2.2) in front of a
 * {@link VirtioCore} and a {@link DeviceModel}: what a driver's `MmioTransport` talks to in
 * tests. Registers below 0x100 take aligned 32-bit accesses only; the device config from 0x100
 * takes 8-, 16- and 32-bit accesses.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { MMIO_MAGIC_VALUE, MMIO_VERSION_MODERN, MmioLegacyReg, MmioReg } from "../spec/mmio.ts";
import { checkAccess, type RegisterSpace } from "../transport/registers.ts";
import type { SimulatedMemory } from "../transport/memory.ts";
import type { DeviceModel } from "./device.ts";
import {
  QUEUE_DESC,
  QUEUE_DEVICE,
  QUEUE_DRIVER,
  VirtioCore,
  type VirtioCoreOptions,
} from "./virtio_core.ts";
import { LevelLine, MockInterruptSource } from "./interrupts.ts";

/** Offset of the device config area. */
const CONFIG = MmioReg.CONFIG;

/** Options for {@link MmioDevice}. */
export interface MmioDeviceOptions extends VirtioCoreOptions {
  /** Value of the Version register; default 2. Use 1 to emulate a legacy device. */
  version?: number;
  /** Value of the VendorID register; default 0x554d4551 ("QEMU"). */
  vendorId?: number;
  /** Value of the MagicValue register; default 0x74726976. */
  magic?: number;
  /** Value of the DeviceID register; default the model's device ID. */
  deviceId?: number;
}

/** The virtio-mmio register file of one device. */
export class MmioDevice implements RegisterSpace {
  /** Size of the window: 0x200, or more when the device config is larger than 0x100. */
  readonly size: number;
  /** The generic device core (violations, faults, queues). */
  readonly core: VirtioCore;
  #version: number;
  #vendorId: number;
  #magic: number;
  #deviceId: number;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #queueSel = 0;
  #shmSel = 0;
  /** The device's interrupt line: asserted while InterruptStatus is not 0 (§4.2.2). */
  #line = new LevelLine();

  /** Creates the register file for `model` over `memory`. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: MmioDeviceOptions = {}) {
    this.core = new VirtioCore(model, memory, options);
    this.#version = options.version ?? MMIO_VERSION_MODERN;
    this.#vendorId = options.vendorId ?? 0x554d4551;
    this.#magic = options.magic ?? MMIO_MAGIC_VALUE;
    this.#deviceId = options.deviceId ?? model.deviceId;
    this.size = CONFIG + Math.max(0x100, (model.configSize + 3) & ~3);
    this.core.onInterrupt = () => this.#updateLine();
  }

  /**
   * The device's interrupt line as a platform would deliver it (masked when it fires until the
   * driver unmasks it, like a uio or VFIO line): pass it as `MmioTransport`'s `interrupts`.
   * The same source every call until it is closed.
   */
  interrupts(): MockInterruptSource {
    const known = this.#line.source;
    if (known !== null && !known.closed) return known;
    const source = new MockInterruptSource("line", 1, () => {
      this.#line.setMasked(false);
      this.#updateLine();
    });
    this.#line.setMasked(false);
    this.#line.source = source;
    this.#updateLine();
    return source;
  }

  #updateLine(): void {
    this.#line.update(this.core.interruptStatus !== 0);
  }

  /** Returns true for a config-area access, false (with a violation) for a bad register access. */
  #route(offset: number, width: number, write: boolean): boolean {
    checkAccess(offset, width, this.size);
    if (offset >= CONFIG) return true;
    if (width !== 4) {
      this.core.violation(
        `virtio 1.3 §4.2.2.2: ${width * 8}-bit ${write ? "write" : "read"} of register ` +
          `${hex(offset)}; only 32-bit accesses are allowed`,
      );
    }
    return false;
  }

  /** Reads a byte of device config (register accesses must be 32-bit). */
  read8(offset: number): number {
    if (!this.#route(offset, 1, false)) return 0;
    return this.core.readConfig(offset - CONFIG, 1);
  }

  /** Reads 16 bits of device config (register accesses must be 32-bit). */
  read16(offset: number): number {
    if (!this.#route(offset, 2, false)) return 0;
    return this.core.readConfig(offset - CONFIG, 2);
  }

  /** Reads a register or 32 bits of device config. */
  read32(offset: number): number {
    checkAccess(offset, 4, this.size);
    if (offset >= CONFIG) return this.core.readConfig(offset - CONFIG, 4) >>> 0;
    const core = this.core;
    switch (offset) {
      case MmioReg.MAGIC_VALUE:
        return this.#magic;
      case MmioReg.VERSION:
        return this.#version;
      case MmioReg.DEVICE_ID:
        return this.#deviceId;
      case MmioReg.VENDOR_ID:
        return this.#vendorId;
      case MmioReg.DEVICE_FEATURES:
        return core.readDeviceFeatures(this.#deviceFeaturesSel);
      case MmioReg.QUEUE_SIZE_MAX:
        return core.queueMax(this.#queueSel);
      case MmioReg.QUEUE_READY:
        return core.queueReady(this.#queueSel) ? 1 : 0;
      case MmioReg.INTERRUPT_STATUS:
        return core.interruptStatus;
      case MmioReg.STATUS:
        return core.readStatus();
      case MmioReg.SHM_LEN_LOW:
      case MmioReg.SHM_LEN_HIGH:
      case MmioReg.SHM_BASE_LOW:
      case MmioReg.SHM_BASE_HIGH:
        // No shared memory regions: length and base read as all ones (virtio 1.3 §4.2.2).
        return 0xffff_ffff;
      case MmioReg.QUEUE_RESET:
        return core.queueResetting(this.#queueSel) ? 1 : 0; // QueueReset (§4.2.2)
      case MmioReg.CONFIG_GENERATION:
        return core.configGeneration;
    }
    this.core.violation(
      `virtio 1.3 §4.2.2.2: read of write-only or reserved register ${hex(offset)}`,
    );
    return 0;
  }

  /** Writes a byte of device config (register accesses must be 32-bit). */
  write8(offset: number, value: number): void {
    if (this.#route(offset, 1, true)) this.core.writeConfig(offset - CONFIG, 1, value & 0xff);
  }

  /** Writes 16 bits of device config (register accesses must be 32-bit). */
  write16(offset: number, value: number): void {
    if (this.#route(offset, 2, true)) {
      this.core.writeConfig(offset - CONFIG, 2, value & 0xffff);
    }
  }

  /** Writes a register or 32 bits of device config. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    value >>>= 0;
    const core = this.core;
    if (offset >= CONFIG) {
      core.writeConfig(offset - CONFIG, 4, value);
      return;
    }
    const q = this.#queueSel;
    switch (offset) {
      case MmioReg.DEVICE_FEATURES_SEL:
        this.#deviceFeaturesSel = value;
        return;
      case MmioReg.DRIVER_FEATURES:
        core.writeDriverFeatures(this.#driverFeaturesSel, value);
        return;
      case MmioReg.DRIVER_FEATURES_SEL:
        this.#driverFeaturesSel = value;
        return;
      case MmioReg.QUEUE_SEL:
        this.#queueSel = value;
        return;
      case MmioReg.QUEUE_SIZE:
        core.setQueueSize(q, value);
        return;
      case MmioReg.QUEUE_READY:
        core.setQueueReady(q, value !== 0);
        return;
      case MmioReg.QUEUE_NOTIFY:
        core.notify(value & 0xffff);
        return;
      case MmioReg.INTERRUPT_ACK:
        core.ackInterrupt(value);
        this.#updateLine();
        return;
      case MmioReg.STATUS:
        core.writeStatus(value);
        return;
      case MmioReg.QUEUE_DESC_LOW:
      case MmioReg.QUEUE_DESC_HIGH:
        core.setQueueAddress(q, QUEUE_DESC, (offset >> 2) & 1, value);
        return;
      case MmioReg.QUEUE_DRIVER_LOW:
      case MmioReg.QUEUE_DRIVER_HIGH:
        core.setQueueAddress(q, QUEUE_DRIVER, (offset >> 2) & 1, value);
        return;
      case MmioReg.QUEUE_DEVICE_LOW:
      case MmioReg.QUEUE_DEVICE_HIGH:
        core.setQueueAddress(q, QUEUE_DEVICE, (offset >> 2) & 1, value);
        return;
      case MmioReg.SHM_SEL:
        this.#shmSel = value;
        return;
      case MmioReg.QUEUE_RESET:
        if (value === 1) core.resetQueue(q);
        return;
    }
    if (
      offset === MmioLegacyReg.GUEST_PAGE_SIZE || offset === MmioLegacyReg.QUEUE_ALIGN ||
      offset === MmioLegacyReg.QUEUE_PFN
    ) {
      core.violation(
        `virtio 1.3 §4.2.4: legacy register ${hex(offset)} written on a version 2 device`,
      );
      return;
    }
    core.violation(
      `virtio 1.3 §4.2.2.2: write of read-only or reserved register ${hex(offset)}`,
    );
  }

  /** The last value written to SHMSel (no shared memory regions exist). */
  get shmSel(): number {
    return this.#shmSel;
  }
}
