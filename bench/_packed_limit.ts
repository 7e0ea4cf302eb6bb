/**
 * "The limit" on the packed ring (virtio 1.3 §2.8): the thinnest hand-written loop that pushes
 * the same MAP and UNMAP bytes as {@link Baseline} through a packed ring of 2-descriptor lists
 * (request, then tail) to the same device, with no checks, records or promises. The packed
 * driver is measured against it, as the split driver is against the split one (`Baseline`).
 *
 * @module
 */

import {
  beginInit,
  type DmaAllocator,
  type DmaRegion,
  featureBit,
  finishInit,
  resetDevice,
  type Transport,
  VIRTIO_F_RING_PACKED,
} from "../mod.ts";
import {
  availState,
  PACKED_DESC_ADDR,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  PACKED_STATE_MASK,
  RING_EVENT_FLAGS_DISABLE,
  usedState,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";
import {
  BASELINE_FEATURES,
  type BaselineOptions,
  encodeBaselineAttach,
  encodeBaselineRangeUnmap,
  encodeBaselineRequest,
} from "./_limits.ts";

/** The hand-written request loop over a packed ring; see {@link Baseline} for the modes. */
export class PackedBaseline {
  #t: Transport;
  #dma: DmaAllocator;
  #regions: DmaRegion[];
  #ring: DataView;
  /** The ring as u16s, for an acquire load of a used descriptor's flags. */
  #ring16: Uint16Array;
  #size: number;
  #availPos = 0;
  #availBits = availState(1);
  #usedPos = 0;
  #usedWrap = 1;
  #reqLo: number;
  #reqHi: number;
  #reqView: DataView;
  #tailOf: Int32Array;
  #iovaBase: number;

  private constructor(t: Transport, dma: DmaAllocator, size: number, iovaBase: number) {
    this.#t = t;
    this.#dma = dma;
    this.#size = size;
    this.#iovaBase = iovaBase;
    // §2.8.10.1: ring 16-byte aligned, each event suppression structure 4-byte aligned.
    const ring = dma.alloc(16 * size, 4096);
    const driver = dma.alloc(4, 4096);
    const device = dma.alloc(4, 4096);
    const slots = dma.alloc(64 * size, 4096);
    this.#regions = [ring, driver, device, slots];
    this.#ring = ring.view;
    this.#ring16 = new Uint16Array(ring.bytes.buffer, ring.bytes.byteOffset, 8 * size);
    this.#tailOf = new Int32Array(size);
    // Polled: ask the device not to send used-buffer notifications, as the driver does.
    driver.view.setUint16(2, RING_EVENT_FLAGS_DISABLE, true);
    t.enableQueue(0, size, {
      descLo: ring.addrLo,
      descHi: ring.addrHi,
      driverLo: driver.addrLo,
      driverHi: driver.addrHi,
      deviceLo: device.addrLo,
      deviceHi: device.addrHi,
    });
    this.#reqLo = slots.addrLo;
    this.#reqHi = slots.addrHi;
    this.#reqView = slots.view;
  }

  /**
   * Initialises the device behind `transport` by hand (the split limit's features plus
   * RING_PACKED, which the device must offer; queue 1 left disabled) and attaches `endpoint`
   * to domain 1.
   */
  static async over(
    transport: Transport,
    dma: DmaAllocator,
    options: BaselineOptions = {},
  ): Promise<PackedBaseline> {
    const packed = featureBit(VIRTIO_F_RING_PACKED);
    await beginInit(transport, { supported: BASELINE_FEATURES | packed, required: packed });
    const b = new PackedBaseline(transport, dma, options.size ?? 256, options.iovaBase ?? 0x100000);
    finishInit(transport);
    b.#chain(0, encodeBaselineAttach(b.#reqView, options.endpoint ?? 8));
    b.#t.notify(0);
    b.#drain(1);
    return b;
  }

  /** Resets the device and frees the ring and slots. */
  async close(): Promise<void> {
    await resetDevice(this.#t);
    for (const r of this.#regions) this.#dma.free(r);
    this.#regions = [];
  }

  /** Writes descriptor `pos` with `flags` and the ring-state bits `bits`. */
  #write(pos: number, bits: number, lo: number, len: number, id: number, flags: number): void {
    const ring = this.#ring;
    const o = pos * PACKED_DESC_SIZE;
    ring.setUint32(o + PACKED_DESC_ADDR, lo, true);
    ring.setUint32(o + PACKED_DESC_ADDR + 4, this.#reqHi, true);
    ring.setUint32(o + PACKED_DESC_LEN, len, true);
    ring.setUint16(o + PACKED_DESC_ID, id, true);
    ring.setUint16(o + PACKED_DESC_FLAGS, flags | bits, true);
  }

  /**
   * A 2-descriptor list for slot `s` (request of `len` bytes, then the tail), id `s`: the
   * tail first, the list's first descriptor last (§2.8.6). Past the last slot the ring-state
   * bits become the other wrap counter's (§2.8.1).
   */
  #chain(s: number, len: number): void {
    const lo = this.#reqLo + s * 64;
    const head = this.#availPos, headBits = this.#availBits;
    let next = head + 1, nextBits = headBits;
    if (next === this.#size) {
      next = 0;
      nextBits ^= PACKED_STATE_MASK;
    }
    this.#write(next, nextBits, lo + len, 4, s, VIRTQ_DESC_F_WRITE);
    this.#write(head, headBits, lo, len, s, VIRTQ_DESC_F_NEXT);
    this.#availPos = next + 1;
    this.#availBits = nextBits;
    if (this.#availPos === this.#size) {
      this.#availPos = 0;
      this.#availBits ^= PACKED_STATE_MASK;
    }
    this.#tailOf[s] = s * 64 + len;
  }

  /** Waits for `n` answers, each with used length 4 and status OK (bounded: never hangs). */
  #drain(n: number): void {
    let got = 0;
    for (let round = 0; got < n; round++) {
      if (round > 100_000_000) throw new Error("packed baseline: the device stopped answering");
      const o = this.#usedPos * PACKED_DESC_SIZE;
      const bits = Atomics.load(this.#ring16, (o + PACKED_DESC_FLAGS) >> 1) & PACKED_STATE_MASK;
      if (bits !== usedState(this.#usedWrap)) continue;
      if (this.#ring.getUint32(o + PACKED_DESC_LEN, true) !== 4) {
        throw new Error("packed baseline: bad used len");
      }
      const id = this.#ring.getUint16(o + PACKED_DESC_ID, true) % this.#size;
      if (this.#reqView.getUint8(this.#tailOf[id]) !== 0) {
        throw new Error("packed baseline: request refused");
      }
      this.#usedPos += 2;
      if (this.#usedPos >= this.#size) {
        this.#usedPos -= this.#size;
        this.#usedWrap ^= 1;
      }
      got++;
    }
  }

  /** One MAP then one UNMAP of page `i`, each notified and awaited (polled) on its own. */
  pairOneAtATime(i: number): void {
    this.#chain(0, encodeBaselineRequest(this.#reqView, 0, i, i + 1, this.#iovaBase));
    this.#t.notify(0);
    this.#drain(1);
    this.#chain(0, encodeBaselineRequest(this.#reqView, 0, i + 1 + i, i + 1, this.#iovaBase));
    this.#t.notify(0);
    this.#drain(1);
  }

  /** `n` MAPs of consecutive pages, then one UNMAP of their whole range, in one notification. */
  batchRange(n: number): void {
    if (n + 1 > this.#size >> 1) throw new RangeError(`batchRange(${n}): ring too small`);
    for (let q = 0; q < n; q++) {
      this.#chain(q, encodeBaselineRequest(this.#reqView, q, q, n, this.#iovaBase));
    }
    const len = encodeBaselineRangeUnmap(this.#reqView, n, this.#iovaBase, n);
    this.#chain(n, len);
    this.#t.notify(0);
    this.#drain(n + 1);
  }

  /** `n` requests (n/2 MAPs then n/2 UNMAPs), one notification per ring-full (size/2 lists). */
  batch(n: number): void {
    const cap = this.#size >> 1;
    const half = n >> 1;
    for (let r = 0; r < n; r += cap) {
      const end = Math.min(n, r + cap);
      for (let q = r; q < end; q++) {
        const s = q - r;
        this.#chain(s, encodeBaselineRequest(this.#reqView, s, q, half, this.#iovaBase));
      }
      this.#t.notify(0);
      this.#drain(end - r);
    }
  }
}
