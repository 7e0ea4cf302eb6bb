/**
 * An in-memory virtio-mmio version 2 register file (virtio 1.3 §4.2.2) in front of a
 * {@link VirtioCore} and a {@link DeviceModel}: what a driver's `MmioTransport` talks to in
 * tests. Registers below 0x100 take aligned 32-bit accesses only; the device config from 0x100
 * takes 8-, 16- and 32-bit accesses.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
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

/** "virt" in little-endian, the MagicValue of every virtio-mmio device. */
export const MMIO_MAGIC = 0x74726976;
/** Offset of the device config area. */
export const MMIO_CONFIG = 0x100;

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

  /** Creates the register file for `model` over `memory`. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: MmioDeviceOptions = {}) {
    this.core = new VirtioCore(model, memory, options);
    this.#version = options.version ?? 2;
    this.#vendorId = options.vendorId ?? 0x554d4551;
    this.#magic = options.magic ?? MMIO_MAGIC;
    this.#deviceId = options.deviceId ?? model.deviceId;
    this.size = MMIO_CONFIG + Math.max(0x100, (model.configSize + 3) & ~3);
  }

  /** Returns true for a config-area access, false (with a violation) for a bad register access. */
  #route(offset: number, width: number, write: boolean): boolean {
    checkAccess(offset, width, this.size);
    if (offset >= MMIO_CONFIG) return true;
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
    return this.core.readConfig(offset - MMIO_CONFIG, 1);
  }

  /** Reads 16 bits of device config (register accesses must be 32-bit). */
  read16(offset: number): number {
    if (!this.#route(offset, 2, false)) return 0;
    return this.core.readConfig(offset - MMIO_CONFIG, 2);
  }

  /** Reads a register or 32 bits of device config. */
  read32(offset: number): number {
    checkAccess(offset, 4, this.size);
    if (offset >= MMIO_CONFIG) return this.core.readConfig(offset - MMIO_CONFIG, 4) >>> 0;
    const core = this.core;
    switch (offset) {
      case 0x000:
        return this.#magic;
      case 0x004:
        return this.#version;
      case 0x008:
        return this.#deviceId;
      case 0x00c:
        return this.#vendorId;
      case 0x010:
        return core.readDeviceFeatures(this.#deviceFeaturesSel);
      case 0x034:
        return core.queueMax(this.#queueSel);
      case 0x044:
        return core.queueReady(this.#queueSel) ? 1 : 0;
      case 0x060:
        return core.interruptStatus;
      case 0x070:
        return core.readStatus();
      case 0x0b0:
      case 0x0b4:
      case 0x0b8:
      case 0x0bc:
        // No shared memory regions: length and base read as all ones (virtio 1.3 §4.2.2).
        return 0xffff_ffff;
      case 0x0c0:
        return core.queueResetting(this.#queueSel) ? 1 : 0; // QueueReset (§4.2.2)
      case 0x0fc:
        return core.configGeneration;
    }
    this.core.violation(
      `virtio 1.3 §4.2.2.2: read of write-only or reserved register ${hex(offset)}`,
    );
    return 0;
  }

  /** Writes a byte of device config (register accesses must be 32-bit). */
  write8(offset: number, value: number): void {
    if (this.#route(offset, 1, true)) this.core.writeConfig(offset - MMIO_CONFIG, 1, value & 0xff);
  }

  /** Writes 16 bits of device config (register accesses must be 32-bit). */
  write16(offset: number, value: number): void {
    if (this.#route(offset, 2, true)) {
      this.core.writeConfig(offset - MMIO_CONFIG, 2, value & 0xffff);
    }
  }

  /** Writes a register or 32 bits of device config. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    value >>>= 0;
    const core = this.core;
    if (offset >= MMIO_CONFIG) {
      core.writeConfig(offset - MMIO_CONFIG, 4, value);
      return;
    }
    const q = this.#queueSel;
    switch (offset) {
      case 0x014:
        this.#deviceFeaturesSel = value;
        return;
      case 0x020:
        core.writeDriverFeatures(this.#driverFeaturesSel, value);
        return;
      case 0x024:
        this.#driverFeaturesSel = value;
        return;
      case 0x030:
        this.#queueSel = value;
        return;
      case 0x038:
        core.setQueueSize(q, value);
        return;
      case 0x044:
        core.setQueueReady(q, value !== 0);
        return;
      case 0x050:
        core.notify(value & 0xffff);
        return;
      case 0x064:
        core.ackInterrupt(value);
        return;
      case 0x070:
        core.writeStatus(value);
        return;
      case 0x080:
      case 0x084:
        core.setQueueAddress(q, QUEUE_DESC, (offset >> 2) & 1, value);
        return;
      case 0x090:
      case 0x094:
        core.setQueueAddress(q, QUEUE_DRIVER, (offset >> 2) & 1, value);
        return;
      case 0x0a0:
      case 0x0a4:
        core.setQueueAddress(q, QUEUE_DEVICE, (offset >> 2) & 1, value);
        return;
      case 0x0ac:
        this.#shmSel = value;
        return;
      case 0x0c0:
        if (value === 1) core.resetQueue(q);
        return;
    }
    if (offset === 0x028 || offset === 0x03c || offset === 0x040) {
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
