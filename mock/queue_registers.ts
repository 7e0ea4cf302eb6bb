/**
 * The per-queue registers of the mock's generic virtio core: size, the three area addresses
 * and the ready bit of every queue (virtio-mmio QueueSel…QueueReady, §4.2.2; virtio-pci
 * queue_select…queue_enable, §4.1.4.3), with the rules on writing them. The driver must not
 * touch a queue's registers while it is enabled, must size it a power of two no larger than the
 * maximum, and may enable it only after FEATURES_OK with aligned areas inside memory; each
 * broken rule is a violation. Enabling a queue builds its device side, split or packed
 * (`create_device_queue.ts`). A queue reset (VIRTIO_F_RING_RESET) reads 1 for a set number of
 * reads before it completes.
 *
 * @module
 */

import { STATUS_FEATURES_OK } from "../spec/status.ts";
import { hasFeature, VIRTIO_F_RING_RESET } from "../spec/features.ts";
import type { DeviceContext, DeviceQueue } from "./device.ts";
import type { DeviceQueueLayout } from "./split_queue.ts";
import { createDeviceQueue, isPacked } from "./create_device_queue.ts";

/** Queue area selector for {@link QueueRegisters.setQueueAddress}: the descriptor table. */
export const QUEUE_DESC = 0;
/** Queue area selector: the driver area (avail ring). */
export const QUEUE_DRIVER = 1;
/** Queue area selector: the device area (used ring). */
export const QUEUE_DEVICE = 2;

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

/** The registers of every queue of one device; the core's front-ends reach them through it. */
export class QueueRegisters {
  #context: DeviceContext;
  #queues: QueueState[];

  /** Registers for queues of maximum sizes `sizes` (0: absent), reporting to `context`. */
  constructor(context: DeviceContext, sizes: readonly number[]) {
    this.#context = context;
    this.#queues = sizes.map((max) => ({
      max,
      size: max,
      addr: new Uint32Array(6),
      device: null,
      resetting: 0,
    }));
  }

  /** Device side of queue `index`, or null when it is not enabled. */
  device(index: number): DeviceQueue | null {
    return this.#queues[index]?.device ?? null;
  }

  /** Device reset: every queue disabled, its size the maximum, its addresses 0. */
  reset(): void {
    for (const q of this.#queues) {
      q.size = q.max;
      q.addr.fill(0);
      q.device = null;
      q.resetting = 0; // §4.1.4.3.2: queue_reset reads 0 after a device reset
    }
  }

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
      this.#context.violation(
        `virtio 1.3 §4.2.2.2 / §4.1.4.3.2: ${what} written for absent queue ${index}`,
      );
      return null;
    }
    if (q.device !== null) {
      this.#context.violation(
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
    const packed = isPacked(this.#context.negotiated);
    if (!(packed ? size > 0 : isPowerOfTwo(size)) || size > q.max) {
      this.#context.violation(
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
      this.#context.violation(`virtio 1.3 §4.2.2.2 / §4.1.4.3.2: queue ${index} does not exist`);
      return;
    }
    if (!ready) {
      q.device = null;
      return;
    }
    if (q.device !== null) return;
    if (q.resetting > 0) {
      this.#context.violation(
        `virtio 1.3 §4.1.4.3.2 / §4.2.2.2: queue ${index} re-enabled before its reset completed ` +
          "(queue_reset still read 1)",
      );
      return;
    }
    if ((this.#context.status & STATUS_FEATURES_OK) === 0) {
      this.#context.violation(`virtio 1.3 §3.1.1: queue ${index} enabled before FEATURES_OK`);
      return;
    }
    const packed = isPacked(this.#context.negotiated);
    if (!(packed ? q.size > 0 : isPowerOfTwo(q.size)) || q.size > q.max) {
      this.#context.violation(
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
    const queue = createDeviceQueue(this.#context, layout);
    if (typeof queue === "string") {
      this.#context.violation(
        `virtio 1.3 ${packed ? "§2.8.10.1" : "§2.7"}: queue ${index} enabled but its ${queue}`,
      );
      return;
    }
    q.device = queue;
  }

  /**
   * A queue reset request (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1): the queue is disabled and
   * its registers back to their reset values; queue_reset then reads 1 `pendingReads` times.
   * Returns whether the reset happened (false with a violation otherwise).
   */
  resetQueue(index: number, pendingReads = 0): boolean {
    if (!hasFeature(this.#context.negotiated, VIRTIO_F_RING_RESET)) {
      this.#context.violation(
        `virtio 1.3 §2.6.1: queue ${index} reset without VIRTIO_F_RING_RESET`,
      );
      return false;
    }
    const q = this.#queues[index];
    if (!q || q.max === 0) {
      this.#context.violation(`virtio 1.3 §2.6.1: reset of queue ${index}, which does not exist`);
      return false;
    }
    q.device = null;
    q.size = q.max;
    q.addr.fill(0);
    q.resetting = pendingReads;
    return true;
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
}
