/**
 * The driver side of a packed virtqueue (virtio 1.3 §2.8): one descriptor ring that both sides
 * walk in order, driver and device wrap counters (§2.8.1), buffer ids, chained (§2.8.6) and
 * indirect (§2.8.7) descriptors, both event suppression structures with EVENT_IDX descriptor
 * events (§2.8.10, §2.8.14), and a driver-side shadow of every buffer in flight so that each
 * used descriptor the device writes is checked before it is trusted.
 *
 * The device is not trusted: a used descriptor whose id is out of range, not in flight or not
 * yet published, whose length exceeds the buffer's writable bytes, or whose AVAIL/USED bits
 * are neither "still available" nor "used in this lap" throws {@link VirtqueueError}. So does a
 * device that writes into ring slots it does not own (seen when the driver reuses the slot).
 * The driver reads only the next slot in ring order (§2.8.2), so nothing can make it loop.
 *
 * The hot path ({@link PackedVirtqueue.add2}, {@link PackedVirtqueue.addPair},
 * {@link PackedVirtqueue.publish}, {@link PackedVirtqueue.hasUsed},
 * {@link PackedVirtqueue.popUsed}) allocates nothing and uses no `bigint`.
 *
 * Longer than the 400-line guideline on purpose, as the split ring: one class whose hot methods
 * share the private cursors and shadow arrays; splitting it would put calls between them.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import type { QueueAddresses } from "../../transport/transport.ts";
import {
  allocTables,
  loadDword,
  loadWord,
  ringDwords,
  ringWords,
  storeWord,
} from "./ring_memory.ts";
import { addHi, addLo } from "../../util/u64.ts";
import {
  availState,
  descRingSize,
  EVENT_FLAGS,
  EVENT_FLAGS_MASK,
  EVENT_OFF_WRAP,
  EVENT_SUPPRESS_SIZE,
  eventOffWrap,
  PACKED_DESC_ADDR,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  PACKED_STATE_MASK,
  passedEvent,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  usedState,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../../spec/packed_ring.ts";
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

/**
 * A packed virtqueue, driver side, in one DMA region (descriptor ring, then the driver and the
 * device event suppression structures) plus, with indirect descriptors, a region of per-id
 * indirect tables. The size need not be a power of two (§2.8).
 *
 * Used-buffer notifications start disabled (the driver polls); see
 * {@link PackedVirtqueue.setInterrupts}.
 *
 * @example Queue a request and collect the device's answer
 * ```ts
 * import { PackedVirtqueue } from "./packed_queue.ts";
 * import { SimulatedMemory } from "../../transport/memory.ts";
 *
 * const memory = new SimulatedMemory();
 * const vq = new PackedVirtqueue(0, 8, memory);
 * const req = memory.alloc(64);
 * const id = vq.add2(req.addrLo, req.addrHi, 16, req.addrLo + 16, req.addrHi, 48);
 * const notify = vq.publish(); // then transport.notify(0) when true
 * // ... the device answers; later:
 * if (vq.hasUsed()) console.log(vq.popUsed() === id, vq.usedLen);
 * console.log(id, notify);
 * vq.destroy();
 * ```
 */
export class PackedVirtqueue implements Virtqueue {
  /** Queue index on the device. */
  readonly index: number;
  /** Always `"packed"`. */
  readonly layout: RingLayout = "packed";
  /** Number of descriptors (1 to 32768, any value). */
  readonly size: number;
  /** Device-visible addresses: descriptor ring, driver area, device area. */
  readonly addresses: QueueAddresses;
  /** Entries of each indirect table; 0 when indirect descriptors are not used. */
  readonly maxIndirect: number;
  /** Whether VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** Pinned pairs ({@link VirtqueueOptions.pairs}). */
  readonly pairs: number;

  #dma: DmaAllocator;
  #region: DmaRegion;
  #view: DataView;
  /** 16-bit little-endian view over the region for Atomics on flags and event words, or null. */
  #u16: Uint16Array | null;
  /** The same region in 32-bit words, for the device's event suppression structure. */
  #u32: Uint32Array | null;
  #indirectRegion: DmaRegion | null;
  #indirectView: DataView | null;
  /** Byte offsets of the driver and device event suppression structures in the region. */
  #driverOff: number;
  #deviceOff: number;

  /** Next ring slot the driver makes available, and the Driver Ring Wrap Counter (§2.8.1). */
  #availPos = 0;
  #availWrap = 1;
  /** AVAIL/USED bits of a descriptor made available now (follows #availWrap). */
  #availBits = VIRTQ_DESC_F_AVAIL;
  /** Next ring slot the driver expects a used descriptor in, and its wrap counter. */
  #usedPos = 0;
  #usedWrap = 1;
  /** AVAIL/USED bits at #usedPos of a descriptor used in this lap, and of one still available. */
  #usedBits = PACKED_STATE_MASK;
  #stillAvailBits = VIRTQ_DESC_F_AVAIL;
  /** Ring descriptors not held by a buffer in flight. */
  #numFree: number;
  /**
   * The head slot of the first buffer added since the last publish (-1: none) and the flags it
   * gets: written by publish(), so nothing added is visible before (§2.8.6: the first
   * descriptor of a list is made available last). Later buffers are written whole: the device
   * reads the ring in order (§2.8.12) and cannot pass this head.
   */
  #pendingHead = -1;
  #pendingFlags = 0;
  /** Ring descriptors added since the last publish, and those published and not yet used. */
  #addedDescs = 0;
  #publishedDescs = 0;
  /** Publish generation: a buffer added at generation g is published once #epoch > g. */
  #epoch = 1;
  /** Per id: the generation it was added at (0: free). */
  #sentAt: Float64Array;
  /** Per id: the ring descriptors its buffer holds (the used-side skip, §2.8.6). */
  #count: Uint16Array;
  /** Per id: device-writable bytes of its buffer. */
  #writable: Float64Array;
  /** Free ids (a stack); pinned pair ids 2p are never in it. */
  #freeIds: Uint16Array;
  #freeTop = 0;
  /** Per pinned pair: readable lo, hi, size as set (0: not set), current length; writable lo, hi, len. */
  #pair: Float64Array;
  #inFlight = 0;
  #usedLen = 0;
  #interrupts = false;
  #broken = false;
  #destroyed = false;
  /** A device write into a slot the driver owned, seen by add*: thrown by the next popUsed(). */
  #stale: string | null = null;

  /**
   * Allocates and initialises queue `index` with `size` descriptors from `dma`. Throws
   * RangeError when `size` is not an integer in 1..32768 or `index` is not a u16.
   */
  constructor(index: number, size: number, dma: DmaAllocator, options: VirtqueueOptions = {}) {
    const { maxIndirect, pairs } = queueParams(index, size, options, false);
    this.index = index;
    this.size = size;
    this.maxIndirect = maxIndirect;
    this.pairs = pairs;
    this.eventIdx = options.eventIdx === true;
    this.#dma = dma;
    this.#numFree = size;

    // §2.8.10.1: ring 16-byte aligned (the region is page-aligned), each event suppression
    // structure 4-byte aligned: 16·size is a multiple of 16.
    this.#driverOff = descRingSize(size);
    this.#deviceOff = this.#driverOff + EVENT_SUPPRESS_SIZE;
    this.#region = dma.alloc(this.#deviceOff + EVENT_SUPPRESS_SIZE, 4096);
    this.#view = this.#region.view;
    this.#u16 = ringWords(this.#region);
    this.#u32 = ringDwords(this.#region);
    this.#indirectRegion = allocTables(dma, this.#region, size * maxIndirect * PACKED_DESC_SIZE);
    this.#indirectView = this.#indirectRegion?.view ?? null;
    const r = this.#region;
    this.addresses = {
      descLo: r.addrLo,
      descHi: r.addrHi,
      driverLo: addLo(r.addrLo, this.#driverOff),
      driverHi: addHi(r.addrLo, r.addrHi, this.#driverOff),
      deviceLo: addLo(r.addrLo, this.#deviceOff),
      deviceHi: addHi(r.addrLo, r.addrHi, this.#deviceOff),
    };
    this.#sentAt = new Float64Array(size);
    this.#count = new Uint16Array(size);
    this.#writable = new Float64Array(size);
    this.#freeIds = new Uint16Array(size);
    this.#pair = new Float64Array(pairs * 7);
    this.#initState();
  }

  /** Number of free ring descriptors. */
  get numFree(): number {
    return this.#numFree;
  }

  /** Number of buffers added and not yet returned by {@link PackedVirtqueue.popUsed}. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Length the device reported for the buffer last returned by {@link PackedVirtqueue.popUsed}. */
  get usedLen(): number {
    return this.#usedLen;
  }

  /** Whether the device broke a ring rule (a {@link VirtqueueError} was thrown) since the last reset. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * Adds a buffer of one device-readable element (`rLo`/`rHi`, `rLen` bytes) followed by one
   * device-writable element (`wLo`/`wHi`, `wLen` bytes); a zero length omits that part. Returns
   * the buffer id, or -1 when the ring has no room (or no free id). Not visible to the device
   * until {@link PackedVirtqueue.publish}. Allocation-free.
   */
  add2(rLo: number, rHi: number, rLen: number, wLo: number, wHi: number, wLen: number): number {
    if (this.#destroyed || !chainOk(rLo, rHi, rLen, wLo, wHi, wLen, this.size)) {
      this.#refuseAdd(rLo, rHi, rLen, wLo, wHi, wLen);
    }
    const n = (rLen !== 0 ? 1 : 0) + (wLen !== 0 ? 1 : 0);
    if (n === 2 && this.maxIndirect >= 2) return this.#addIndirect2(rLo, rHi, rLen, wLo, wHi, wLen);
    if (this.#numFree < n || this.#freeTop === 0) return -1;
    const id = this.#freeIds[--this.#freeTop];
    if (n === 2) {
      // Readable first, then writable (§2.8.17 MUST); NEXT on all but the last (§2.8.6).
      this.#put(rLo, rHi, rLen, id, VIRTQ_DESC_F_NEXT, true);
      this.#put(wLo, wHi, wLen, id, VIRTQ_DESC_F_WRITE, false);
    } else if (rLen !== 0) {
      this.#put(rLo, rHi, rLen, id, 0, true);
    } else {
      this.#put(wLo, wHi, wLen, id, VIRTQ_DESC_F_WRITE, true);
    }
    return this.#commit(id, n, wLen);
  }

  /**
   * Points pinned pair `pair` at a device-readable buffer of up to `rLen` bytes and a
   * device-writable one of `wLen` bytes. Both lengths must be non-zero u32s, at most 2^32 bytes
   * together. The pair must not be in flight. Throws RangeError otherwise. A packed ring has no
   * fixed descriptor slots, so the buffers are kept in the driver's shadow and written into the
   * ring by each {@link PackedVirtqueue.addPair}. Allocation-free.
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
    if (this.#sentAt[2 * pair] !== 0) {
      throw new RangeError(`Pair ${pair} is in flight: its buffers cannot change`);
    }
    checkPairBuffers(pair, this.pairs, rLo, rHi, rLen, wLo, wHi, wLen, this.size);
    const p = this.#pair, at = pair * 7;
    p[at] = rLo;
    p[at + 1] = rHi;
    p[at + 2] = rLen;
    p[at + 3] = rLen;
    p[at + 4] = wLo;
    p[at + 5] = wHi;
    p[at + 6] = wLen;
  }

  /**
   * Adds pinned pair `pair` as a buffer whose readable part is its first `rLen` bytes (1 up to
   * the size given to {@link PackedVirtqueue.setPair}). Returns its id, `2·pair`, or -1 when
   * the ring has fewer than two free descriptors. Throws RangeError for a pair that is not set,
   * is in flight, or `rLen` out of range. Not visible until {@link PackedVirtqueue.publish}.
   * Allocation-free.
   */
  addPair(pair: number, rLen: number): number {
    const id = pair * 2;
    const p = this.#pair, at = pair * 7;
    // One test (the hot path): the size is 0 for a pair not set or after destroy(), undefined
    // for no pair at all; both refuse any length.
    if (!((rLen >>> 0) === rLen && rLen !== 0 && rLen <= p[at + 2]) || this.#sentAt[id] !== 0) {
      this.#refusePair(pair, rLen);
    }
    if (this.#numFree < 2) return -1;
    this.#put(p[at], p[at + 1], rLen, id, VIRTQ_DESC_F_NEXT, true);
    this.#put(p[at + 4], p[at + 5], p[at + 6], id, VIRTQ_DESC_F_WRITE, false);
    return this.#commit(id, 2, p[at + 6]);
  }

  /** Throws the error for arguments {@link PackedVirtqueue.addPair} refuses. */
  #refusePair(pair: number, rLen: number): never {
    this.#checkLive();
    const cap = this.#pair[pair * 7 + 2] ?? 0;
    refusePair(pair, this.pairs, rLen, cap, this.#sentAt[2 * pair] !== 0);
  }

  /**
   * Adds a buffer of `readable` elements followed by `writable` elements (device-readable
   * before device-writable, §2.8.17): an indirect table when it has 2..maxIndirect elements,
   * else a chain of ring descriptors. Returns the id, or -1 when the ring has no room. Throws
   * TypeError for an empty buffer, RangeError for one longer than the queue, a zero or non-u32
   * length, or more than 2^32 bytes in total.
   */
  add(readable: readonly DmaBuffer[], writable: readonly DmaBuffer[]): number {
    this.#checkLive();
    const wTotal = checkChain(readable, writable, this.size);
    const nr = readable.length;
    const n = nr + writable.length;
    if (n >= 2 && n <= this.maxIndirect) {
      if (this.#numFree < 1 || this.#freeTop === 0) return -1;
      const id = this.#freeIds[--this.#freeTop];
      const tv = this.#indirectView as DataView;
      const toff = id * this.maxIndirect * PACKED_DESC_SIZE;
      for (let i = 0; i < n; i++) {
        const b = i < nr ? readable[i] : writable[i - nr];
        // §2.8.7: WRITE is the only valid flag in an indirect table; the id is reserved (0).
        const flags = i >= nr ? VIRTQ_DESC_F_WRITE : 0;
        writeDesc(tv, toff + i * PACKED_DESC_SIZE, b.addrLo, b.addrHi, b.length, 0, flags);
      }
      this.#putIndirect(id, n);
      return this.#commit(id, 1, wTotal);
    }
    if (this.#numFree < n || this.#freeTop === 0) return -1;
    const id = this.#freeIds[--this.#freeTop];
    for (let i = 0; i < n; i++) {
      const b = i < nr ? readable[i] : writable[i - nr];
      const flags = (i === n - 1 ? 0 : VIRTQ_DESC_F_NEXT) | (i >= nr ? VIRTQ_DESC_F_WRITE : 0);
      this.#put(b.addrLo, b.addrHi, b.length, id, flags, i === 0);
    }
    return this.#commit(id, n, wTotal);
  }

  /**
   * Makes every buffer added since the last call visible to the device by writing the flags of
   * the first one's head after everything else (§2.8.21.1), then returns whether the device
   * wants an available-buffer notification: its event suppression structure (§2.8.10) says
   * ENABLE, or, with EVENT_IDX, RING_EVENT_FLAGS_DESC at a descriptor just made available.
   * Returns false when nothing was added. Allocation-free.
   */
  publish(): boolean {
    this.#checkLive();
    const added = this.#addedDescs;
    if (added === 0) return false;
    // §2.8.21.1.1: a barrier before the flags that expose the buffers (the seq-cst store
    // orders the descriptor writes before it), then §2.8.21.3.1: a full barrier before reading
    // the device's event suppression structure (a seq-cst store followed by a seq-cst load).
    this.#store16(this.#pendingHead * PACKED_DESC_SIZE + PACKED_DESC_FLAGS, this.#pendingFlags);
    this.#pendingHead = -1;
    this.#addedDescs = 0;
    this.#publishedDescs += added;
    this.#epoch++;
    // The whole structure in one seq-cst load (§2.8.10: le16 off_wrap at EVENT_OFF_WRAP, le16
    // flags at EVENT_FLAGS, 4-byte aligned): a consistent snapshot of both words, and one
    // Atomics call instead of two. Each is a call V8 does not inline and that no load or store
    // is moved across; on the mock one at a time they were a sixth of the request's time.
    const event = loadDword(this.#u32, this.#view, this.#deviceOff);
    const flags = (event >>> (8 * EVENT_FLAGS)) & EVENT_FLAGS_MASK;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    // DESC is only meaningful with EVENT_IDX; without it, and for the reserved value 3, notify.
    if (flags !== RING_EVENT_FLAGS_DESC || !this.eventIdx) return true;
    const next = this.#availPos;
    return passedEvent(
      (event >>> (8 * EVENT_OFF_WRAP)) & 0xffff,
      this.#availWrap,
      next - added,
      next,
      this.size,
    );
  }

  /** Whether the device has used buffers that were not popped yet (or broke a ring rule). */
  hasUsed(): boolean {
    this.#checkLive();
    if (this.#stale !== null) return true;
    const bits = this.#load16(this.#usedPos * PACKED_DESC_SIZE + PACKED_DESC_FLAGS) &
      PACKED_STATE_MASK;
    if (bits === this.#usedBits) return true;
    // A slot the driver made available can only be still available or used (popUsed() fails).
    return this.#publishedDescs > 0 && bits !== this.#stillAvailBits;
  }

  /**
   * Pops one used buffer: returns its id and sets {@link PackedVirtqueue.usedLen}, or returns
   * -1 when the next slot in ring order holds no used descriptor; skips the buffer's ring
   * descriptors (§2.8.6) and frees its id. The flags are read first (acquire), then id and
   * len, all checked against the driver's shadow; a violation throws {@link VirtqueueError}
   * and leaves the queue {@link PackedVirtqueue.broken} (further calls throw again until
   * {@link PackedVirtqueue.reset}). Allocation-free.
   */
  popUsed(): number {
    this.#checkLive();
    if (this.#stale !== null) this.#fail(this.#stale);
    const off = this.#usedPos * PACKED_DESC_SIZE;
    const bits = this.#load16(off + PACKED_DESC_FLAGS) & PACKED_STATE_MASK;
    if (bits !== this.#usedBits) {
      if (this.#publishedDescs > 0 && bits !== this.#stillAvailBits) this.#badState(bits);
      return -1;
    }
    const view = this.#view;
    const id = view.getUint16(off + PACKED_DESC_ID, true);
    // §2.8.4: the used length is the bytes written. It is read whether or not the device set
    // WRITE in the used descriptor (QEMU 7.2 never does; Linux reads it the same way).
    const len = view.getUint32(off + PACKED_DESC_LEN, true);
    const sent = this.#sentAt[id]; // undefined for an id past the queue: fails below
    if (!(sent > 0 && sent < this.#epoch) || len > this.#writable[id]) this.#badUsed(id, len);
    const count = this.#count[id];
    let pos = this.#usedPos + count;
    if (pos >= this.size) {
      pos -= this.size;
      this.#flipUsedWrap();
    }
    this.#usedPos = pos;
    this.#publishedDescs -= count;
    this.#numFree += count;
    this.#sentAt[id] = 0;
    // A pinned pair's id (2p below 2·pairs) stays out of the free list.
    if ((id & 1) !== 0 || id >= 2 * this.pairs) this.#freeIds[this.#freeTop++] = id;
    this.#inFlight--;
    this.#usedLen = len;
    if (this.#interrupts && this.eventIdx) this.#writeUsedEvent();
    return id;
  }

  /**
   * Turns used-buffer notifications on or off (§2.8.10): writes the driver event suppression
   * structure. Off: RING_EVENT_FLAGS_DISABLE. On without EVENT_IDX: ENABLE. On with EVENT_IDX:
   * RING_EVENT_FLAGS_DESC at the next slot the driver expects used, moved by every popUsed()
   * (offset and wrap written before the flags). Returns true when nothing was used meanwhile;
   * false means a caller about to wait for an interrupt must poll first.
   */
  setInterrupts(enabled: boolean): boolean {
    this.#checkLive();
    this.#interrupts = enabled;
    if (enabled && this.eventIdx) {
      this.#writeUsedEvent();
      this.#store16(this.#driverOff + EVENT_FLAGS, RING_EVENT_FLAGS_DESC);
    } else {
      this.#store16(
        this.#driverOff + EVENT_FLAGS,
        enabled ? RING_EVENT_FLAGS_ENABLE : RING_EVENT_FLAGS_DISABLE,
      );
    }
    // The seq-cst store above is a full barrier before this re-check of the next slot.
    return !this.hasUsed();
  }

  /**
   * Puts the queue back into its initial state after a device or queue reset: ring and
   * indirect tables zeroed, wrap counters 1, every id free, pinned pairs unset, interrupts
   * disabled, not broken. Returns the ids that were in flight (ascending), whose requests the
   * caller must fail or resubmit. The device must not be using the queue (reset it first).
   */
  reset(): number[] {
    this.#checkLive();
    const lost: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.#sentAt[i] !== 0) lost.push(i);
    this.#region.bytes.fill(0);
    this.#indirectRegion?.bytes.fill(0);
    this.#sentAt.fill(0);
    this.#count.fill(0);
    this.#writable.fill(0);
    this.#pair.fill(0);
    this.#availPos = 0;
    this.#availWrap = 1;
    this.#availBits = availState(1);
    this.#usedPos = 0;
    this.#usedWrap = 1;
    this.#usedBits = usedState(1);
    this.#stillAvailBits = availState(1);
    this.#numFree = this.size;
    this.#pendingHead = -1;
    this.#pendingFlags = 0;
    this.#addedDescs = 0;
    this.#publishedDescs = 0;
    this.#epoch = 1;
    this.#inFlight = 0;
    this.#usedLen = 0;
    this.#interrupts = false;
    this.#broken = false;
    this.#stale = null;
    this.#initState();
    return lost;
  }

  /** Frees the queue's DMA memory. The queue must not be used afterwards; a second call does nothing. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#pair.fill(0); // addPair() refuses from now on
    this.#dma.free(this.#region);
    if (this.#indirectRegion !== null) this.#dma.free(this.#indirectRegion);
  }

  /** Free ids and the driver's event suppression; the ring memory is zero (fresh or cleared). */
  #initState(): void {
    // Descending, so ids come out ascending; pinned pair ids 2p (p < pairs) are never free.
    this.#freeTop = 0;
    for (let id = this.size - 1; id >= 0; id--) {
      if ((id & 1) !== 0 || id >= 2 * this.pairs) this.#freeIds[this.#freeTop++] = id;
    }
    // The driver polls by default: ask the device not to send used-buffer notifications.
    this.#store16(this.#driverOff + EVENT_FLAGS, RING_EVENT_FLAGS_DISABLE);
  }

  /**
   * Writes one descriptor at the next slot (§2.8.21.1) with the AVAIL/USED bits of the driver's
   * wrap counter; the head of the first buffer since the last publish keeps its flags for
   * publish(). The slot's old flags are checked first: a slot the driver reuses still holds a
   * descriptor of the previous lap, never one marked with this lap's AVAIL bit.
   */
  #put(lo: number, hi: number, len: number, id: number, flags: number, head: boolean): void {
    const off = this.#availPos * PACKED_DESC_SIZE;
    const view = this.#view;
    if (
      (view.getUint16(off + PACKED_DESC_FLAGS, true) & VIRTQ_DESC_F_AVAIL) ===
        (this.#availBits & VIRTQ_DESC_F_AVAIL)
    ) {
      this.#staleSlot(this.#availPos);
    }
    view.setUint32(off + PACKED_DESC_ADDR, lo, true);
    view.setUint32(off + PACKED_DESC_ADDR + 4, hi, true);
    view.setUint32(off + PACKED_DESC_LEN, len, true);
    // The id in every descriptor: §2.8.6 puts it in the last, QEMU 7.2 reads the first.
    view.setUint16(off + PACKED_DESC_ID, id, true);
    const value = flags | this.#availBits;
    if (head && this.#pendingHead < 0) {
      this.#pendingHead = this.#availPos;
      this.#pendingFlags = value;
    } else {
      view.setUint16(off + PACKED_DESC_FLAGS, value, true);
    }
    if (++this.#availPos === this.size) {
      // §2.8.1: the driver toggles its wrap counter after making the last descriptor available.
      this.#availPos = 0;
      this.#availWrap ^= 1;
      this.#availBits = availState(this.#availWrap);
    }
  }

  /** Records that the device wrote into slot `pos`, which the driver owned (thrown later). */
  #staleSlot(pos: number): void {
    this.#stale ??= `Queue ${this.index}: the device wrote a descriptor into ring slot ${pos}, ` +
      `which held no buffer of the device's (wrap counter ${this.#availWrap})`;
  }

  /** Writes the ring descriptor of buffer `id` pointing at its indirect table of `n` entries (§2.8.7). */
  #putIndirect(id: number, n: number): void {
    const r = this.#indirectRegion as DmaRegion;
    const off = id * this.maxIndirect * PACKED_DESC_SIZE;
    // §2.8.19: INDIRECT is never combined with NEXT; WRITE is reserved on it.
    this.#put(
      addLo(r.addrLo, off),
      addHi(r.addrLo, r.addrHi, off),
      n * PACKED_DESC_SIZE,
      id,
      VIRTQ_DESC_F_INDIRECT,
      true,
    );
  }

  /** {@link PackedVirtqueue.add2} of a 2-element buffer as one indirect descriptor (§2.8.7). */
  #addIndirect2(
    rLo: number,
    rHi: number,
    rLen: number,
    wLo: number,
    wHi: number,
    wLen: number,
  ): number {
    if (this.#numFree < 1 || this.#freeTop === 0) return -1;
    const id = this.#freeIds[--this.#freeTop];
    const tv = this.#indirectView as DataView;
    const toff = id * this.maxIndirect * PACKED_DESC_SIZE;
    writeDesc(tv, toff, rLo, rHi, rLen, 0, 0);
    writeDesc(tv, toff + PACKED_DESC_SIZE, wLo, wHi, wLen, 0, VIRTQ_DESC_F_WRITE);
    this.#putIndirect(id, 2);
    return this.#commit(id, 1, wLen);
  }

  /** Throws the error for arguments {@link PackedVirtqueue.add2} refuses. */
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

  /** Records buffer `id` of `count` ring descriptors in the shadow; returns `id`. */
  #commit(id: number, count: number, writable: number): number {
    this.#numFree -= count;
    this.#addedDescs += count;
    this.#count[id] = count;
    this.#writable[id] = writable;
    this.#sentAt[id] = this.#epoch;
    this.#inFlight++;
    return id;
  }

  /** §2.8.1: the driver's view of the device's wrap counter toggles past the last slot. */
  #flipUsedWrap(): void {
    this.#usedWrap ^= 1;
    this.#usedBits = usedState(this.#usedWrap);
    this.#stillAvailBits = availState(this.#usedWrap);
  }

  /** Writes the driver's event descriptor: the next slot it expects used (EVENT_IDX). */
  #writeUsedEvent(): void {
    this.#store16(this.#driverOff + EVENT_OFF_WRAP, eventOffWrap(this.#usedPos, this.#usedWrap));
  }

  /** Fails for a slot in flight whose AVAIL/USED bits are neither "available" nor "used" now. */
  #badState(bits: number): never {
    this.#fail(
      `Queue ${this.index}: ring slot ${this.#usedPos} has AVAIL/USED bits 0x${
        bits.toString(16)
      }, ` +
        `neither available nor used with wrap counter ${this.#usedWrap}`,
    );
  }

  /** Fails for a used descriptor whose id or len the driver's shadow refutes. */
  #badUsed(id: number, len: number): never {
    const at = `at ring slot ${this.#usedPos}`;
    if (id >= this.size) {
      this.#fail(`Queue ${this.index}: used id ${id} ${at} is not below ${this.size}`);
    }
    const sent = this.#sentAt[id];
    if (sent === 0) {
      this.#fail(
        `Queue ${this.index}: used id ${id} ${at} is not in flight ` +
          "(never submitted or already completed)",
      );
    }
    if (sent >= this.#epoch) {
      this.#fail(`Queue ${this.index}: used id ${id} ${at} was never published to the device`);
    }
    this.#fail(
      `Queue ${this.index}: used len ${len} for id ${id} exceeds the ` +
        `${this.#writable[id]} writable bytes of its buffer`,
    );
  }

  /** Marks the queue broken and throws a {@link VirtqueueError}. */
  #fail(message: string): never {
    this.#broken = true;
    this.#stale ??= message;
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

/** Writes one 16-byte packed descriptor at `off` in `view` (§2.8.13). Allocation-free. */
function writeDesc(
  view: DataView,
  off: number,
  lo: number,
  hi: number,
  len: number,
  id: number,
  flags: number,
): void {
  view.setUint32(off + PACKED_DESC_ADDR, lo, true);
  view.setUint32(off + PACKED_DESC_ADDR + 4, hi, true);
  view.setUint32(off + PACKED_DESC_LEN, len, true);
  view.setUint16(off + PACKED_DESC_ID, id, true);
  view.setUint16(off + PACKED_DESC_FLAGS, flags, true);
}
