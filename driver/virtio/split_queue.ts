/**
 * The driver side of a split virtqueue (virtio 1.3 §2.7): descriptor free list, chains with the
 * device-readable part before the device-writable one, indirect descriptor tables, EVENT_IDX
 * and the NO_INTERRUPT / NO_NOTIFY flags, and a driver-side shadow of every chain in flight so
 * that each used element the device returns is checked before it is trusted.
 *
 * The hot path ({@link SplitVirtqueue.add2}, {@link SplitVirtqueue.publish},
 * {@link SplitVirtqueue.hasUsed}, {@link SplitVirtqueue.popUsed}) allocates nothing and uses no
 * `bigint`: 64-bit addresses travel as two 32-bit halves. It implements {@link Virtqueue}, the
 * interface the request and event queues use; the checks of the chains the driver adds are in
 * `chain_checks.ts`, shared with the packed ring.
 *
 * Longer than the 400-line guideline on purpose: one class whose hot methods (add2, addPair,
 * publish, popUsed) share the private shadow state; splitting it across files would put a call
 * or an accessor between the hot path and that state.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import { addHi, addLo, TWO_POW_32 } from "../../util/u64.ts";
import {
  chainOk,
  checkChain,
  checkPairBuffers,
  checkPairIndex,
  queueParams,
  refuseAdd,
  refusePair,
} from "./chain_checks.ts";
import {
  type DmaBuffer,
  type RingLayout,
  type Virtqueue,
  VirtqueueError,
  type VirtqueueOptions,
} from "./virtqueue.ts";
import {
  AVAIL_ALIGN,
  AVAIL_FLAGS,
  AVAIL_IDX,
  AVAIL_RING,
  availEventOffset,
  availRingSize,
  DESC_ADDR,
  DESC_ALIGN,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  descTableSize,
  needEvent,
  USED_ALIGN,
  USED_ELEM_SIZE,
  USED_FLAGS,
  USED_IDX,
  USED_RING,
  usedEventOffset,
  usedRingSize,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../../spec/split_ring.ts";
import type { QueueAddresses } from "../../transport/transport.ts";
import { allocTables, loadWord, ringWords, storeWord } from "./ring_memory.ts";

/** Shadow state of a descriptor that is free or not the head of a chain. */
const HEAD_FREE = 0;
/** Shadow state of a chain head added to the avail ring but not yet published. */
const HEAD_ADDED = 1;
/** Shadow state of a chain head published to the device and not yet returned. */
const HEAD_PUBLISHED = 2;
/** Rounds `n` up to a multiple of `align` (a power of two). */
function alignUp(n: number, align: number): number {
  return (n + align - 1) & ~(align - 1);
}

/**
 * A split virtqueue, driver side, in one DMA region (descriptor table, avail ring, used ring)
 * plus, with indirect descriptors, a second region of per-descriptor indirect tables.
 *
 * Used-buffer notifications start disabled (the driver polls); see
 * {@link SplitVirtqueue.setInterrupts}.
 *
 * @example Queue a request and collect the device's answer
 * ```ts
 * import { SimulatedMemory, SplitVirtqueue } from "@viommu/viommu";
 *
 * const memory = new SimulatedMemory();
 * const vq = new SplitVirtqueue(0, 8, memory);
 * const req = memory.alloc(64);
 * const head = vq.add2(req.addrLo, req.addrHi, 16, req.addrLo + 16, req.addrHi, 48);
 * const notify = vq.publish(); // then transport.notify(0) when true
 * // ... the device answers; later:
 * if (vq.hasUsed()) {
 *   const id = vq.popUsed(); // === head
 *   console.assert(id === head && vq.usedLen <= 48);
 * }
 * console.assert(head === 0 && notify);
 * vq.destroy();
 * ```
 */
export class SplitVirtqueue implements Virtqueue {
  /** Queue index on the device. */
  readonly index: number;
  /** Always `"split"`. */
  readonly layout: RingLayout = "split";
  /** Number of descriptors (a power of two, 1 to 32768). */
  readonly size: number;
  /** Device-visible addresses of the three parts, for `Transport.enableQueue`. */
  readonly addresses: QueueAddresses;
  /** Entries of each indirect table; 0 when indirect descriptors are not used. */
  readonly maxIndirect: number;
  /** Whether VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** Pinned descriptor pairs ({@link VirtqueueOptions.pairs}). */
  readonly pairs: number;

  #dma: DmaAllocator;
  #region: DmaRegion;
  #view: DataView;
  /** 16-bit little-endian view over the region for Atomics on idx/flags/event fields, or null. */
  #u16: Uint16Array | null;
  #indirectRegion: DmaRegion | null;
  #indirectView: DataView | null;
  #mask: number;

  #availOff: number;
  #usedOff: number;
  #usedEventOff: number;
  #availEventOff: number;

  /** Shadow `next` links: the free list, and the links of each chain in flight. */
  #next: Uint16Array;
  /** Ring descriptors held by the chain whose head is `i` (valid while `#state[i]` ≠ FREE). */
  #chainCount: Uint16Array;
  /** Per descriptor: {@link HEAD_FREE} (free or not a head), {@link HEAD_ADDED}, {@link HEAD_PUBLISHED}. */
  #state: Uint8Array;
  /** Shadow of the avail ring slots, so publish() never reads shared memory back. */
  #availShadow: Uint16Array;
  /** Device-writable bytes of the chain whose head is `i`. */
  #writable: Float64Array;
  /** Per pinned pair: the readable buffer's size as set (0: not set), and its length as written. */
  #pairCap: Float64Array;
  #pairLen: Float64Array;
  #freeHead = 0;
  #numFree = 0;
  #inFlight = 0;
  /** Chains published and not yet returned. */
  #published = 0;

  /** Driver's free-running avail idx (next value to publish). */
  #availIdx = 0;
  /** avail.idx at the last publish(). */
  #publishedIdx = 0;
  /** Next used idx the driver will consume. */
  #lastUsed = 0;
  /**
   * used.idx as last read and checked: the elements before it may be popped without reading
   * used.idx again (one acquire load covers them all, §2.7.13).
   */
  #seenUsed = 0;
  #usedLen = 0;
  #interrupts = false;
  #broken = false;
  #destroyed = false;

  /**
   * Allocates and initialises queue `index` with `size` descriptors from `dma`. Throws
   * RangeError when `size` is not a power of two in 1..32768 or `index` is not a u16.
   */
  constructor(index: number, size: number, dma: DmaAllocator, options: VirtqueueOptions = {}) {
    const { maxIndirect, pairs } = queueParams(index, size, options, true);
    this.index = index;
    this.size = size;
    this.maxIndirect = maxIndirect;
    this.pairs = pairs;
    this.eventIdx = options.eventIdx === true;
    this.#dma = dma;
    this.#mask = size - 1;

    // Part alignment, §2.7 table "Virtqueue Part Alignment": desc 16, avail 2, used 4. The
    // region itself is page-aligned, so offset 0 satisfies the descriptor table.
    const descOff = alignUp(0, DESC_ALIGN);
    this.#availOff = alignUp(descOff + descTableSize(size), AVAIL_ALIGN);
    this.#usedOff = alignUp(this.#availOff + availRingSize(size), USED_ALIGN);
    const total = this.#usedOff + usedRingSize(size);
    this.#usedEventOff = this.#availOff + usedEventOffset(size);
    this.#availEventOff = this.#usedOff + availEventOffset(size);

    this.#region = dma.alloc(total, 4096);
    this.#view = this.#region.view;
    this.#u16 = ringWords(this.#region);
    this.#indirectRegion = allocTables(dma, this.#region, size * maxIndirect * DESC_SIZE);
    this.#indirectView = this.#indirectRegion?.view ?? null;

    const r = this.#region;
    this.addresses = {
      descLo: addLo(r.addrLo, descOff),
      descHi: addHi(r.addrLo, r.addrHi, descOff),
      driverLo: addLo(r.addrLo, this.#availOff),
      driverHi: addHi(r.addrLo, r.addrHi, this.#availOff),
      deviceLo: addLo(r.addrLo, this.#usedOff),
      deviceHi: addHi(r.addrLo, r.addrHi, this.#usedOff),
    };

    this.#next = new Uint16Array(size);
    this.#chainCount = new Uint16Array(size);
    this.#state = new Uint8Array(size);
    this.#availShadow = new Uint16Array(size);
    this.#writable = new Float64Array(size);
    this.#pairCap = new Float64Array(pairs);
    this.#pairLen = new Float64Array(pairs);
    this.#initState();
  }

  /** Number of free descriptors. */
  get numFree(): number {
    return this.#numFree;
  }

  /** Number of chains added and not yet returned by {@link SplitVirtqueue.popUsed}. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Length the device reported for the element last returned by {@link SplitVirtqueue.popUsed}. */
  get usedLen(): number {
    return this.#usedLen;
  }

  /** Whether the device broke a ring rule (a {@link VirtqueueError} was thrown) since the last reset. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * Adds a chain of one device-readable buffer (`rLo`/`rHi`, `rLen` bytes) followed by one
   * device-writable buffer (`wLo`/`wHi`, `wLen` bytes); a zero length omits that part. Returns
   * the head descriptor id, or -1 when the ring has no room (the caller waits for
   * {@link SplitVirtqueue.popUsed}). Not visible to the device until
   * {@link SplitVirtqueue.publish}. Allocation-free.
   */
  add2(rLo: number, rHi: number, rLen: number, wLo: number, wHi: number, wLen: number): number {
    // One cheap test for the common case; the reasons are worked out only for a refusal (kept
    // apart so this hot method stays small enough to inline).
    if (this.#destroyed || !chainOk(rLo, rHi, rLen, wLo, wHi, wLen, this.size)) {
      this.#refuseAdd(rLo, rHi, rLen, wLo, wHi, wLen);
    }
    const n = (rLen !== 0 ? 1 : 0) + (wLen !== 0 ? 1 : 0);
    if (n === 2 && this.maxIndirect >= 2) return this.#addIndirect2(rLo, rHi, rLen, wLo, wHi, wLen);
    const view = this.#view;
    if (this.#numFree < n) return -1;
    const head = this.#freeHead;
    if (n === 2) {
      // Readable first, then writable (§2.7.4.2 MUST).
      const second = this.#next[head];
      this.#freeHead = this.#next[second];
      writeDesc(view, head * DESC_SIZE, rLo, rHi, rLen, VIRTQ_DESC_F_NEXT, second);
      writeDesc(view, second * DESC_SIZE, wLo, wHi, wLen, VIRTQ_DESC_F_WRITE, 0);
    } else {
      this.#freeHead = this.#next[head];
      if (rLen !== 0) writeDesc(view, head * DESC_SIZE, rLo, rHi, rLen, 0, 0);
      else writeDesc(view, head * DESC_SIZE, wLo, wHi, wLen, VIRTQ_DESC_F_WRITE, 0);
    }
    return this.#commit(head, n, wLen);
  }

  /**
   * Points pinned pair `pair` at a device-readable buffer of up to `rLen` bytes and a
   * device-writable one of `wLen` bytes (descriptors `2·pair` and `2·pair + 1`, readable first,
   * §2.7.4.2). Both lengths must be non-zero u32s, at most 2^32 bytes together (§2.7.5.2). The
   * pair must not be in flight. Throws RangeError otherwise. Allocation-free.
   */
  setPair(
    pair: number,
    rLo: number,
    rHi: number,
    rLen: number,
    wLo: number,
    wHi: number,
    wLen: number,
  ): void {
    this.#checkLive();
    checkPairIndex(pair, this.pairs);
    if (this.#state[2 * pair] !== HEAD_FREE) {
      throw new RangeError(`Pair ${pair} is in flight: its buffers cannot change`);
    }
    checkPairBuffers(pair, this.pairs, rLo, rHi, rLen, wLo, wHi, wLen, this.size);
    const off = 2 * pair * DESC_SIZE;
    writeDesc(this.#view, off, rLo, rHi, rLen, VIRTQ_DESC_F_NEXT, 2 * pair + 1);
    writeDesc(this.#view, off + DESC_SIZE, wLo, wHi, wLen, VIRTQ_DESC_F_WRITE, 0);
    this.#pairCap[pair] = rLen;
    this.#pairLen[pair] = rLen;
    this.#writable[2 * pair] = wLen;
  }

  /**
   * Adds pinned pair `pair` as a chain whose readable part is its first `rLen` bytes (1 up to
   * the size given to {@link SplitVirtqueue.setPair}; only a changed length is written). Returns
   * the head id, `2·pair`. Throws RangeError for a pair that is not set, is in flight, or
   * `rLen` out of range. Not visible to the device until {@link SplitVirtqueue.publish}.
   * Allocation-free.
   */
  addPair(pair: number, rLen: number): number {
    const head = pair * 2;
    // One test (kept small: this is the hot path). The size is 0 for a pair not set or after
    // destroy(), undefined for no pair at all: both refuse any length.
    if (
      !((rLen >>> 0) === rLen && rLen !== 0 && rLen <= this.#pairCap[pair]) ||
      this.#state[head] !== HEAD_FREE
    ) this.#refusePair(pair, rLen);
    if (rLen !== this.#pairLen[pair]) {
      this.#view.setUint32(head * DESC_SIZE + DESC_LEN, rLen, true);
      this.#pairLen[pair] = rLen;
    }
    // Its chain count (0) and writable size were set by setPair(): count 0 keeps popUsed()
    // from freeing the pair's descriptors.
    this.#state[head] = HEAD_ADDED;
    this.#inFlight++;
    return this.#toAvail(head);
  }

  /** Throws the error for arguments {@link SplitVirtqueue.addPair} refuses. */
  #refusePair(pair: number, rLen: number): never {
    this.#checkLive();
    const cap = this.#pairCap[pair] ?? 0;
    refusePair(pair, this.pairs, rLen, cap, this.#state[2 * pair] !== HEAD_FREE);
  }

  /**
   * Adds a chain of `readable` buffers followed by `writable` buffers (device-readable before
   * device-writable, virtio 1.3 §2.7.4.2). Returns the head id, or -1 when the ring has no
   * room. Throws TypeError for an empty chain, RangeError for a chain longer than the queue,
   * a zero or non-u32 length, or more than 2^32 bytes in total.
   */
  add(readable: readonly DmaBuffer[], writable: readonly DmaBuffer[]): number {
    this.#checkLive();
    const wTotal = checkChain(readable, writable, this.size);
    const nr = readable.length;
    const n = nr + writable.length;

    if (n >= 2 && n <= this.maxIndirect) {
      if (this.#numFree < 1) return -1;
      const head = this.#freeHead;
      this.#freeHead = this.#next[head];
      const tv = this.#indirectView as DataView;
      const toff = head * this.maxIndirect * DESC_SIZE;
      for (let i = 0; i < n; i++) {
        const b = i < nr ? readable[i] : writable[i - nr];
        const last = i === n - 1;
        const flags = (last ? 0 : VIRTQ_DESC_F_NEXT) | (i >= nr ? VIRTQ_DESC_F_WRITE : 0);
        writeDesc(tv, toff + i * DESC_SIZE, b.addrLo, b.addrHi, b.length, flags, last ? 0 : i + 1);
      }
      this.#writeIndirectHead(head, n);
      return this.#commit(head, 1, wTotal);
    }

    if (this.#numFree < n) return -1;
    const head = this.#freeHead;
    let d = head;
    for (let i = 0; i < n; i++) {
      const b = i < nr ? readable[i] : writable[i - nr];
      const last = i === n - 1;
      const flags = (last ? 0 : VIRTQ_DESC_F_NEXT) | (i >= nr ? VIRTQ_DESC_F_WRITE : 0);
      // The free list is linked through #next, so the chain's links are the list's links.
      const next = this.#next[d];
      writeDesc(this.#view, d * DESC_SIZE, b.addrLo, b.addrHi, b.length, flags, last ? 0 : next);
      d = next;
    }
    this.#freeHead = d;
    return this.#commit(head, n, wTotal);
  }

  /**
   * Makes every chain added since the last call visible to the device by writing avail.idx
   * after the descriptors and ring slots (virtio 1.3 §2.7.13), then returns whether the device
   * wants an available-buffer notification (§2.7.10): with EVENT_IDX,
   * `needEvent(avail_event, new, old)`; otherwise `!(used.flags & NO_NOTIFY)`. Returns false
   * when nothing was added. Allocation-free.
   */
  publish(): boolean {
    this.#checkLive();
    const next = this.#availIdx;
    const old = this.#publishedIdx;
    if (next === old) return false;
    // §2.7.13 step 3: a write barrier before avail.idx (the seq-cst store orders the ring writes
    // before it), then a full barrier before reading the device's suppression fields (a
    // seq-cst store followed by a seq-cst load).
    this.#store16(this.#availOff + AVAIL_IDX, next);
    for (let i = old; i !== next; i = (i + 1) & 0xffff) {
      this.#state[this.#availShadow[i & this.#mask]] = HEAD_PUBLISHED;
      this.#published++;
    }
    this.#publishedIdx = next;
    if (this.eventIdx) return needEvent(this.#load16(this.#availEventOff), next, old);
    return (this.#load16(this.#usedOff + USED_FLAGS) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Whether the device has put elements in the used ring that were not popped yet. */
  hasUsed(): boolean {
    this.#checkLive();
    return this.#lastUsed !== this.#seenUsed ||
      this.#load16(this.#usedOff + USED_IDX) !== this.#lastUsed;
  }

  /**
   * Pops one used element: returns its head id and sets {@link SplitVirtqueue.usedLen}, or
   * returns -1 when there is none; frees the chain's descriptors. used.idx is read (with
   * acquire ordering) only once the elements of the previous read are all popped. Everything
   * read from the used ring is checked against the driver's shadow first; a bad used.idx, id or
   * len throws {@link VirtqueueError} and leaves the queue {@link SplitVirtqueue.broken}
   * (further calls throw again until {@link SplitVirtqueue.reset}). Allocation-free.
   */
  popUsed(): number {
    this.#checkLive();
    const last = this.#lastUsed;
    if (last === this.#seenUsed && !this.#readUsedIdx(last)) return -1;
    const elem = this.#usedOff + USED_RING + (last & this.#mask) * USED_ELEM_SIZE;
    const id = this.#view.getUint32(elem, true);
    const len = this.#view.getUint32(elem + 4, true);
    // §2.7.8.1: the device MUST have written at least len bytes into the writable part.
    if (id >= this.size || this.#state[id] !== HEAD_PUBLISHED || len > this.#writable[id]) {
      this.#badUsedElem(last, id, len);
    }
    // A pinned pair (chain count 0) stays out of the free list.
    if (this.#chainCount[id] !== 0) this.#freeChain(id);
    this.#state[id] = HEAD_FREE;
    this.#inFlight--;
    this.#published--;
    this.#lastUsed = (last + 1) & 0xffff;
    this.#usedLen = len;
    // With interrupts on, used_event follows every pop. Off, it only has to stay out of the
    // device's reach: the device is at most `size` (<= 32768) ahead of the last pop, so moving
    // it every 16384 pops keeps it unreachable, and saves a seq-cst store per request.
    if (this.eventIdx && (this.#interrupts || (this.#lastUsed & 0x3fff) === 0)) {
      this.#writeUsedEvent();
    }
    return id;
  }

  /** Gives chain `id`'s descriptors back: walks the shadow links (never the shared table). */
  #freeChain(id: number): void {
    const count = this.#chainCount[id];
    let tail = id;
    for (let i = 1; i < count; i++) tail = this.#next[tail];
    this.#next[tail] = this.#freeHead;
    this.#freeHead = id;
    this.#numFree += count;
    this.#writable[id] = 0;
  }

  /**
   * Turns used-buffer notifications on or off (virtio 1.3 §2.7.10). Without EVENT_IDX this
   * clears or sets avail.flags NO_INTERRUPT. With EVENT_IDX avail.flags stays 0 (§2.7.7.1)
   * and used_event is written instead: enabled → the last seen used idx, refreshed by every
   * popUsed(), so the next used element interrupts; disabled → last seen − 1 (mod 2^16), the
   * value the device's used.idx is farthest from, refreshed every 16384 pops: at most `size`
   * (≤ 32768) elements can be outstanding, so the device never reaches it.
   *
   * Returns true when the used ring is empty after the change; false means elements arrived
   * meanwhile, so a caller about to wait for an interrupt must poll first.
   */
  setInterrupts(enabled: boolean): boolean {
    this.#checkLive();
    this.#interrupts = enabled;
    if (this.eventIdx) this.#writeUsedEvent();
    else this.#store16(this.#availOff + AVAIL_FLAGS, enabled ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT);
    // The seq-cst store above is a full barrier before this re-check of used.idx.
    return !this.hasUsed();
  }

  /**
   * Puts the queue back into its initial state after a device reset: all descriptors free,
   * indices 0, ring memory and indirect tables zeroed, interrupts disabled, not broken.
   * Returns the head ids that were in flight (ascending), whose requests the caller must fail
   * or resubmit. The device must not be using the queue (reset it first).
   */
  reset(): number[] {
    this.#checkLive();
    const lost: number[] = [];
    for (let i = 0; i < this.size; i++) {
      if (this.#state[i] !== HEAD_FREE) lost.push(i);
    }
    this.#region.bytes.fill(0);
    this.#indirectRegion?.bytes.fill(0);
    this.#chainCount.fill(0);
    this.#state.fill(HEAD_FREE);
    this.#availShadow.fill(0);
    this.#writable.fill(0);
    this.#inFlight = 0;
    this.#published = 0;
    this.#availIdx = 0;
    this.#publishedIdx = 0;
    this.#lastUsed = 0;
    this.#seenUsed = 0;
    this.#usedLen = 0;
    this.#interrupts = false;
    this.#broken = false;
    this.#initState();
    return lost;
  }

  /** Frees the queue's DMA memory. The queue must not be used afterwards; a second call does nothing. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#pairCap.fill(0); // addPair() refuses from now on
    this.#dma.free(this.#region);
    if (this.#indirectRegion !== null) this.#dma.free(this.#indirectRegion);
  }

  /** Initial free list and flags; the ring memory is zero (fresh or just cleared). */
  #initState(): void {
    // Pinned pairs 2p → 2p + 1 (§2.7.5: NEXT on the readable one), then the free list of the
    // rest, 2·pairs → … → size−1. A pair's buffers are set by setPair() (none yet).
    const pinned = 2 * this.pairs;
    for (let i = 0; i < this.size; i++) this.#next[i] = (i + 1) & this.#mask;
    for (let p = 0; p < this.pairs; p++) {
      this.#view.setUint16(2 * p * DESC_SIZE + DESC_FLAGS, VIRTQ_DESC_F_NEXT, true);
      this.#view.setUint16(2 * p * DESC_SIZE + DESC_NEXT, 2 * p + 1, true);
      this.#view.setUint16((2 * p + 1) * DESC_SIZE + DESC_FLAGS, VIRTQ_DESC_F_WRITE, true);
    }
    this.#pairCap.fill(0);
    this.#pairLen.fill(0);
    this.#freeHead = pinned & this.#mask;
    this.#numFree = this.size - pinned;
    // §2.7.8: used.flags starts 0 — the used ring memory is zeroed, nothing to write.
    if (this.eventIdx) {
      // §2.7.7.1: with EVENT_IDX avail.flags MUST be 0; suppress via used_event instead.
      this.#writeUsedEvent();
    } else {
      // The driver polls by default: ask the device not to interrupt (§2.7.7).
      this.#store16(this.#availOff + AVAIL_FLAGS, VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
  }

  /** Writes the ring descriptor `head` that points at its indirect table of `n` entries. */
  #writeIndirectHead(head: number, n: number): void {
    const r = this.#indirectRegion as DmaRegion;
    const off = head * this.maxIndirect * DESC_SIZE;
    let lo = r.addrLo + off;
    let hi = r.addrHi;
    if (lo >= TWO_POW_32) {
      lo -= TWO_POW_32;
      hi = (hi + 1) >>> 0;
    }
    // §2.7.5.3.1: INDIRECT is never combined with NEXT on the ring descriptor.
    writeDesc(this.#view, head * DESC_SIZE, lo, hi, n * DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
  }

  /** {@link SplitVirtqueue.add2} of a 2-buffer chain as one indirect descriptor (§2.7.5.3). */
  #addIndirect2(
    rLo: number,
    rHi: number,
    rLen: number,
    wLo: number,
    wHi: number,
    wLen: number,
  ): number {
    if (this.#numFree < 1) return -1;
    const head = this.#freeHead;
    this.#freeHead = this.#next[head];
    const tv = this.#indirectView as DataView;
    const toff = head * this.maxIndirect * DESC_SIZE;
    writeDesc(tv, toff, rLo, rHi, rLen, VIRTQ_DESC_F_NEXT, 1);
    writeDesc(tv, toff + DESC_SIZE, wLo, wHi, wLen, VIRTQ_DESC_F_WRITE, 0);
    this.#writeIndirectHead(head, 2);
    return this.#commit(head, 1, wLen);
  }

  /** Throws the error for arguments {@link SplitVirtqueue.add2} refuses. */
  #refuseAdd(
    rLo: number,
    rHi: number,
    rLen: number,
    wLo: number,
    wHi: number,
    wLen: number,
  ): never {
    this.#checkLive();
    refuseAdd(rLo, rHi, rLen, wLo, wHi, wLen, this.size);
  }

  /** Records chain `head` in the shadow and puts it in the next avail ring slot. */
  #commit(head: number, count: number, writable: number): number {
    this.#numFree -= count;
    this.#chainCount[head] = count;
    this.#state[head] = HEAD_ADDED;
    this.#writable[head] = writable;
    this.#inFlight++;
    return this.#toAvail(head);
  }

  /** Puts chain `head` in the next avail ring slot (unpublished); returns `head`. */
  #toAvail(head: number): number {
    // §2.7.13.2: ring slot = idx mod size; avail.idx itself is only written by publish().
    const slot = this.#availIdx & this.#mask;
    this.#availShadow[slot] = head;
    this.#view.setUint16(this.#availOff + AVAIL_RING + slot * 2, head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    return head;
  }

  /** Writes used_event for the current interrupt state (EVENT_IDX only). */
  #writeUsedEvent(): void {
    const value = this.#interrupts ? this.#lastUsed : (this.#lastUsed - 1) & 0xffff;
    this.#store16(this.#usedEventOff, value);
  }

  /**
   * Reads used.idx once the elements of the previous read are popped: false when it has not
   * moved; fails when it moved further than the chains out allow.
   */
  #readUsedIdx(last: number): boolean {
    // Acquire: read used.idx before the elements it covers (§2.7.13, device writes len first).
    const usedIdx = this.#load16(this.#usedOff + USED_IDX);
    if (usedIdx === last) return false;
    const pending = (usedIdx - last) & 0xffff;
    if (pending > this.size || pending > this.#published) this.#badUsedIdx(last, usedIdx);
    this.#seenUsed = usedIdx;
    return true;
  }

  /** Fails for a used.idx that moved further than the chains out allow. */
  #badUsedIdx(last: number, usedIdx: number): never {
    const pending = (usedIdx - last) & 0xffff;
    if (pending > this.size) {
      this.#fail(
        `Queue ${this.index}: used.idx moved from ${last} to ${usedIdx}, ` +
          `${pending} entries, more than the queue size ${this.size}`,
      );
    }
    this.#fail(
      `Queue ${this.index}: used.idx moved from ${last} to ${usedIdx}, ` +
        `${pending} entries, more than the ${this.#published} published chains in flight`,
    );
  }

  /** Fails for a used element whose id or len the driver's shadow refutes. */
  #badUsedElem(last: number, id: number, len: number): never {
    if (id >= this.size) {
      this.#fail(
        `Queue ${this.index}: used id ${id} at used idx ${last} is not below ${this.size}`,
      );
    }
    const state = this.#state[id];
    if (state !== HEAD_PUBLISHED) {
      this.#fail(
        `Queue ${this.index}: used id ${id} at used idx ${last} is not the head of a chain ` +
          (state === HEAD_ADDED
            ? "published to the device"
            : "in flight (never submitted, already completed, or not a head)"),
      );
    }
    this.#fail(
      `Queue ${this.index}: used len ${len} for id ${id} exceeds the ` +
        `${this.#writable[id]} writable bytes of its chain`,
    );
  }

  /** Marks the queue broken and throws a {@link VirtqueueError}. */
  #fail(message: string): never {
    this.#broken = true;
    throw new VirtqueueError(this.index, message);
  }

  #checkLive(): void {
    if (this.#destroyed) throw new TypeError(`Queue ${this.index} was destroyed`);
  }

  /** Seq-cst 16-bit load at byte offset `off` of the ring region. */
  #load16(off: number): number {
    return loadWord(this.#u16, this.#view, off);
  }

  /** Seq-cst 16-bit store at byte offset `off` of the ring region. */
  #store16(off: number, value: number): void {
    storeWord(this.#u16, this.#view, off, value);
  }
}

/** Writes one 16-byte descriptor at `off` in `view` (§2.7.5). Allocation-free. */
function writeDesc(
  view: DataView,
  off: number,
  lo: number,
  hi: number,
  len: number,
  flags: number,
  next: number,
): void {
  view.setUint32(off + DESC_ADDR, lo, true);
  view.setUint32(off + DESC_ADDR + 4, hi, true);
  view.setUint32(off + DESC_LEN, len, true);
  view.setUint16(off + DESC_FLAGS, flags, true);
  view.setUint16(off + DESC_NEXT, next, true);
}
