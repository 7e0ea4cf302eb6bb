/**
 * Fault reports on the mock virtio-iommu's event queue (virtio 1.3 §5.13.7): one
 * `struct virtio_iommu_fault` per driver-supplied buffer, reserved fields zero; when the
 * driver has no buffer available the fault is dropped and counted, or held until one arrives.
 *
 * @module
 */

import {
  EVENT_QUEUE,
  FAULT_ADDRESS,
  FAULT_ENDPOINT,
  FAULT_FLAGS,
  FAULT_REASON,
  FAULT_SIZE,
  VIRTIO_IOMMU_FAULT_R_DOMAIN,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_FAULT_R_UNKNOWN,
} from "../../spec/iommu.ts";
import { STATUS_DRIVER_OK } from "../../spec/status.ts";
import type { DeviceContext } from "../device.ts";
import { scatterWritable } from "../chain.ts";

/** A translation fault, as reported by {@link MockIommuDevice.translate}. */
export interface IommuFault {
  /** Why the access failed. */
  reason: "DOMAIN" | "MAPPING" | "UNKNOWN";
  /** `VIRTIO_IOMMU_FAULT_F_*` bits (READ, WRITE, ADDRESS). */
  flags: number;
  /** The endpoint that made the access. */
  endpoint: number;
  /** The faulting address (valid when ADDRESS is set). */
  address: bigint;
}

/** Most faults held while waiting for event buffers in "wait" mode. */
const MAX_PENDING = 1024;

function reasonCode(reason: IommuFault["reason"]): number {
  if (reason === "DOMAIN") return VIRTIO_IOMMU_FAULT_R_DOMAIN;
  if (reason === "MAPPING") return VIRTIO_IOMMU_FAULT_R_MAPPING;
  return VIRTIO_IOMMU_FAULT_R_UNKNOWN;
}

/** Posts faults to the event queue and counts what was posted and dropped. */
export class FaultReporter {
  #mode: "drop" | "wait";
  #pending: IommuFault[] = [];
  #buf = new Uint8Array(FAULT_SIZE);
  #view = new DataView(this.#buf.buffer);
  /** Faults written to an event buffer. */
  posted = 0;
  /** Faults lost because no usable event buffer was available. */
  dropped = 0;

  /** Creates a reporter; `mode` says what happens when no buffer is available. */
  constructor(mode: "drop" | "wait") {
    this.#mode = mode;
  }

  /** Faults held for want of a buffer ("wait" mode). */
  get pending(): number {
    return this.#pending.length;
  }

  /** Reports `fault` through `ctx` (or holds/drops it when it cannot be posted now). */
  report(ctx: DeviceContext | null, fault: IommuFault): void {
    if (this.#pending.length === 0 && this.#post(ctx, fault)) return;
    if (this.#mode === "wait" && this.#pending.length < MAX_PENDING) {
      this.#pending.push(fault);
    } else {
      this.dropped++;
    }
  }

  /** The driver made event buffers available: posts held faults, oldest first. */
  flush(ctx: DeviceContext | null): void {
    while (this.#pending.length > 0 && this.#post(ctx, this.#pending[0])) this.#pending.shift();
  }

  /** Forgets held faults (device reset); they count as dropped. */
  reset(): void {
    this.dropped += this.#pending.length;
    this.#pending.length = 0;
  }

  #post(ctx: DeviceContext | null, fault: IommuFault): boolean {
    // virtio 1.3 §3.1.2: the device MUST NOT consume buffers before DRIVER_OK.
    if (ctx === null || (ctx.status & STATUS_DRIVER_OK) === 0) return false;
    const queue = ctx.queue(EVENT_QUEUE);
    if (queue === null) return false;
    for (;;) {
      const chain = queue.pop();
      if (chain === null) return false;
      if (chain.writableLength < FAULT_SIZE) {
        // §5.13.7: a report is never split across buffers; this buffer cannot hold one.
        ctx.violation(
          `virtio 1.3 §5.13.7: event buffer of ${chain.writableLength} writable bytes is smaller than a ${FAULT_SIZE}-byte fault`,
        );
        queue.push(chain.head, 0);
        ctx.interrupt(EVENT_QUEUE);
        continue;
      }
      this.#buf.fill(0); // reserved and reserved1 SHOULD be zero.
      const v = this.#view;
      v.setUint8(FAULT_REASON, reasonCode(fault.reason));
      v.setUint32(FAULT_FLAGS, fault.flags, true);
      v.setUint32(FAULT_ENDPOINT, fault.endpoint, true);
      v.setBigUint64(FAULT_ADDRESS, fault.address, true);
      scatterWritable(ctx.memory, chain, 0, this.#buf, FAULT_SIZE);
      queue.push(chain.head, FAULT_SIZE);
      ctx.interrupt(EVENT_QUEUE);
      this.posted++;
      return true;
    }
  }
}
