/**
 * Request slots in DMA memory (virtio 1.3 §5.13.6): fixed 64-byte slots, 64 to a 4 KiB chunk
 * so that each slot stays physically contiguous, each holding one request and its tail. The
 * request queue encodes a request into a slot and sends the slot's bytes as one chain.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import { TAIL_SIZE } from "../../spec/iommu.ts";

/** Bytes per request slot: the largest fixed request (MAP, 36) plus its tail, rounded up. */
export const SLOT_SIZE = 64;
/**
 * Offset of a request's tail in its slot: the last 4 bytes, after the largest fixed request
 * (MAP, 36 bytes), so the writable buffer is the same whatever the request.
 */
export const TAIL_AT = SLOT_SIZE - TAIL_SIZE;
/** Slots per DMA chunk: a chunk is one 4 KiB page, so each stays physically contiguous. */
const SLOTS_PER_CHUNK = 4096 / SLOT_SIZE;

/** The memory of `count` request slots: where each one's bytes are, for the CPU and the device. */
export class RequestSlots {
  /** Number of slots. */
  readonly count: number;
  /** Per slot: the DataView over its chunk. */
  readonly view: DataView[];
  /** Per slot: its byte offset in {@link RequestSlots.view}. */
  readonly offset: Int32Array;
  /** Per slot: low 32 bits of its device-visible address. */
  readonly lo: Float64Array;
  /** Per slot: high 32 bits of its device-visible address. */
  readonly hi: Float64Array;
  #dma: DmaAllocator;
  #chunks: DmaRegion[] = [];

  /** Allocates `count` slots from `dma`, one 4 KiB chunk per 64 slots. */
  constructor(dma: DmaAllocator, count: number) {
    this.#dma = dma;
    this.count = count;
    this.view = new Array(count);
    this.offset = new Int32Array(count);
    this.lo = new Float64Array(count);
    this.hi = new Float64Array(count);
    try {
      for (let i = 0; i < count; i++) {
        if (i % SLOTS_PER_CHUNK === 0) this.#chunks.push(dma.alloc(4096, 4096));
        const chunk = this.#chunks[this.#chunks.length - 1];
        const offset = (i % SLOTS_PER_CHUNK) * SLOT_SIZE;
        this.view[i] = chunk.view;
        this.offset[i] = offset;
        this.lo[i] = chunk.addrLo + offset; // chunks are 4 KiB-aligned: no carry.
        this.hi[i] = chunk.addrHi;
      }
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  /** Frees the slots' memory; a second call does nothing. */
  destroy(): void {
    for (const chunk of this.#chunks) this.#dma.free(chunk);
    this.#chunks = [];
  }
}

/** A caller waiting for a free slot. */
interface SlotWaiter {
  run(slot: number, error?: Error): void;
  /** performance.now() after which it stops waiting (Infinity: never). */
  deadline: number;
}

/**
 * Which request slot is free, and who gets the next one: a stack of free slots and a FIFO of
 * callers waiting while every slot is in flight (back-pressure: nothing dropped, nothing
 * reordered). The line can be closed (a queue reset in progress): a gate at its head keeps
 * every slot from ordinary callers, while urgent callers ({@link SlotPool.takeAhead},
 * {@link SlotPool.waitAhead}) still get them, in their own order.
 */
export class SlotPool {
  #free: Int32Array;
  #freeCount: number;
  #waiters: SlotWaiter[] = [];
  /** The waiter that closes the line (null: open); it puts every slot it gets back. */
  #gate: SlotWaiter | null = null;

  /** A pool of `count` slots, all free. */
  constructor(count: number) {
    this.#free = new Int32Array(count);
    this.#freeCount = 0;
    this.reset();
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiters.length - (this.#gate === null ? 0 : 1);
  }

  /** Takes a free slot, or returns -1 when none is free or others already wait (FIFO). */
  take(): number {
    if (this.#waiters.length !== 0 || this.#freeCount === 0) return -1;
    return this.#free[--this.#freeCount];
  }

  /** Queues `run` for the next slot given back, waiting until `deadline` at most. */
  wait(run: (slot: number, error?: Error) => void, deadline: number): void {
    this.#waiters.push({ run, deadline });
  }

  /** Gives `slot` back: to the first waiter, or to the free stack. */
  release(slot: number): void {
    if (this.#waiters.length === 0) this.#free[this.#freeCount++] = slot;
    else this.#handOver(slot);
  }

  /** Gives `slot` to the first waiter; the gate keeps it free (and stays at its place). */
  #handOver(slot: number): void {
    const first = this.#waiters[0];
    if (first === this.#gate) {
      this.#free[this.#freeCount++] = slot;
      return;
    }
    this.#waiters.shift();
    first.run(slot);
  }

  /** Closes the line: from now on only urgent callers get slots, until {@link SlotPool.open}. */
  close(): void {
    if (this.#gate !== null) return;
    this.#gate = { run: () => {}, deadline: Infinity };
    this.#waiters.unshift(this.#gate);
  }

  /** Opens the line again: the callers waiting behind the gate get the free slots, in order. */
  open(): void {
    const gate = this.#gate;
    if (gate === null) return;
    this.#gate = null;
    const at = this.#waiters.indexOf(gate);
    if (at >= 0) this.#waiters.splice(at, 1);
    while (this.#freeCount > 0 && this.#waiters.length > 0) {
      (this.#waiters.shift() as SlotWaiter).run(this.#free[--this.#freeCount]);
    }
  }

  /** A free slot for an urgent caller, past the gate but behind earlier urgent callers; or -1. */
  takeAhead(): number {
    if (this.#freeCount === 0) return -1;
    if (this.#waiters.length !== 0 && this.#waiters[0] !== this.#gate) return -1;
    return this.#free[--this.#freeCount];
  }

  /** Queues an urgent `run` ahead of the gate (behind earlier urgent callers). */
  waitAhead(run: (slot: number, error?: Error) => void): void {
    const at = this.#gate === null ? 0 : this.#waiters.indexOf(this.#gate);
    this.#waiters.splice(at, 0, { run, deadline: Infinity });
  }

  /** Tells waiters whose deadline is before `now` that they got no slot: `run(-1, timeout())`. */
  expire(now: number, timeout: () => Error): void {
    if (!this.#waiters.some((w) => w.deadline <= now)) return;
    const kept: SlotWaiter[] = [];
    const expired: SlotWaiter[] = [];
    for (const w of this.#waiters) (w.deadline <= now ? expired : kept).push(w);
    this.#waiters = kept;
    for (const w of expired) w.run(-1, timeout());
  }

  /** Tells every waiter it will get no slot (`run(-1)`): the queue failed. Opens the line. */
  failWaiters(): void {
    this.#gate = null;
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w.run(-1);
  }

  /** Makes every slot free again (after a reset; waiters were failed before). */
  reset(): void {
    const n = this.#free.length;
    this.#freeCount = n;
    for (let i = 0; i < n; i++) this.#free[i] = n - 1 - i;
  }
}
