/**
 * The event queue of a raw session (virtio 1.3 §5.13.6.9): the buffers the driver posts for
 * fault reports, and the reports read back raw (reserved fields included), each buffer posted
 * again once read.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../transport/dma.ts";
import type { Virtqueue } from "../driver/virtio/virtqueue.ts";
import { FAULT_ADDRESS, FAULT_ENDPOINT, FAULT_FLAGS, FAULT_SIZE } from "../spec/iommu.ts";
import { addHi, addLo } from "../util/u64.ts";

/** The byte event buffers are filled with before the device writes them. */
const EVENT_FILL = 0xa5;

/** A fault report as the device wrote it (§5.13.6.9), every field raw. */
export interface FaultRecord {
  /** The used length of the event buffer. */
  used: number;
  /** `reason`. */
  reason: number;
  /** `reserved[3]`, as a number (0 when zero). */
  reserved: number;
  /** `flags`. */
  flags: number;
  /** `endpoint`. */
  endpoint: number;
  /** `reserved1`. */
  reserved1: number;
  /** `address`. */
  address: bigint;
}

/** The shape of {@link EventBuffers}. */
export interface EventBufferOptions {
  /** Bytes of each buffer. */
  size: number;
  /** How many buffers there can be at once (the queue's size). */
  slots: number;
  /** Sends the event queue's available-buffer notification. */
  notify: () => void;
}

/** Event buffers posted on one event queue, in one DMA region (one slot per buffer). */
export class EventBuffers {
  #queue: Pick<Virtqueue, "add" | "publish" | "hasUsed" | "popUsed" | "usedLen">;
  #dma: DmaAllocator;
  #size: number;
  #stride: number;
  #slots: number;
  #notify: () => void;
  #region: DmaRegion | null = null;
  #posted = new Map<number, number>();

  /** Buffers on `queue`, memory from `dma`, shaped by `options`. */
  constructor(
    queue: Pick<Virtqueue, "add" | "publish" | "hasUsed" | "popUsed" | "usedLen">,
    dma: DmaAllocator,
    options: EventBufferOptions,
  ) {
    this.#queue = queue;
    this.#dma = dma;
    this.#size = options.size;
    this.#stride = (options.size + 15) & ~15;
    this.#slots = options.slots;
    this.#notify = options.notify;
  }

  /** Posts up to `count` more buffers, filled with 0xa5, and notifies. */
  post(count: number): void {
    this.#region ??= this.#dma.alloc(Math.max(4096, this.#stride * this.#slots), 4096);
    const region = this.#region;
    const used = new Set(this.#posted.values());
    for (let slot = 0, posted = 0; slot < this.#slots && posted < count; slot++) {
      if (used.has(slot)) continue;
      const at = slot * this.#stride;
      region.bytes.fill(EVENT_FILL, at, at + this.#size);
      const id = this.#queue.add([], [{
        addrLo: addLo(region.addrLo, at),
        addrHi: addHi(region.addrLo, region.addrHi, at),
        length: this.#size,
      }]);
      if (id < 0) break;
      this.#posted.set(id, slot);
      posted++;
    }
    if (this.#queue.publish()) this.#notify();
  }

  /**
   * Waits up to `ms` for reports, returning once one arrived and `settleMs` passed without
   * another; posts a fresh buffer for each one read.
   */
  async take(ms: number, settleMs: number): Promise<FaultRecord[]> {
    const out: FaultRecord[] = [];
    const deadline = performance.now() + ms;
    let quietUntil = Infinity;
    for (;;) {
      while (this.#queue.hasUsed()) {
        out.push(this.#read(this.#queue.popUsed(), this.#queue.usedLen));
        quietUntil = performance.now() + settleMs;
      }
      const now = performance.now();
      if (now > deadline || now > quietUntil) break;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    if (out.length > 0) this.post(out.length);
    return out;
  }

  /** Frees the buffers' memory (once the device is reset). */
  free(): void {
    if (this.#region !== null) this.#dma.free(this.#region);
    this.#region = null;
  }

  /** The report in the buffer the device returned as `id`, `used` bytes long. */
  #read(id: number, used: number): FaultRecord {
    const slot = this.#posted.get(id);
    this.#posted.delete(id);
    const region = this.#region;
    if (slot === undefined || region === null) {
      throw new Error(`The device returned event buffer ${id}, which the suite never posted`);
    }
    // The whole 24-byte format is read even from a smaller buffer (the slot is 16-aligned and
    // the region at least a page): a caller judges a short report by its used length.
    const v = new DataView(
      region.bytes.buffer,
      region.bytes.byteOffset + slot * this.#stride,
      FAULT_SIZE,
    );
    return {
      used,
      reason: v.getUint8(0),
      reserved: v.getUint32(0, true) >>> 8,
      flags: v.getUint32(FAULT_FLAGS, true),
      endpoint: v.getUint32(FAULT_ENDPOINT, true),
      reserved1: v.getUint32(FAULT_ENDPOINT + 4, true),
      address: v.getBigUint64(FAULT_ADDRESS, true),
    };
  }
}
