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
import { readSelected64, type RegisterSpace, write64, writeSelected64 } from "./registers.ts";
import { type QueueAddresses, type Transport, TransportError } from "./transport.ts";
import { checkQueueIndex, checkQueueSize } from "./_queue_checks.ts";
import type { InterruptSource } from "./interrupt_source.ts";
import {
  type PciBarAccessor,
  type PciCapLocation,
  type PciLayout,
  walkCapabilities,
} from "./pci_caps.ts";

export {
  type PciBarAccessor,
  type PciCapLocation,
  type PciCapWalk,
  type PciLayout,
  walkCapabilities,
} from "./pci_caps.ts";
import {
  CommonCfg,
  PCI_CFG_DEVICE,
  PCI_CFG_REVISION,
  PCI_CFG_SPACE_SIZE,
  PCI_CFG_STATUS,
  PCI_CFG_SUBSYSTEM,
  PCI_CFG_VENDOR,
  PCI_STATUS_CAP_LIST,
  VIRTIO_PCI_MODERN_BASE,
  VIRTIO_PCI_MODERN_LAST,
  VIRTIO_PCI_TRANSITIONAL_FIRST,
  VIRTIO_PCI_TRANSITIONAL_LAST,
  VIRTIO_PCI_VENDOR,
  VirtioPciCap,
} from "../spec/pci.ts";

/** Bytes of common cfg that hold queue_reset (VIRTIO_F_RING_RESET, §4.1.4.3). */
const COMMON_RESET_LENGTH = CommonCfg.QUEUE_RESET + 2;
const CAP_NAMES = ["", "COMMON", "NOTIFY", "ISR", "DEVICE"];
/** The structures a modern driver needs, by `cfg_type` (virtio 1.3 §4.1.4). */
const REQUIRED_CAPS = [
  VirtioPciCap.COMMON,
  VirtioPciCap.NOTIFY,
  VirtioPciCap.ISR,
  VirtioPciCap.DEVICE,
];

/** Options of {@link PciTransport}. */
export interface PciTransportOptions {
  /**
   * The function's interrupts as the platform delivers them: its INTx line (uio_pci_generic,
   * VFIO INTx) or its MSI-X vectors (VFIO). Default none: the driver polls.
   */
  interrupts?: InterruptSource | null;
}

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
  /** The function's INTx line or MSI-X vectors, or null. */
  readonly interrupts: InterruptSource | null;
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
  constructor(config: RegisterSpace, bar: PciBarAccessor, options: PciTransportOptions = {}) {
    if (config.size < PCI_CFG_SPACE_SIZE) {
      throw new RangeError(`PCI config space of ${config.size} bytes is smaller than 256`);
    }
    const vendor = config.read16(PCI_CFG_VENDOR);
    const id = config.read16(PCI_CFG_DEVICE);
    if (vendor !== VIRTIO_PCI_VENDOR) {
      throw new TransportError(
        `Not a virtio PCI function: vendor ${hex(vendor)}, expected 0x1af4`,
      );
    }
    let deviceId: number;
    let transitional = false;
    if (id >= VIRTIO_PCI_MODERN_BASE && id <= VIRTIO_PCI_MODERN_LAST) {
      deviceId = id - VIRTIO_PCI_MODERN_BASE;
    } else if (id >= VIRTIO_PCI_TRANSITIONAL_FIRST && id <= VIRTIO_PCI_TRANSITIONAL_LAST) {
      transitional = true;
      deviceId = config.read16(PCI_CFG_SUBSYSTEM); // virtio 1.3 §4.1.2.1
    } else {
      throw new TransportError(`Not a virtio PCI function: device ID ${hex(id)}`);
    }
    if (deviceId === 0) {
      throw new TransportError(`Virtio PCI function ${hex(id)} has reserved device ID 0`);
    }
    this.pciDeviceId = id;
    this.deviceId = deviceId;
    this.revision = config.read8(PCI_CFG_REVISION);
    if ((config.read16(PCI_CFG_STATUS) & PCI_STATUS_CAP_LIST) === 0 && !transitional) {
      throw new TransportError("Virtio PCI function has no capability list (status bit 4 clear)");
    }
    const found = walkCapabilities(config, bar);
    const missing = REQUIRED_CAPS.filter((t) => found.caps[t] === null);
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
      common: caps[VirtioPciCap.COMMON],
      notify: caps[VirtioPciCap.NOTIFY],
      isr: caps[VirtioPciCap.ISR],
      device: caps[VirtioPciCap.DEVICE],
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
    this.interrupts = options.interrupts ?? null;
  }

  /** Same as the constructor; reads better at call sites. */
  static create(
    config: RegisterSpace,
    bar: PciBarAccessor,
    options: PciTransportOptions = {},
  ): PciTransport {
    return new PciTransport(config, bar, options);
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
    const c = this.#c;
    return readSelected64(
      this.#common,
      c + CommonCfg.DEVICE_FEATURE_SELECT,
      c + CommonCfg.DEVICE_FEATURE,
    );
  }

  /** Writes the 64 accepted feature bits through driver_feature_select/driver_feature. */
  writeDriverFeatures(features: bigint): void {
    const c = this.#c;
    writeSelected64(
      this.#common,
      c + CommonCfg.DRIVER_FEATURE_SELECT,
      c + CommonCfg.DRIVER_FEATURE,
      features,
    );
  }

  /** Reads `config_generation` (virtio 1.3 §2.5.1). */
  configGeneration(): number {
    return this.#common.read8(this.#c + CommonCfg.CONFIG_GENERATION);
  }

  #configAt(offset: number, width: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.layout.device.length) {
      // The device's DEVICE_CFG capability gave the length: a config too short for the device
      // type is the device's fault, typed like the other capability problems (found by fuzzing).
      throw new TransportError(
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
    // §4.1.4.4.1: the multiplier is 0 or an even power of 2, so the 16-bit notify write is
    // aligned; a device breaking that would make the driver's write fault (found by fuzzing).
    if ((rel & 1) !== 0) {
      throw new TransportError(
        `Cannot enable queue ${index}: notify offset ${notifyOff} × ` +
          `${this.layout.notifyOffMultiplier} is not 2-byte aligned`,
      );
    }
    r.write16(c + CommonCfg.QUEUE_SIZE, size);
    write64(r, c + CommonCfg.QUEUE_DESC, addresses.descLo, addresses.descHi);
    write64(r, c + CommonCfg.QUEUE_DRIVER, addresses.driverLo, addresses.driverHi);
    write64(r, c + CommonCfg.QUEUE_DEVICE, addresses.deviceLo, addresses.deviceHi);
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
   * Writes `config_msix_vector` and returns what the device reads back: `vector` when it mapped
   * the configuration change, VIRTIO_MSI_NO_VECTOR when it could not (§4.1.5.1.2.1).
   */
  setConfigVector(vector: number): number {
    checkVector(vector);
    this.#common.write16(this.#c + CommonCfg.CONFIG_MSIX_VECTOR, vector);
    return this.#common.read16(this.#c + CommonCfg.CONFIG_MSIX_VECTOR);
  }

  /**
   * Selects queue `index`, writes its `queue_msix_vector` and returns what the device reads
   * back (§4.1.5.1.2). Part of queue setup: call it before {@link PciTransport.enableQueue}.
   */
  setQueueVector(index: number, vector: number): number {
    checkQueueIndex(index);
    checkVector(vector);
    if (index >= this.numQueues) {
      throw new TransportError(
        `Cannot map queue ${index} to a vector: the device has ${this.numQueues} queues`,
      );
    }
    this.#common.write16(this.#c + CommonCfg.QUEUE_SELECT, index);
    this.#common.write16(this.#c + CommonCfg.QUEUE_MSIX_VECTOR, vector);
    return this.#common.read16(this.#c + CommonCfg.QUEUE_MSIX_VECTOR);
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

/** Throws RangeError unless `vector` is a u16 (an MSI-X table index or NO_VECTOR). */
function checkVector(vector: number): void {
  if (!Number.isInteger(vector) || vector < 0 || vector > 0xffff) {
    throw new RangeError(`Invalid MSI-X vector ${vector}: expected 0..0xffff`);
  }
}
