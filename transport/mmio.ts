/**
 * The virtio-mmio transport, version 2 (virtio 1.3 §4.2.2): the {@link Transport} primitives
 * over a device's register window. A legacy (version 1) device is refused with a clear error
 * rather than misdriven. All registers below 0x100 are accessed with aligned 32-bit accesses.
 *
 * @example
 * ```ts
 * import { MemoryRegisters, MmioTransport } from "@viommu/viommu";
 *
 * const regs = new MemoryRegisters(0x200); // all zeros: not a virtio device
 * try {
 *   MmioTransport.create(regs);
 * } catch (e) {
 *   console.assert((e as Error).message === "Not a virtio-mmio device: magic 0x0");
 * }
 * ```
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { readSelected64, type RegisterSpace, write64, writeSelected64 } from "./registers.ts";
import { type QueueAddresses, type Transport, TransportError } from "./transport.ts";
import { checkQueueIndex, checkQueueSize } from "./_queue_checks.ts";
import type { InterruptSource } from "./interrupt_source.ts";
import {
  MMIO_MAGIC_VALUE,
  MMIO_VERSION_LEGACY,
  MMIO_VERSION_MODERN,
  MmioReg,
} from "../spec/mmio.ts";

/** Options of {@link MmioTransport}. */
export interface MmioTransportOptions {
  /** The device's interrupt line as the platform delivers it (default none: the driver polls). */
  interrupts?: InterruptSource | null;
}

/** The virtio-mmio transport (version 2 devices only). */
export class MmioTransport implements Transport {
  /** Always `"mmio"`. */
  readonly kind = "mmio" as const;
  /** The virtio device ID (never 0: placeholders are refused). */
  readonly deviceId: number;
  /** The Version register (always 2). */
  readonly version: number;
  /** The VendorID register. */
  readonly vendorId: number;
  /** The device's interrupt line, or null (§4.2.2: one line; InterruptStatus says why). */
  readonly interrupts: InterruptSource | null;
  #regs: RegisterSpace;

  /**
   * Checks MagicValue, Version and DeviceID (virtio 1.3 §4.2.2.2) and wraps the registers.
   * Throws {@link TransportError} for anything this driver cannot drive; for a placeholder
   * (DeviceID 0) nothing beyond those three registers is touched.
   */
  constructor(regs: RegisterSpace, options: MmioTransportOptions = {}) {
    if (regs.size < MmioReg.CONFIG) {
      throw new RangeError(
        `Virtio-mmio window of ${hex(regs.size)} bytes is smaller than 0x100`,
      );
    }
    const magic = regs.read32(MmioReg.MAGIC_VALUE);
    if (magic !== MMIO_MAGIC_VALUE) {
      throw new TransportError(`Not a virtio-mmio device: magic ${hex(magic)}`);
    }
    const version = regs.read32(MmioReg.VERSION);
    if (version === MMIO_VERSION_LEGACY) {
      throw new TransportError(
        "Virtio-mmio device is a legacy (version 1) device; this driver drives only " +
          "version 2 (virtio 1.0+) devices",
      );
    }
    if (version !== MMIO_VERSION_MODERN) {
      throw new TransportError(`Unsupported virtio-mmio version ${version}; expected 2`);
    }
    const deviceId = regs.read32(MmioReg.DEVICE_ID);
    if (deviceId === 0) {
      // virtio 1.3 §4.2.2.2: a placeholder; the driver must not touch anything else.
      throw new TransportError("Virtio-mmio device ID is 0: a placeholder with no device");
    }
    this.#regs = regs;
    this.version = version;
    this.deviceId = deviceId;
    this.vendorId = regs.read32(MmioReg.VENDOR_ID);
    const interrupts = options.interrupts ?? null;
    if (interrupts !== null && interrupts.delivery !== "line") {
      throw new TransportError("A virtio-mmio device interrupts through one line, not vectors");
    }
    this.interrupts = interrupts;
  }

  /** Same as the constructor; reads better at call sites. */
  static create(regs: RegisterSpace, options: MmioTransportOptions = {}): MmioTransport {
    return new MmioTransport(regs, options);
  }

  /** Reads the device status byte. */
  getStatus(): number {
    return this.#regs.read32(MmioReg.STATUS) & 0xff;
  }

  /** Writes the device status byte (0 resets the device). */
  setStatus(status: number): void {
    this.#regs.write32(MmioReg.STATUS, status & 0xff);
  }

  /** Reads the 64 offered feature bits, writing DeviceFeaturesSel before each half. */
  readDeviceFeatures(): bigint {
    return readSelected64(this.#regs, MmioReg.DEVICE_FEATURES_SEL, MmioReg.DEVICE_FEATURES);
  }

  /** Writes the 64 accepted feature bits, writing DriverFeaturesSel before each half. */
  writeDriverFeatures(features: bigint): void {
    writeSelected64(this.#regs, MmioReg.DRIVER_FEATURES_SEL, MmioReg.DRIVER_FEATURES, features);
  }

  /** Reads ConfigGeneration (virtio 1.3 §2.5.1). */
  configGeneration(): number {
    return this.#regs.read32(MmioReg.CONFIG_GENERATION);
  }

  /** Reads an 8-bit device config field. */
  readConfig8(offset: number): number {
    return this.#regs.read8(MmioReg.CONFIG + offset);
  }

  /** Reads an aligned 16-bit device config field. */
  readConfig16(offset: number): number {
    return this.#regs.read16(MmioReg.CONFIG + offset);
  }

  /** Reads an aligned 32-bit device config field. */
  readConfig32(offset: number): number {
    return this.#regs.read32(MmioReg.CONFIG + offset);
  }

  /** Writes an 8-bit device config field. */
  writeConfig8(offset: number, value: number): void {
    this.#regs.write8(MmioReg.CONFIG + offset, value);
  }

  /** Selects queue `index` and reads QueueSizeMax (0: the queue does not exist). */
  maxQueueSize(index: number): number {
    checkQueueIndex(index);
    this.#regs.write32(MmioReg.QUEUE_SEL, index);
    return this.#regs.read32(MmioReg.QUEUE_SIZE_MAX);
  }

  /**
   * Sets up queue `index` in the order of virtio 1.3 §4.2.3.2: select, check QueueReady is 0,
   * read the maximum, write QueueSize, the three addresses (low half first), then QueueReady.
   */
  enableQueue(index: number, size: number, addresses: QueueAddresses): void {
    checkQueueIndex(index);
    const regs = this.#regs;
    regs.write32(MmioReg.QUEUE_SEL, index);
    if (regs.read32(MmioReg.QUEUE_READY) !== 0) {
      throw new TransportError(`Cannot enable queue ${index}: it is already enabled`);
    }
    const max = regs.read32(MmioReg.QUEUE_SIZE_MAX);
    if (max === 0) {
      throw new TransportError(`Cannot enable queue ${index}: the device does not have it`);
    }
    checkQueueSize(index, size, max);
    regs.write32(MmioReg.QUEUE_SIZE, size);
    // Each High register follows its Low one at +4 (§4.2.2), as write64 writes them.
    write64(regs, MmioReg.QUEUE_DESC_LOW, addresses.descLo, addresses.descHi);
    write64(regs, MmioReg.QUEUE_DRIVER_LOW, addresses.driverLo, addresses.driverHi);
    write64(regs, MmioReg.QUEUE_DEVICE_LOW, addresses.deviceLo, addresses.deviceHi);
    regs.write32(MmioReg.QUEUE_READY, 1);
  }

  /** Writes the queue index to QueueNotify. Allocation-free. */
  notify(index: number): void {
    this.#regs.write32(MmioReg.QUEUE_NOTIFY, index);
  }

  /** Selects queue `index` and writes 1 to QueueReset (VIRTIO_F_RING_RESET, §4.2.2). */
  resetQueue(index: number): void {
    checkQueueIndex(index);
    this.#regs.write32(MmioReg.QUEUE_SEL, index);
    this.#regs.write32(MmioReg.QUEUE_RESET, 1);
  }

  /** Selects queue `index` and reads QueueReset: 1 while its reset is in progress (§4.2.2.1). */
  queueResetPending(index: number): boolean {
    checkQueueIndex(index);
    this.#regs.write32(MmioReg.QUEUE_SEL, index);
    return this.#regs.read32(MmioReg.QUEUE_RESET) !== 0;
  }

  /** Selects queue `index` and reads QueueReady. */
  queueEnabled(index: number): boolean {
    checkQueueIndex(index);
    this.#regs.write32(MmioReg.QUEUE_SEL, index);
    return this.#regs.read32(MmioReg.QUEUE_READY) !== 0;
  }

  /** Reads InterruptStatus and acknowledges the bits it saw through InterruptACK. */
  takeInterrupt(): number {
    const status = this.#regs.read32(MmioReg.INTERRUPT_STATUS);
    if (status !== 0) this.#regs.write32(MmioReg.INTERRUPT_ACK, status);
    return status;
  }
}
