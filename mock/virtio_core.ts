/**
 * The generic virtio device core of the test harness: status byte, feature negotiation,
 * per-queue registers, interrupts and config generation, written once and shared by the
 * MMIO register file and the PCI function (they differ only in where the registers are).
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
import type { SimulatedMemory } from "../transport/memory.ts";
import type { DeviceContext, DeviceModel, DeviceQueue } from "./device.ts";
import { type DeviceQueueLayout, SplitDeviceQueue } from "./split_queue.ts";
import { PackedDeviceQueue } from "./packed_queue.ts";
import { createDeviceQueue, isPacked } from "./create_device_queue.ts";

/** Interrupt status bit: a queue has used buffers (virtio 1.3 §4.2.2, §4.1.4.5). */
export const INTERRUPT_USED_BUFFER = 1;
/** Interrupt status bit: the configuration changed (virtio 1.3 §4.2.2, §4.1.4.5). */
export const INTERRUPT_CONFIG_CHANGE = 2;

/** Queue area selector for {@link VirtioCore.setQueueAddress}: the descriptor table. */
export const QUEUE_DESC = 0;
/** Queue area selector: the driver area (avail ring). */
export const QUEUE_DRIVER = 1;
/** Queue area selector: the device area (used ring). */
export const QUEUE_DEVICE = 2;

/** Feature bit 32, VIRTIO_F_VERSION_1 (virtio 1.3 §6). */
const VERSION_1_MASK = 1n << 32n;
/** Feature bit 40, VIRTIO_F_RING_RESET (virtio 1.3 §6). */
const RING_RESET_MASK = 1n << 40n;

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

/** Register state of one queue. */
interface QueueState {
  max: number;
  size: number;
  /** desc lo, desc hi, driver lo, driver hi, device lo, device hi. */
  addr: Uint32Array;
  device: DeviceQueue | null;
  /** Reads of the queue reset register left that return 1 (a reset still in progress). */
  resetting: number;
}

/** Whether `n` is a power of two. */
function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
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
  #onViolation: ((rule: string) => void) | null;
  #status = 0;
  #statusBeforeReset = 0;
  #resetReadsLeft = 0;
  #driverFeatures = 0n;
  #negotiated = 0n;
  #interruptStatus = 0;
  #generation = 0;
  #queues: QueueState[];

  /** Plugs `model` into a new core over `memory` and calls `model.attach()`. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: VirtioCoreOptions = {}) {
    this.model = model;
    this.memory = memory;
    this.#onViolation = options.onViolation ?? null;
    this.#queues = model.queueSizes.map((max) => ({
      max,
      size: max,
      addr: new Uint32Array(6),
      device: null,
      resetting: 0,
    }));
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
    return this.#queues[index]?.device ?? null;
  }

  /** The device queue as a split ring, or null (not enabled, or packed). */
  splitQueue(index: number): SplitDeviceQueue | null {
    const q = this.#queues[index]?.device ?? null;
    return q instanceof SplitDeviceQueue ? q : null;
  }

  /** The device queue as a packed ring, or null (not enabled, or split). */
  packedQueue(index: number): PackedDeviceQueue | null {
    const q = this.#queues[index]?.device ?? null;
    return q instanceof PackedDeviceQueue ? q : null;
  }

  /** Raises a used-buffer interrupt for queue `index` unless the driver suppressed it. */
  interrupt(index: number): void {
    const q = this.#queues[index]?.device;
    if (!q || (this.#status & STATUS_DRIVER_OK) === 0) return;
    if (q.needsInterrupt()) {
      this.#interruptStatus |= INTERRUPT_USED_BUFFER;
      this.interruptCount++;
    }
  }

  /** Sets DEVICE_NEEDS_RESET and, after DRIVER_OK, raises a config-change interrupt. */
  needsReset(reason: string): void {
    if (this.needsResetReason === null) this.needsResetReason = reason;
    this.#status |= STATUS_DEVICE_NEEDS_RESET;
    if ((this.#status & STATUS_DRIVER_OK) !== 0) {
      // virtio 1.3 §2.1.2: after DRIVER_OK the device MUST send a config-change notification.
      this.#interruptStatus |= INTERRUPT_CONFIG_CHANGE;
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
    if ((offered & VERSION_1_MASK) !== 0n && (this.#driverFeatures & VERSION_1_MASK) === 0n) {
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
    for (const q of this.#queues) {
      q.size = q.max;
      q.addr.fill(0);
      q.device = null;
      q.resetting = 0; // §4.1.4.3.2: queue_reset reads 0 after a device reset
    }
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

  // ---- Queues ---------------------------------------------------------------------------------

  /** Number of queues the model declares. */
  get queueCount(): number {
    return this.#queues.length;
  }

  /** The maximum size of queue `index` (0 when absent). */
  queueMax(index: number): number {
    return this.#queues[index]?.max ?? 0;
  }

  /** The current size register of queue `index` (the maximum after reset). */
  queueSize(index: number): number {
    return this.#queues[index]?.size ?? 0;
  }

  /** Whether queue `index` is enabled. */
  queueReady(index: number): boolean {
    return (this.#queues[index]?.device ?? null) !== null;
  }

  /** The queue register state, or null with a violation when the driver may not touch it. */
  #writable(index: number, what: string): QueueState | null {
    const q = this.#queues[index];
    if (!q || q.max === 0) {
      this.violation(`virtio 1.3 §4.2.2.2 / §4.1.4.3.2: ${what} written for absent queue ${index}`);
      return null;
    }
    if (q.device !== null) {
      this.violation(
        `virtio 1.3 §4.2.2.2 / §4.1.4.3.2: ${what} written while queue ${index} is enabled`,
      );
      return null;
    }
    return q;
  }

  /** A driver write of the size register of queue `index`. */
  setQueueSize(index: number, size: number): void {
    const q = this.#writable(index, "queue size");
    if (!q) return;
    // §2.7: a split queue's size is a power of two; §2.8: a packed one's need not be.
    const packed = isPacked(this.#negotiated);
    if (!(packed ? size > 0 : isPowerOfTwo(size)) || size > q.max) {
      this.violation(
        `virtio 1.3 ${packed ? "§2.8" : "§2.7"} / §4.1.4.3.2: queue ${index} size ${size} is ` +
          `not ${packed ? "in 1.." : "a power of two no larger than "}${q.max}`,
      );
    }
    q.size = size;
  }

  /** A driver read of one address half: `part` is QUEUE_DESC/DRIVER/DEVICE, `half` 0 or 1. */
  queueAddress(index: number, part: number, half: number): number {
    return this.#queues[index]?.addr[2 * part + half] ?? 0;
  }

  /** A driver write of one address half of queue `index`. */
  setQueueAddress(index: number, part: number, half: number, value: number): void {
    const q = this.#writable(index, "queue address");
    if (q) q.addr[2 * part + half] = value >>> 0;
  }

  /**
   * A driver write of the ready/enable register. Enabling checks size, alignment and that the
   * areas lie in memory (violation and no queue otherwise); disabling drops the queue.
   */
  setQueueReady(index: number, ready: boolean): void {
    const q = this.#queues[index];
    if (!q || q.max === 0) {
      this.violation(`virtio 1.3 §4.2.2.2 / §4.1.4.3.2: queue ${index} does not exist`);
      return;
    }
    if (!ready) {
      q.device = null;
      return;
    }
    if (q.device !== null) return;
    if (q.resetting > 0) {
      this.violation(
        `virtio 1.3 §4.1.4.3.2 / §4.2.2.2: queue ${index} re-enabled before its reset completed ` +
          "(queue_reset still read 1)",
      );
      return;
    }
    if ((this.#status & STATUS_FEATURES_OK) === 0) {
      this.violation(`virtio 1.3 §3.1.1: queue ${index} enabled before FEATURES_OK`);
      return;
    }
    const packed = isPacked(this.#negotiated);
    if (!(packed ? q.size > 0 : isPowerOfTwo(q.size)) || q.size > q.max) {
      this.violation(
        `virtio 1.3 ${packed ? "§2.8" : "§2.7"}: queue ${index} enabled with size ${q.size} ` +
          `(max ${q.max}${packed ? "" : ", power of two required"})`,
      );
      return;
    }
    const layout: DeviceQueueLayout = {
      index,
      size: q.size,
      descLo: q.addr[0],
      descHi: q.addr[1],
      driverLo: q.addr[2],
      driverHi: q.addr[3],
      deviceLo: q.addr[4],
      deviceHi: q.addr[5],
    };
    const queue = createDeviceQueue(this, layout);
    if (typeof queue === "string") {
      this.violation(
        `virtio 1.3 ${packed ? "§2.8.10.1" : "§2.7"}: queue ${index} enabled but its ${queue}`,
      );
      return;
    }
    q.device = queue;
  }

  /**
   * A driver write of 1 to queue_reset / QueueReset (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1,
   * §4.1.4.3, §4.2.2): the queue stops at once (the device neither uses nor answers it any
   * more), its state returns to the default (disabled, size at the maximum, addresses 0), and
   * the model forgets what it took from it. The register then reads 1 for
   * {@link CoreFaults.queueResetReads} reads before the reset shows as complete.
   */
  resetQueue(index: number): void {
    if ((this.#negotiated & RING_RESET_MASK) === 0n) {
      this.violation(`virtio 1.3 §2.6.1: queue ${index} reset without VIRTIO_F_RING_RESET`);
      return;
    }
    const q = this.#queues[index];
    if (!q || q.max === 0) {
      this.violation(`virtio 1.3 §2.6.1: reset of queue ${index}, which does not exist`);
      return;
    }
    q.device = null;
    q.size = q.max;
    q.addr.fill(0);
    q.resetting = this.faults.queueResetReads;
    this.model.resetQueue?.(index);
  }

  /**
   * A driver read of queue_reset / QueueReset: true (1) while a reset of queue `index` is
   * still in progress (§4.1.4.3.2: the device presents 1 until the reset completes).
   */
  queueResetting(index: number): boolean {
    const q = this.#queues[index];
    if (!q || q.resetting <= 0) return false;
    q.resetting--;
    return true;
  }

  /** A driver's available-buffer notification for queue `index`. */
  notify(index: number): void {
    if ((this.#status & STATUS_DRIVER_OK) === 0) {
      this.violation(`virtio 1.3 §3.1.1: queue ${index} notified before DRIVER_OK`);
      return;
    }
    const q = this.#queues[index];
    if (!q || q.device === null) {
      this.violation(`virtio 1.3 §2.7.13: queue ${index} notified but it is not enabled`);
      return;
    }
    if ((this.#status & STATUS_DEVICE_NEEDS_RESET) !== 0) return;
    this.model.notify(index);
  }
}
