/**
 * The request queue engine (virtio 1.3 §5.13.6): fixed request slots in DMA memory, each sent
 * as a two-part chain (device-readable request, device-writable tail), auto-batched so that
 * requests made while others are in flight share one notification, completed from the used ring
 * (when to look is `request_wait.ts`'s job), and settled exactly once: resolved, rejected with a typed error, or timed out.
 * Back-pressure: when every slot is in flight, callers wait in FIFO order; nothing is dropped
 * and nothing is reordered (`request_slots.ts` owns the slots' memory and who gets the next one).
 *
 * Longer than the 400-line guideline: one class whose per-slot arrays are shared by the send
 * path and the settlement path, which must stay in step (every request settles exactly once).
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import type { Transport } from "../../transport/transport.ts";
import { STATUS_DEVICE_NEEDS_RESET } from "../../spec/status.ts";
import { createVirtqueue } from "../virtio/create_queue.ts";
import { type RingLayout, type Virtqueue, VirtqueueError } from "../virtio/virtqueue.ts";
import { DeviceResetError, requestError, RequestTimeoutError } from "./errors.ts";
import { HEAD_TYPE, REQUEST_QUEUE, TAIL_SIZE, VIRTIO_IOMMU_S_OK } from "../../spec/iommu.ts";
import { RequestSlots, SlotPool, TAIL_AT } from "./request_slots.ts";
import {
  DEFAULT_SPIN_MS,
  InterruptWait,
  PollingWait,
  type RequestWait,
  type WaitTarget,
} from "./request_wait.ts";

/** Called once when a request settles: `error` is null on success. */
export type Completion = (error: Error | null, slot: number) => void;

const FREE = 0;
const IN_FLIGHT = 1;
/** Timed out: the caller was told, the device still owns the buffers until it returns them. */
const ABANDONED = 2;

/** Options for {@link RequestQueue}. */
export interface RequestQueueOptions {
  /** Default time a request may take before it rejects with RequestTimeoutError (ms). */
  timeoutMs: number;
  /**
   * How long to busy-poll for answers right after a notification before falling back to
   * timers, in ms (default 2). 0 polls with timers only.
   */
  spinMs?: number;
  /** Negotiated EVENT_IDX. */
  eventIdx: boolean;
  /** Negotiated INDIRECT_DESC. */
  indirect: boolean;
  /** The ring layout negotiated (default split). */
  layout?: RingLayout;
  /**
   * Called when the device broke the ring protocol (a {@link VirtqueueError}): returns true
   * when it takes over (a driver with VIRTIO_F_RING_RESET resets the queue, starting with
   * {@link RequestQueue.beforeQueueReset}); otherwise the queue fails.
   */
  onBroken?: (error: Error) => boolean;
}

/** Names of request types for messages, by type number. */
const KIND_NAMES = ["", "ATTACH", "DETACH", "MAP", "UNMAP", "PROBE"];

/**
 * The request virtqueue with its slots and settlement; {@link PollingWait} or
 * {@link InterruptWait} decides when the used ring is looked at.
 */
export class RequestQueue implements WaitTarget {
  /** The underlying virtqueue (split or packed). */
  readonly vq: Virtqueue;
  /** Number of request slots (the most requests in flight at once). */
  readonly slots: number;
  #transport: Transport;
  /** Direct chains: slot `s` is the virtqueue's pinned descriptor pair `s` (id `2s`). */
  #pinned: boolean;
  #mem: RequestSlots;
  #slotView: DataView[];
  #slotOffset: Int32Array;
  #slotLo: Float64Array;
  #slotHi: Float64Array;
  #state: Uint8Array;
  #kind: Uint8Array;
  #writeLen: Int32Array;
  #deadline: Float64Array;
  /** The view holding the status of a request sent with its own buffers (PROBE), else null. */
  #extView: (DataView | null)[];
  #statusOffset: Int32Array;
  #done: (Completion | null)[];
  #headToSlot: Int32Array;
  #pool: SlotPool;
  #inFlight = 0;
  /** Answers collected since creation (counted per collect(), not per request). */
  #answered = 0;
  /** Between the two halves of a queue reset: the ring is the device's no more, nor ours yet. */
  #resetting = false;
  #flushScheduled = false;
  #wait: RequestWait;
  #spinMs: number;
  #broken: Error | null = null;
  #timeoutMs: number;
  #onBroken: ((error: Error) => boolean) | null;
  /**
   * The deadline of a request just sent: −timeout (Infinity without one). The clock is read
   * lazily, by the first timer-driven poll that finds the request still in flight: reading it
   * per request costs more than the rest of a batched send.
   */
  #unstarted: number;
  #flushBound = (): void => this.#flush();

  /** Creates the queue and its slots; call {@link RequestQueue.enable} to hand it to the device. */
  constructor(
    transport: Transport,
    dma: DmaAllocator,
    size: number,
    options: RequestQueueOptions,
  ) {
    this.#transport = transport;
    this.#timeoutMs = options.timeoutMs;
    this.#onBroken = options.onBroken ?? null;
    this.#unstarted = options.timeoutMs > 0 ? -options.timeoutMs : Infinity;
    this.#spinMs = options.spinMs ?? DEFAULT_SPIN_MS;
    this.#wait = new PollingWait(this, this.#spinMs);
    // With indirect descriptors a request takes one ring descriptor, otherwise two: then
    // every slot owns a pinned pair, whose descriptors are written once, not per request.
    const slots = options.indirect ? size : Math.max(1, size >> 1);
    this.#pinned = !options.indirect && size >= 2;
    this.vq = createVirtqueue(options.layout ?? "split", REQUEST_QUEUE, size, dma, {
      eventIdx: options.eventIdx,
      indirect: options.indirect,
      pairs: this.#pinned ? slots : 0,
    });
    this.slots = slots;
    try {
      this.#mem = new RequestSlots(dma, slots);
    } catch (error) {
      this.vq.destroy();
      throw error;
    }
    this.#slotView = this.#mem.view;
    this.#slotOffset = this.#mem.offset;
    this.#slotLo = this.#mem.lo;
    this.#slotHi = this.#mem.hi;
    this.#state = new Uint8Array(slots);
    this.#kind = new Uint8Array(slots);
    this.#writeLen = new Int32Array(slots);
    this.#deadline = new Float64Array(slots);
    this.#extView = new Array(slots).fill(null);
    this.#statusOffset = new Int32Array(slots);
    this.#done = new Array(slots).fill(null);
    this.#headToSlot = new Int32Array(size).fill(-1);
    this.#pool = new SlotPool(slots);
    for (let i = 0; i < slots; i++) this.#pointAtSlot(i);
  }

  /**
   * Makes `slot` carry its own bytes: status read from its tail at TAIL_AT and, on a ring with
   * pinned pairs, the slot's pair pointed at the request bytes and the tail. Done for every
   * slot at the start and after a reset, and for a slot that last lent the pair to a PROBE.
   */
  #pointAtSlot(slot: number): void {
    this.#extView[slot] = null;
    this.#statusOffset[slot] = this.#slotOffset[slot] + TAIL_AT;
    if (!this.#pinned) return;
    const lo = this.#slotLo[slot], hi = this.#slotHi[slot];
    this.vq.setPair(slot, lo, hi, TAIL_AT, lo + TAIL_AT, hi, TAIL_SIZE);
  }

  /** Hands the ring to the device (queue setup step of virtio 1.3 §3.1.1 step 7). */
  enable(): void {
    this.#transport.enableQueue(REQUEST_QUEUE, this.vq.size, this.vq.addresses);
  }

  /**
   * Sleeps on the queue's used-buffer interrupt ({@link InterruptWait}) instead of polling
   * from a timer, or back. The caller delivers the interrupts to {@link RequestQueue.onInterrupt}.
   */
  useInterrupts(on: boolean): void {
    if ((this.#wait instanceof InterruptWait) === on) return;
    this.#wait.stop();
    if (!on && this.#broken === null) this.vq.setInterrupts(false);
    this.#wait = on ? new InterruptWait(this, this.#spinMs) : new PollingWait(this, this.#spinMs);
    if (this.pending > 0) this.#wait.start();
  }

  /** A used-buffer notification for this queue (or for every queue, on a shared line). */
  onInterrupt(): void {
    if (this.#broken === null) this.#wait.onInterrupt();
  }

  /** Turns the ring's used-buffer notifications on or off; false when answers came meanwhile. */
  setInterrupts(enabled: boolean): boolean {
    return this.vq.setInterrupts(enabled);
  }

  /** Requests submitted and not yet settled. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests submitted and not yet settled, plus those waiting for a slot. */
  get pending(): number {
    return this.#inFlight + this.#pool.waiting;
  }

  /** Answers the device gave since the queue was created (settled requests, any status). */
  get answered(): number {
    return this.#answered;
  }

  /** The error that broke the queue (a device that broke the ring protocol), or null. */
  get broken(): Error | null {
    return this.#broken;
  }

  /**
   * Takes a free slot for a new request, or returns -1 when the caller must wait with
   * {@link RequestQueue.acquire} (no slot free, or earlier requests already waiting: FIFO).
   * Throws the queue's error when it is broken.
   */
  tryTakeSlot(): number {
    if (this.#broken) throw this.#broken;
    return this.#pool.take();
  }

  /**
   * Calls `run(slot)` once a slot is free, after every request already waiting (FIFO). If the
   * queue fails first, `run(-1)` tells the waiter to reject with {@link RequestQueue.broken};
   * if no slot frees up within the queue's timeout (a device that keeps every slot), `run(-1, error)`
   * hands it a {@link RequestTimeoutError}: waiting for a slot never hangs either.
   */
  acquire(run: (slot: number, error?: Error) => void): void {
    if (this.#broken) throw this.#broken;
    const slot = this.tryTakeSlot();
    if (slot >= 0) {
      run(slot);
      return;
    }
    const deadline = this.#timeoutMs > 0 ? performance.now() + this.#timeoutMs : Infinity;
    this.#pool.wait(run, deadline);
    this.#wait.start();
  }

  /** The DataView holding slot `slot`'s bytes. */
  view(slot: number): DataView {
    return this.#slotView[slot];
  }

  /** Offset of slot `slot`'s bytes in {@link RequestQueue.view}. */
  offset(slot: number): number {
    return this.#slotOffset[slot];
  }

  /**
   * Sends the request encoded in `slot`: `readLen` device-readable bytes then the 4-byte tail.
   * When `ext` is given (PROBE) the chain's buffers are that region instead: `readLen` bytes,
   * then `writeLen` writable bytes. `done` is called exactly once.
   */
  send(
    slot: number,
    readLen: number,
    done: Completion,
    ext?: DmaRegion,
    writeLen = TAIL_SIZE,
  ): void {
    if (this.#enqueue(slot, readLen, done, ext, writeLen)) this.#scheduleFlush();
  }

  /**
   * {@link RequestQueue.send} of a fixed-size request in its slot (MAP, UNMAP, ATTACH,
   * DETACH): the batch's hot path, kept small enough for the JIT to inline.
   */
  sendSlot(slot: number, readLen: number, done: Completion): void {
    if (this.#track(slot, this.#addSlot(slot, readLen), TAIL_SIZE, done)) this.#scheduleFlush();
  }

  /**
   * Like {@link RequestQueue.send} for a fixed-size request, but when nothing else is in
   * flight it publishes, notifies and collects at once instead of at the end of the tick:
   * there is nothing to batch the request with yet. A device that answers during the
   * notification (QEMU under TCG, the mock) has settled it before sendNow() returns, which
   * saves a request sent one at a time a trip through the microtask queue. Otherwise the
   * end-of-tick flush takes over and requests made meanwhile share its notification.
   */
  sendNow(slot: number, readLen: number, done: Completion): void {
    if (!this.#track(slot, this.#addSlot(slot, readLen), TAIL_SIZE, done)) return;
    if (this.#flushScheduled || this.#inFlight !== 1) {
      this.#scheduleFlush();
      return;
    }
    if (this.vq.publish()) this.#transport.notify(REQUEST_QUEUE);
    this.collect();
    if (this.#inFlight > 0 || this.#pool.waiting > 0) this.#scheduleFlush();
  }

  /**
   * {@link RequestQueue.sendNow} for the one-at-a-time fast path, settling inline what it can:
   * when no chain at all is out, the request is added, published and notified, and an answer
   * the device gave during the notification (QEMU under TCG, the mock) is taken straight from
   * the used ring. Then it returns the outcome, null (OK) or the request's error, and `done` is
   * never called: no tracking, no completion callback, no trip through collect(). Otherwise it
   * returns undefined and the request goes the usual way (tracked, settled through `done`,
   * which may have been called already).
   *
   * Tracking only after the notification is safe: interrupts are delivered from the event loop,
   * never during it, and with no other chain out the used ring can only return this one (any
   * other id breaks the ring protocol, §2.7.8, and popUsed() throws). Whatever goes wrong
   * tracks the request first, so it settles through `done` as in sendNow().
   */
  sendAlone(slot: number, readLen: number, done: Completion): Error | null | undefined {
    if (this.#flushScheduled || this.vq.inFlight !== 0 || this.#resetting) {
      this.sendNow(slot, readLen, done);
      return undefined;
    }
    const head = this.#addSlot(slot, readLen);
    if (head < 0) {
      this.#ringFull(slot, done);
      return undefined;
    }
    try {
      if (this.vq.publish()) this.#transport.notify(REQUEST_QUEUE);
    } catch (error) {
      this.#track(slot, head, TAIL_SIZE, done);
      throw error;
    }
    let got: number;
    try {
      got = this.vq.popUsed();
    } catch (error) {
      this.#track(slot, head, TAIL_SIZE, done);
      this.#ringBroken(error);
      return undefined;
    }
    if (got !== head) {
      // Not answered yet: from here on like sendNow(); the end-of-tick flush polls for it.
      this.#track(slot, head, TAIL_SIZE, done);
      this.#scheduleFlush();
      return undefined;
    }
    this.#answered++;
    const written = this.vq.usedLen;
    const status = this.#slotView[slot].getUint8(this.#statusOffset[slot]);
    const error = status === VIRTIO_IOMMU_S_OK && written >= TAIL_SIZE
      ? null
      : this.#refused(slot, status, written, TAIL_SIZE);
    // Last: the slot may go to a caller waiting for one, which then sends at once.
    this.#release(slot);
    if (this.#pool.waiting > 0) this.#scheduleFlush();
    return error;
  }

  /** Puts the request in the ring (unpublished); false when it already failed. */
  #enqueue(
    slot: number,
    readLen: number,
    done: Completion,
    ext: DmaRegion | undefined,
    writeLen: number,
  ): boolean {
    const head = ext === undefined
      ? this.#addSlot(slot, readLen)
      : this.#addExt(slot, ext, readLen, writeLen);
    return this.#track(slot, head, writeLen, done);
  }

  /** Records the request added as chain `head` in `slot`; false when it already failed. */
  #track(slot: number, head: number, writeLen: number, done: Completion): boolean {
    if (head < 0) return this.#ringFull(slot, done);
    this.#headToSlot[head] = slot;
    this.#state[slot] = IN_FLIGHT;
    this.#writeLen[slot] = writeLen;
    this.#done[slot] = done;
    this.#deadline[slot] = this.#unstarted;
    this.#inFlight++;
    return true;
  }

  /** Cannot happen: slots never outnumber what the ring holds. Fails loudly, not silently. */
  #ringFull(slot: number, done: Completion): false {
    this.#release(slot);
    done(new VirtqueueError(REQUEST_QUEUE, "Request ring full although a slot was free"), slot);
    return false;
  }

  /**
   * Adds the chain of a request in its slot: its first `readLen` bytes, then the tail at
   * TAIL_AT (slots never cross a 4 KiB chunk).
   */
  #addSlot(slot: number, readLen: number): number {
    const view = this.#slotView[slot];
    const offset = this.#slotOffset[slot];
    // Poison the tail so a device that claims to have written it but did not is caught.
    view.setUint32(offset + TAIL_AT, 0xffff_ffff, true);
    this.#kind[slot] = view.getUint8(offset + HEAD_TYPE);
    if (this.#extView[slot] !== null) this.#pointAtSlot(slot);
    return this.#pinned ? this.vq.addPair(slot, readLen) : this.#addChain(slot, readLen);
  }

  /** {@link RequestQueue.#addSlot} on a ring without pinned pairs (an indirect chain). */
  #addChain(slot: number, readLen: number): number {
    const lo = this.#slotLo[slot];
    const hi = this.#slotHi[slot];
    return this.vq.add2(lo, hi, readLen, lo + TAIL_AT, hi, TAIL_SIZE);
  }

  /** Adds the chain of a request with its own buffers (PROBE): `ext` holds all of it. */
  #addExt(slot: number, ext: DmaRegion, readLen: number, writeLen: number): number {
    const tail = readLen + writeLen - TAIL_SIZE;
    ext.view.setUint32(tail, 0xffff_ffff, true);
    this.#kind[slot] = ext.view.getUint8(HEAD_TYPE);
    this.#extView[slot] = ext.view;
    this.#statusOffset[slot] = tail;
    if (this.#pinned) {
      const lo = ext.addrLo, hi = ext.addrHi;
      this.vq.setPair(slot, lo, hi, readLen, lo + readLen, hi, writeLen);
      return this.vq.addPair(slot, readLen);
    }
    return this.vq.add2(
      ext.addrLo,
      ext.addrHi,
      readLen,
      ext.addrLo + readLen,
      ext.addrHi,
      writeLen,
    );
  }

  /** Publishes and notifies at the end of the tick (once, whatever was sent meanwhile). */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(this.#flushBound);
  }

  /** Publishes and notifies now instead of at the end of the tick, then collects answers. */
  flushNow(): void {
    this.#flush();
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#broken) return;
    // Publish avail.idx; notify unless the device suppressed it (virtio 1.3 §2.7.10).
    if (this.vq.publish()) this.#transport.notify(REQUEST_QUEUE);
    this.collect();
    this.#wait.afterFlush();
  }

  /** Collects every answer the device has put in the used ring. Returns how many settled. */
  collect(): number {
    if (this.#resetting) return 0;
    let n = 0;
    try {
      // popUsed() reads used.idx only when it has caught up with the value it last read, and
      // with no chain out nothing can come back: no read at all (a device that puts something
      // in the used ring anyway is caught by the next read, §2.7.8).
      while (this.vq.inFlight > 0) {
        const head = this.vq.popUsed();
        if (head < 0) break;
        this.#complete(head, this.vq.usedLen);
        n++;
      }
    } catch (error) {
      this.#ringBroken(error);
    }
    this.#answered += n;
    return n;
  }

  /** The device broke the ring protocol: nothing it says can be trusted any more. */
  #ringBroken(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    // With a handler (VIRTIO_F_RING_RESET) the queue is reset instead of failed.
    if (!(e instanceof VirtqueueError && this.#onBroken?.(e) === true)) this.fail(e);
  }

  #complete(head: number, written: number): void {
    const slot = this.#headToSlot[head];
    if (slot < 0) this.#noSlot(head);
    this.#headToSlot[head] = -1;
    const done = this.#done[slot];
    this.#done[slot] = null;
    if (this.#state[slot] === IN_FLIGHT && done !== null) {
      this.#inFlight--;
      const ext = this.#extView[slot];
      const status = (ext ?? this.#slotView[slot]).getUint8(this.#statusOffset[slot]);
      // The common case without a call; #refused() builds the error of everything else. One
      // call site of `done`: the JIT inlines each site on its own budget.
      const ok = status === VIRTIO_IOMMU_S_OK && written >= this.#writeLen[slot];
      done(ok ? null : this.#refused(slot, status, written, this.#writeLen[slot]), slot);
    }
    // A request that timed out (ABANDONED) only gives its slot back now.
    this.#release(slot);
  }

  /** The error of a request the device answered with a status other than OK, or too short. */
  #refused(slot: number, status: number, written: number, writeLen: number): Error | null {
    const kind = this.#kind[slot];
    return requestError(KIND_NAMES[kind] ?? `type ${kind}`, status, written, writeLen);
  }

  /** Fails for a used chain no request slot owns. */
  #noSlot(head: number): never {
    throw new VirtqueueError(
      REQUEST_QUEUE,
      `Device returned request ${head}, which has no request slot`,
    );
  }

  /** Gives back a slot taken with {@link RequestQueue.tryTakeSlot} and never sent. */
  release(slot: number): void {
    this.#release(slot);
  }

  #release(slot: number): void {
    this.#state[slot] = FREE;
    this.#pool.release(slot);
  }

  /**
   * Fails the queue with a {@link DeviceResetError} when the device set DEVICE_NEEDS_RESET
   * (§2.1.1); returns whether the queue is still usable.
   */
  checkDevice(): boolean {
    if ((this.#transport.getStatus() & STATUS_DEVICE_NEEDS_RESET) === 0) return true;
    this.fail(new DeviceResetError("The device set DEVICE_NEEDS_RESET with requests in flight"));
    return false;
  }

  /** Times out requests and slot waiters whose deadline is before `now`. */
  expire(now: number): void {
    this.#expire(now);
    // Every slot can stay taken (timed-out requests the device never returns keep theirs), and a
    // caller must not wait for one forever.
    this.#pool.expire(now, () => new RequestTimeoutError("Queued", this.#timeoutMs));
  }

  #expire(now: number): void {
    for (let slot = 0; slot < this.slots; slot++) {
      if (this.#state[slot] !== IN_FLIGHT) continue;
      const deadline = this.#deadline[slot];
      if (deadline < 0) {
        // First look at this request since it was sent (see send()): start its clock. It was
        // sent at most one busy-poll (#spinMs) ago.
        this.#deadline[slot] = now - deadline;
        continue;
      }
      if (deadline > now) continue;
      const done = this.#done[slot];
      this.#done[slot] = null;
      this.#state[slot] = ABANDONED;
      this.#inFlight--;
      const kind = this.#kind[slot];
      done?.(
        new RequestTimeoutError(KIND_NAMES[kind] ?? `type ${kind}`, this.#timeoutMs),
        slot,
      );
    }
  }

  /**
   * Rejects every pending request with `error` and refuses new ones until
   * {@link RequestQueue.restart}. Used when the device broke the protocol or needs a reset.
   */
  fail(error: Error): void {
    if (this.#broken === null) this.#broken = error;
    this.#wait.stop();
    this.#failInFlight(error);
    // A waiter never got a slot: run(-1) tells it to reject its own promise.
    this.#pool.failWaiters();
  }

  /** Rejects every request in flight with `error`; their slots stay taken (ABANDONED). */
  #failInFlight(error: Error): void {
    this.#inFlight = 0;
    for (let slot = 0; slot < this.slots; slot++) {
      if (this.#state[slot] !== IN_FLIGHT) continue;
      const done = this.#done[slot];
      this.#done[slot] = null;
      this.#state[slot] = ABANDONED;
      done?.(error, slot);
    }
  }

  /**
   * First half of a reset of this queue alone (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1): closes
   * the line (callers wanting a slot wait, in order, nothing is refused), stops polling, and
   * rejects every request in flight with `error`, since the device may or may not have
   * executed it. Their slots stay taken until {@link RequestQueue.afterQueueReset}.
   */
  beforeQueueReset(error: Error): void {
    this.#pool.close();
    this.#wait.stop();
    this.#resetting = true;
    this.#failInFlight(error);
  }

  /**
   * Second half, once the device has reset the queue (it no longer reads or writes it): the
   * ring back to its initial state, every slot free (still behind the closed line), the queue
   * handed to the device again and no longer broken. Requests that must go first are sent
   * with {@link RequestQueue.acquireAhead}; {@link RequestQueue.reopen} then lets the waiting
   * callers in.
   */
  afterQueueReset(): void {
    this.#resetting = false;
    this.#clearRing();
    this.enable();
  }

  /**
   * Like {@link RequestQueue.acquire}, but ahead of every caller waiting behind a closed line
   * (behind earlier urgent callers): for the requests a queue reset must send first.
   */
  acquireAhead(run: (slot: number, error?: Error) => void): void {
    if (this.#broken) throw this.#broken;
    const slot = this.#pool.takeAhead();
    if (slot >= 0) {
      run(slot);
      return;
    }
    this.#pool.waitAhead(run);
    this.#wait.start();
  }

  /** Opens the line closed by {@link RequestQueue.beforeQueueReset}: waiting callers get slots. */
  reopen(): void {
    this.#pool.open();
    if (this.#inFlight > 0 || this.#pool.waiting > 0) this.#wait.start();
  }

  /**
   * After a device reset: forgets everything in flight (rejecting it with `error` if not yet
   * settled), resets the ring to its initial state and accepts requests again.
   */
  restart(error: Error): void {
    this.#resetting = false;
    this.fail(error);
    this.#clearRing();
  }

  /** The ring back to its initial state, every slot free and pointed at its own bytes. */
  #clearRing(): void {
    this.vq.reset();
    for (let i = 0; i < this.slots; i++) this.#pointAtSlot(i);
    this.#headToSlot.fill(-1);
    this.#state.fill(FREE);
    this.#inFlight = 0;
    this.#pool.reset();
    this.#broken = null;
  }

  /** Frees the DMA memory. The queue is unusable afterwards. */
  destroy(): void {
    this.fail(new DeviceResetError("The request queue was destroyed"));
    this.vq.destroy();
    this.#mem.destroy();
  }
}
