/**
 * The generic virtio device core of the test harness: status byte, feature negotiation,
 * per-queue registers (kept in {@link QueueRegisters}), interrupts and config generation,
 * written once and shared by the MMIO register file and the PCI function (they differ only in
 * where the registers are).
 * It implements {@link DeviceContext} for a {@link DeviceModel} and is strict: every driver
 * action that breaks a MUST of the spec is recorded in {@link VirtioCore.violations}.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  statusNames,
} from "../spec/status.ts";
import { hasFeature, VIRTIO_F_VERSION_1 } from "../spec/features.ts";
import type { SimulatedMemory } from "../transport/memory.ts";
import type { DeviceContext, DeviceModel, DeviceQueue } from "./device.ts";
import { SplitDeviceQueue } from "./split_queue.ts";
import { PackedDeviceQueue } from "./packed_queue.ts";
import { QueueRegisters } from "./queue_registers.ts";

export { QUEUE_DESC, QUEUE_DEVICE, QUEUE_DRIVER } from "./queue_registers.ts";

/** Interrupt status bit: a queue has used buffers (virtio 1.3 §4.2.2, §4.1.4.5). */
export const INTERRUPT_USED_BUFFER = 1;
/** Interrupt status bit: the configuration changed (virtio 1.3 §4.2.2, §4.1.4.5). */
export const INTERRUPT_CONFIG_CHANGE = 2;

/** Faults a test can inject into the core; all off by default. */
export interface CoreFaults {
  /** Refuse every FEATURES_OK (leave the bit clear), as a device that dislikes the features. */
  refuseFeatures: boolean;
  /**
   * After a reset, this many status reads still return the old status before 0 shows up, so a
   * driver that does not wait for the reset to complete is caught (virtio 1.3 §4.1.4.3.2).
   */
  resetReads: number;
  /**
   * After a queue reset (VIRTIO_F_RING_RESET), this many reads of queue_reset / QueueReset
   * still return 1 (Infinity: the reset never completes), so a driver that re-enables the
   * queue too early is caught (§4.1.4.3.2, §4.2.2.2).
   */
  queueResetReads: number;
}

/** Options for {@link VirtioCore}. */
export interface VirtioCoreOptions {
  /** Called with each violation as it is recorded (for example to throw in a test). */
  onViolation?: (rule: string) => void;
}

/** The generic device core; front-ends call its register-level methods. */
export class VirtioCore implements DeviceContext {
  /** The device model behind the core. */
  readonly model: DeviceModel;
  /** The simulated memory the driver's DMA regions live in. */
  readonly memory: SimulatedMemory;
  /** Rules the driver broke, in order, each starting with the spec section. */
  readonly violations: string[] = [];
  /** Faults to inject; tests may change them at any time. */
  readonly faults: CoreFaults = { refuseFeatures: false, resetReads: 0, queueResetReads: 0 };
  /** Number of used-buffer interrupts raised since creation. */
  interruptCount = 0;
  /** Why the device last set DEVICE_NEEDS_RESET, or null. */
  needsResetReason: string | null = null;
  /**
   * Called after the core raised an interrupt: {@link INTERRUPT_USED_BUFFER} with the queue
   * index, or {@link INTERRUPT_CONFIG_CHANGE} with -1. The front-end delivers it: the MMIO
   * line, PCI INTx, or the MSI-X vector mapped to that event.
   */
  onInterrupt: ((cause: number, queue: number) => void) | null = null;
  #onViolation: ((rule: string) => void) | null;
  #status = 0;
  #statusBeforeReset = 0;
  #resetReadsLeft = 0;
  #driverFeatures = 0n;
  #negotiated = 0n;
  #interruptStatus = 0;
  #generation = 0;
  #queues: QueueRegisters;

  /** Plugs `model` into a new core over `memory` and calls `model.attach()`. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: VirtioCoreOptions = {}) {
    this.model = model;
    this.memory = memory;
    this.#onViolation = options.onViolation ?? null;
    this.#queues = new QueueRegisters(this, model.queueSizes);
    model.attach(this);
  }

  // ---- DeviceContext ------------------------------------------------------------------------

  /** The device status byte as the device holds it. */
  get status(): number {
    return this.#status;
  }

  /** Features both sides agreed on; 0 until FEATURES_OK is accepted. */
  get negotiated(): bigint {
    return this.#negotiated;
  }

  /** Device side of queue `index`, or null when it is not enabled. */
  queue(index: number): DeviceQueue | null {
    return this.#queues.device(index);
  }

  /** The device queue as a split ring, or null (not enabled, or packed). */
  splitQueue(index: number): SplitDeviceQueue | null {
    const q = this.#queues.device(index);
    return q instanceof SplitDeviceQueue ? q : null;
  }

  /** The device queue as a packed ring, or null (not enabled, or split). */
  packedQueue(index: number): PackedDeviceQueue | null {
    const q = this.#queues.device(index);
    return q instanceof PackedDeviceQueue ? q : null;
  }

  /** Raises a used-buffer interrupt for queue `index` unless the driver suppressed it. */
  interrupt(index: number): void {
    const q = this.#queues.device(index);
    if (!q || (this.#status & STATUS_DRIVER_OK) === 0) return;
    if (q.needsInterrupt()) {
      this.#interruptStatus |= INTERRUPT_USED_BUFFER;
      this.interruptCount++;
      this.onInterrupt?.(INTERRUPT_USED_BUFFER, index);
    }
  }

  /** Sets DEVICE_NEEDS_RESET and, after DRIVER_OK, raises a config-change interrupt. */
  needsReset(reason: string): void {
    if (this.needsResetReason === null) this.needsResetReason = reason;
    this.#status |= STATUS_DEVICE_NEEDS_RESET;
    if ((this.#status & STATUS_DRIVER_OK) !== 0) {
      // virtio 1.3 §2.1.2: after DRIVER_OK the device MUST send a config-change notification.
      this.#interruptStatus |= INTERRUPT_CONFIG_CHANGE;
      this.onInterrupt?.(INTERRUPT_CONFIG_CHANGE, -1);
    }
  }

  /** Records that the driver broke `rule`. */
  violation(rule: string): void {
    this.violations.push(rule);
    this.#onViolation?.(rule);
  }

  /** Forgets the recorded violations. */
  clearViolations(): void {
    this.violations.length = 0;
  }

  /** Bumps the config generation and, after DRIVER_OK, raises a config-change interrupt. */
  configChanged(): void {
    this.#generation = (this.#generation + 1) >>> 0;
    if ((this.#status & STATUS_DRIVER_OK) !== 0) {
      this.#interruptStatus |= INTERRUPT_CONFIG_CHANGE;
      this.onInterrupt?.(INTERRUPT_CONFIG_CHANGE, -1);
    }
  }

  // ---- Status and features ------------------------------------------------------------------

  /** A driver read of the status byte (honours {@link CoreFaults.resetReads}). */
  readStatus(): number {
    if (this.#resetReadsLeft > 0) {
      this.#resetReadsLeft--;
      return this.#statusBeforeReset;
    }
    return this.#status;
  }

  /** A driver write of the status byte (virtio 1.3 §2.1, §3.1.1). */
  writeStatus(value: number): void {
    value &= 0xff;
    if (value === 0) {
      this.#reset();
      return;
    }
    if (this.#resetReadsLeft > 0) {
      this.#resetReadsLeft = 0;
      this.violation(
        "virtio 1.3 §4.1.4.3.2: status written before a read returned 0 after reset",
      );
    }
    const old = this.#status;
    const cleared = old & ~value & ~STATUS_DEVICE_NEEDS_RESET;
    if (cleared !== 0) {
      this.violation(`virtio 1.3 §2.1.1: driver cleared status bit(s) ${statusNames(cleared)}`);
    }
    let next = (value & ~STATUS_DEVICE_NEEDS_RESET) | (old & STATUS_DEVICE_NEEDS_RESET);
    const added = next & ~old;
    if ((added & STATUS_DRIVER) !== 0 && (next & STATUS_ACKNOWLEDGE) === 0) {
      this.violation("virtio 1.3 §3.1.1: DRIVER set without ACKNOWLEDGE");
    }
    if ((added & STATUS_FEATURES_OK) !== 0 && !this.#acceptFeatures(next)) {
      next &= ~STATUS_FEATURES_OK;
    }
    if ((added & STATUS_DRIVER_OK) !== 0 && (next & STATUS_FEATURES_OK) === 0) {
      this.violation("virtio 1.3 §3.1.1: DRIVER_OK set before FEATURES_OK was accepted");
    }
    this.#status = next;
  }

  /** Decides on FEATURES_OK; returns whether the device accepts the driver's features. */
  #acceptFeatures(next: number): boolean {
    if ((next & STATUS_DRIVER) === 0) {
      this.violation("virtio 1.3 §3.1.1: FEATURES_OK set without DRIVER");
    }
    const offered = this.model.features;
    const unoffered = this.#driverFeatures & ~offered;
    if (unoffered !== 0n) {
      this.violation(
        `virtio 1.3 §2.2.1: driver accepted feature bits ${hex(unoffered)} ` +
          "the device did not offer",
      );
      return false;
    }
    if (
      hasFeature(offered, VIRTIO_F_VERSION_1) &&
      !hasFeature(this.#driverFeatures, VIRTIO_F_VERSION_1)
    ) {
      this.violation("virtio 1.3 §6.1: driver did not accept VIRTIO_F_VERSION_1");
      return false;
    }
    if (this.faults.refuseFeatures) return false;
    this.#negotiated = this.#driverFeatures;
    return true;
  }

  #reset(): void {
    this.#statusBeforeReset = this.#status;
    // A slow reset shows the old status for a few reads; from status 0 there is nothing to see,
    // and a driver that reads 0 and goes on is right.
    this.#resetReadsLeft = this.#status === 0 ? 0 : this.faults.resetReads;
    this.#status = 0;
    this.#driverFeatures = 0n;
    this.#negotiated = 0n;
    this.#interruptStatus = 0;
    this.needsResetReason = null;
    this.#queues.reset();
    this.model.reset();
  }

  /** Bits `32·select … 32·select+31` of the offered features (0 for select > 1). */
  readDeviceFeatures(select: number): number {
    if (select !== 0 && select !== 1) return 0;
    return Number((this.model.features >> BigInt(32 * select)) & 0xffff_ffffn);
  }

  /** Bits `32·select …` of the features the driver has written. */
  readDriverFeatures(select: number): number {
    if (select !== 0 && select !== 1) return 0;
    return Number((this.#driverFeatures >> BigInt(32 * select)) & 0xffff_ffffn);
  }

  /** A driver write of feature bits `32·select …` (only between DRIVER and FEATURES_OK). */
  writeDriverFeatures(select: number, value: number): void {
    if ((this.#status & STATUS_DRIVER) === 0 || (this.#status & STATUS_FEATURES_OK) !== 0) {
      this.violation(
        `virtio 1.3 §3.1.1: driver features written in status ${statusNames(this.#status)}, ` +
          "not between DRIVER and FEATURES_OK",
      );
      return;
    }
    if (select !== 0 && select !== 1) {
      if (value !== 0) {
        this.violation(`virtio 1.3 §2.2.1: driver accepted feature bits in select ${select}`);
      }
      return;
    }
    const shift = BigInt(32 * select);
    this.#driverFeatures = (this.#driverFeatures & ~(0xffff_ffffn << shift)) |
      (BigInt(value >>> 0) << shift);
  }

  // ---- Interrupts and config ----------------------------------------------------------------

  /** The interrupt status bits (MMIO InterruptStatus). */
  get interruptStatus(): number {
    return this.#interruptStatus;
  }

  /** Clears the interrupt bits in `bits` (MMIO InterruptACK). */
  ackInterrupt(bits: number): void {
    this.#interruptStatus &= ~bits;
  }

  /** Returns the interrupt bits and clears them (PCI ISR read). */
  takeInterruptStatus(): number {
    const s = this.#interruptStatus;
    this.#interruptStatus = 0;
    return s;
  }

  /** The config generation counter (virtio 1.3 §2.5.1); front-ends may truncate it. */
  get configGeneration(): number {
    return this.#generation;
  }

  /** A driver read of `width` bytes of device config at `offset` (0 beyond the config). */
  readConfig(offset: number, width: number): number {
    if (offset + width > this.model.configSize) return 0;
    return this.model.readConfig(offset, width);
  }

  /** A driver write of device config; refused before FEATURES_OK (virtio 1.3 §3.1.1). */
  writeConfig(offset: number, width: number, value: number): void {
    if ((this.#status & STATUS_FEATURES_OK) === 0) {
      this.violation(
        `virtio 1.3 §3.1.1: device config written at ${hex(offset)} before FEATURES_OK`,
      );
      return;
    }
    if (offset + width > this.model.configSize) {
      this.violation(
        `virtio 1.3 §2.5: device config written at ${hex(offset)}, ` +
          `beyond its ${this.model.configSize} bytes`,
      );
      return;
    }
    this.model.writeConfig(offset, width, value);
  }

  // ---- Queues (their registers and rules live in QueueRegisters) ------------------------

  /** Number of queues the model declares. */
  get queueCount(): number {
    return this.#queues.queueCount;
  }

  /** The maximum size of queue `index` (0 when absent). */
  queueMax(index: number): number {
    return this.#queues.queueMax(index);
  }

  /** The current size register of queue `index` (the maximum after reset). */
  queueSize(index: number): number {
    return this.#queues.queueSize(index);
  }

  /** Whether queue `index` is enabled. */
  queueReady(index: number): boolean {
    return this.#queues.queueReady(index);
  }

  /** A driver write of the size register of queue `index`. */
  setQueueSize(index: number, size: number): void {
    this.#queues.setQueueSize(index, size);
  }

  /** A driver read of one address half: `part` is QUEUE_DESC/DRIVER/DEVICE, `half` 0 or 1. */
  queueAddress(index: number, part: number, half: number): number {
    return this.#queues.queueAddress(index, part, half);
  }

  /** A driver write of one address half of queue `index`. */
  setQueueAddress(index: number, part: number, half: number, value: number): void {
    this.#queues.setQueueAddress(index, part, half, value);
  }

  /**
   * A driver write of the ready/enable register. Enabling checks size, alignment and that the
   * areas lie in memory (violation and no queue otherwise); disabling drops the queue.
   */
  setQueueReady(index: number, ready: boolean): void {
    this.#queues.setQueueReady(index, ready);
  }

  /**
   * A driver write of 1 to queue_reset / QueueReset (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1,
   * §4.1.4.3, §4.2.2): the queue stops at once (the device neither uses nor answers it any
   * more), its state returns to the default (disabled, size at the maximum, addresses 0), and
   * the model forgets what it took from it. The register then reads 1 for
   * {@link CoreFaults.queueResetReads} reads before the reset shows as complete.
   */
  resetQueue(index: number): void {
    if (this.#queues.resetQueue(index, this.faults.queueResetReads)) this.model.resetQueue?.(index);
  }

  /**
   * A driver read of queue_reset / QueueReset: true (1) while a reset of queue `index` is
   * still in progress (§4.1.4.3.2: the device presents 1 until the reset completes).
   */
  queueResetting(index: number): boolean {
    return this.#queues.queueResetting(index);
  }

  /** A driver's available-buffer notification for queue `index`. */
  notify(index: number): void {
    if ((this.#status & STATUS_DRIVER_OK) === 0) {
      this.violation(`virtio 1.3 §3.1.1: queue ${index} notified before DRIVER_OK`);
      if (this.model.notifyBeforeDriverOk !== true) return;
    }
    if (this.#queues.device(index) === null) {
      this.violation(`virtio 1.3 §2.7.13: queue ${index} notified but it is not enabled`);
      return;
    }
    if ((this.#status & STATUS_DEVICE_NEEDS_RESET) !== 0) return;
    this.model.notify(index);
  }
}
