/**
 * The per-queue registers of the mock's generic virtio core: size, the three area addresses
 * and the ready bit of every queue (virtio-mmio QueueSel…QueueReady, §4.2.2; virtio-pci
 * queue_select…queue_enable, §4.1.4.3), with the rules on writing them. The driver must not
 * touch a queue's registers while it is enabled, must size it a power of two no larger than the
 * maximum, and may enable it only after FEATURES_OK with aligned areas inside memory; each
 * broken rule is a violation. Enabling a queue builds its device side, a {@link SplitDeviceQueue}.
 *
 * @module
 */

import { STATUS_FEATURES_OK } from "../spec/status.ts";
import { hasFeature, VIRTIO_F_RING_RESET } from "../spec/features.ts";
import type { DeviceContext } from "./device.ts";
import { checkQueueLayout, type DeviceQueueLayout, SplitDeviceQueue } from "./split_queue.ts";

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
  device: SplitDeviceQueue | null;
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
    }));
  }

  /** Device side of queue `index`, or null when it is not enabled. */
  device(index: number): SplitDeviceQueue | null {
    return this.#queues[index]?.device ?? null;
  }

  /** Device reset: every queue disabled, its size the maximum, its addresses 0. */
  reset(): void {
    for (const q of this.#queues) {
      q.size = q.max;
      q.addr.fill(0);
      q.device = null;
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
    if (!isPowerOfTwo(size) || size > q.max) {
      this.#context.violation(
        `virtio 1.3 §2.7 / §4.1.4.3.2: queue ${index} size ${size} is not a power of two ` +
          `no larger than ${q.max}`,
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
    if ((this.#context.status & STATUS_FEATURES_OK) === 0) {
      this.#context.violation(`virtio 1.3 §3.1.1: queue ${index} enabled before FEATURES_OK`);
      return;
    }
    if (!isPowerOfTwo(q.size) || q.size > q.max) {
      this.#context.violation(
        `virtio 1.3 §2.7: queue ${index} enabled with size ${q.size} (max ${q.max}, ` +
          "power of two required)",
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
    const problem = checkQueueLayout(this.#context, layout);
    if (problem !== null) {
      this.#context.violation(`virtio 1.3 §2.7: queue ${index} enabled but its ${problem}`);
      return;
    }
    q.device = new SplitDeviceQueue(this.#context, layout);
  }

  /** A queue reset request (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1). */
  resetQueue(index: number): void {
    if (!hasFeature(this.#context.negotiated, VIRTIO_F_RING_RESET)) {
      this.#context.violation(
        `virtio 1.3 §2.6.1: queue ${index} reset without VIRTIO_F_RING_RESET`,
      );
      return;
    }
    const q = this.#queues[index];
    if (!q) return;
    q.device = null;
    q.size = q.max;
    q.addr.fill(0);
  }
}
