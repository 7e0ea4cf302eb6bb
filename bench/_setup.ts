/**
 * Shared set-up of the benchmarks: the mock device over virtio-mmio, the driver, and "the
 * limit" — the thinnest hand-written code that pushes the same MAP and UNMAP bytes through the
 * same kind of ring (2-descriptor chains) to the same mock device: {@link Baseline} here for
 * the split ring, `PackedBaseline` (bench/_packed_limit.ts) for the packed one.
 *
 * @module
 */

import {
  beginInit,
  type DmaAllocator,
  type DmaRegion,
  finishInit,
  MmioTransport,
  resetDevice,
  type RingLayout,
  type Transport,
  VirtioIommu,
  type VirtioIommuOptions,
} from "../mod.ts";
import {
  DESC_ADDR,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  USED_ELEM_SIZE,
  USED_IDX,
  USED_RING,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../spec/split_ring.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";
import { PackedBaseline } from "./_packed_limit.ts";
import {
  BASELINE_FEATURES,
  type BaselineOptions,
  DIRECT_FEATURES,
  encodeBaselineAttach,
  encodeBaselineRangeUnmap,
  encodeBaselineRequest,
  type Limit,
} from "./_limits.ts";
export { type BaselineOptions, DIRECT_FEATURES, type Limit } from "./_limits.ts";

/** A driver on a fresh mock device. */
export interface DriverRig {
  iommu: VirtioIommu;
  device: MockIommuDevice;
  memory: SimulatedMemory;
}

/**
 * Builds the mock (QEMU-like defaults, 64 MiB of memory; offering the packed ring when
 * `options.ring` is "packed") and the driver over virtio-mmio; with `interrupts`, the transport
 * carries the mock's interrupt line (the driver takes it).
 */
export async function driverRig(
  options: VirtioIommuOptions = {},
  interrupts = false,
): Promise<DriverRig> {
  const memory = new SimulatedMemory({ size: 64 * 1024 * 1024 });
  const device = new MockIommuDevice({ packed: options.ring === "packed" });
  const regs = new MmioDevice(device, memory);
  const iommu = await VirtioIommu.create(
    MmioTransport.create(regs, { interrupts: interrupts ? regs.interrupts() : null }),
    memory,
    { features: DIRECT_FEATURES, ...options },
  );
  return { iommu, device, memory };
}

/**
 * The limit: a hand-written request loop with no checks, no records and no promises. It
 * initialises the device itself, owns request queue 0 (direct 2-descriptor chains: request,
 * then tail), and sends pre-encoded MAP/UNMAP requests for `pairs` distinct pages. Runs over
 * any transport and DMA allocator: the mock ({@link Baseline.create}) or a real device in a
 * guest ({@link Baseline.over}), where it measures what the device itself costs.
 */
export class Baseline implements Limit {
  #t: Transport;
  #dma: DmaAllocator;
  #regions: DmaRegion[];
  #desc: DataView;
  #used: DataView;
  /** used.flags and used.idx, for an acquire load of used.idx (the device writes it). */
  #usedIdx16: Uint16Array;
  /** Offset of the status byte in the slots region, per head descriptor. */
  #tailOf: Int32Array;
  #avail: DataView;
  #size: number;
  #availIdx = 0;
  #usedIdx = 0;
  #reqLo: number;
  #reqHi: number;
  #reqView: DataView;
  #iovaBase: number;

  private constructor(t: Transport, dma: DmaAllocator, size: number, iovaBase: number) {
    this.#t = t;
    this.#dma = dma;
    this.#size = size;
    this.#iovaBase = iovaBase;
    // Three regions, each within one page for size <= 256 (virtio 1.3 §2.7: 16, 2 and 4 byte
    // alignment), so any allocator's regions will do.
    const desc = dma.alloc(16 * size, 4096);
    const avail = dma.alloc(6 + 2 * size, 4096);
    const used = dma.alloc(6 + 8 * size, 4096);
    // One 64-byte request slot per ring entry pair, like the driver's.
    const slots = dma.alloc(64 * size, 4096);
    this.#regions = [desc, avail, used, slots];
    this.#desc = desc.view;
    this.#avail = avail.view;
    this.#used = used.view;
    this.#usedIdx16 = new Uint16Array(used.bytes.buffer, used.bytes.byteOffset, 2);
    this.#tailOf = new Int32Array(size);
    // Polled: ask the device not to interrupt (§2.7.7), as the driver does.
    this.#avail.setUint16(0, VIRTQ_AVAIL_F_NO_INTERRUPT, true);
    t.enableQueue(0, size, {
      descLo: desc.addrLo,
      descHi: desc.addrHi,
      driverLo: avail.addrLo,
      driverHi: avail.addrHi,
      deviceLo: used.addrLo,
      deviceHi: used.addrHi,
    });
    this.#reqLo = slots.addrLo;
    this.#reqHi = slots.addrHi;
    this.#reqView = slots.view;
  }

  /** The limit against a fresh mock (QEMU-like defaults, 64 MiB of memory) over virtio-mmio. */
  static async create(size = 256): Promise<Baseline & { device: MockIommuDevice }> {
    const memory = new SimulatedMemory({ size: 64 * 1024 * 1024 });
    const device = new MockIommuDevice();
    const b = await Baseline.over(MmioTransport.create(new MmioDevice(device, memory)), memory, {
      size,
    });
    return Object.assign(b, { device });
  }

  /**
   * The limit of ring layout `ring` (the split one, or {@link PackedBaseline}) against a fresh
   * mock that offers it, over virtio-mmio.
   */
  static async createFor(
    ring: RingLayout,
    size = 256,
  ): Promise<Limit & { device: MockIommuDevice }> {
    if (ring === "split") return Baseline.create(size);
    const memory = new SimulatedMemory({ size: 64 * 1024 * 1024 });
    const device = new MockIommuDevice({ packed: true });
    const transport = MmioTransport.create(new MmioDevice(device, memory));
    return Object.assign(await PackedBaseline.over(transport, memory, { size }), { device });
  }

  /** The limit of ring layout `ring` over any transport and DMA allocator. */
  static overFor(
    ring: RingLayout,
    transport: Transport,
    dma: DmaAllocator,
    options: BaselineOptions = {},
  ): Promise<Limit> {
    return ring === "split"
      ? Baseline.over(transport, dma, options)
      : PackedBaseline.over(transport, dma, options);
  }

  /**
   * Initialises the device behind `transport` by hand (features without INDIRECT_DESC and
   * EVENT_IDX, queue 1 left disabled) and attaches `endpoint` to domain 1.
   */
  static async over(
    transport: Transport,
    dma: DmaAllocator,
    options: BaselineOptions = {},
  ): Promise<Baseline> {
    const size = options.size ?? 256;
    await beginInit(transport, { supported: BASELINE_FEATURES });
    const b = new Baseline(transport, dma, size, options.iovaBase ?? 0x100000);
    finishInit(transport);
    // ATTACH the endpoint to domain 1, by hand.
    b.#chain(0, 0, encodeBaselineAttach(b.#reqView, options.endpoint ?? 8));
    b.#kick();
    b.#drain(1);
    return b;
  }

  /** Resets the device and frees the rings (the device may then be driven by someone else). */
  async close(): Promise<void> {
    await resetDevice(this.#t);
    for (const r of this.#regions) this.#dma.free(r);
    this.#regions = [];
  }

  /** Writes a 2-descriptor chain for slot `s` (request of `len` bytes, then the tail). */
  #chain(s: number, d: number, len: number): void {
    const desc = this.#desc;
    const lo = this.#reqLo + s * 64;
    const o = d * DESC_SIZE;
    desc.setUint32(o + DESC_ADDR, lo, true);
    desc.setUint32(o + DESC_ADDR + 4, this.#reqHi, true);
    desc.setUint32(o + DESC_LEN, len, true);
    desc.setUint16(o + DESC_FLAGS, VIRTQ_DESC_F_NEXT, true);
    desc.setUint16(o + DESC_NEXT, d + 1, true);
    desc.setUint32(o + DESC_SIZE + DESC_ADDR, lo + len, true);
    desc.setUint32(o + DESC_SIZE + DESC_ADDR + 4, this.#reqHi, true);
    desc.setUint32(o + DESC_SIZE + DESC_LEN, 4, true);
    desc.setUint16(o + DESC_SIZE + DESC_FLAGS, VIRTQ_DESC_F_WRITE, true);
    this.#tailOf[d] = s * 64 + len;
    const slot = this.#availIdx & (this.#size - 1);
    this.#avail.setUint16(4 + 2 * slot, d, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
  }

  #kick(): void {
    this.#avail.setUint16(2, this.#availIdx, true);
    this.#t.notify(0);
  }

  /** Waits for `n` answers, each with used length 4 and status OK (bounded: never hangs). */
  #drain(n: number): void {
    let got = 0;
    for (let round = 0; got < n; round++) {
      if (round > 100_000_000) throw new Error("baseline: the device stopped answering");
      const idx = Atomics.load(this.#usedIdx16, USED_IDX >> 1);
      while (this.#usedIdx !== idx) {
        const e = USED_RING + USED_ELEM_SIZE * (this.#usedIdx & (this.#size - 1));
        if (this.#used.getUint32(e + 4, true) !== 4) throw new Error("baseline: bad used len");
        const tail = this.#tailOf[this.#used.getUint32(e, true) & (this.#size - 1)];
        if (this.#reqView.getUint8(tail) !== 0) throw new Error("baseline: request refused");
        this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
        got++;
      }
    }
  }

  /** Encodes request `r` of a batch (see {@link encodeBaselineRequest}) in slot `s`. */
  #encode(s: number, r: number, half: number): number {
    return encodeBaselineRequest(this.#reqView, s, r, half, this.#iovaBase);
  }

  /** One MAP then one UNMAP of page `i`, each notified and awaited (polled) on its own. */
  pairOneAtATime(i: number): void {
    this.#chain(0, 0, this.#encode(0, i, i + 1));
    this.#kick();
    this.#drain(1);
    this.#chain(0, 0, this.#encode(0, i + 1 + i, i + 1));
    this.#kick();
    this.#drain(1);
  }

  /**
   * `n` MAPs of consecutive pages followed by one UNMAP of their whole range, in one
   * notification (`n + 1` chains must fit the ring: n < size / 2).
   */
  batchRange(n: number): void {
    if (n + 1 > this.#size >> 1) throw new RangeError(`batchRange(${n}): ring too small`);
    for (let q = 0; q < n; q++) this.#chain(q, 2 * q, this.#encode(q, q, n));
    const len = encodeBaselineRangeUnmap(this.#reqView, n, this.#iovaBase, n);
    this.#chain(n, 2 * n, len);
    this.#kick();
    this.#drain(n + 1);
  }

  /**
   * `n` requests (n/2 MAPs then n/2 UNMAPs of the same pages), one notification per ring-full
   * (size/2 two-descriptor chains), exactly as the driver sends them without indirect.
   */
  batch(n: number): void {
    const cap = this.#size >> 1;
    const half = n >> 1;
    for (let r = 0; r < n; r += cap) {
      const end = Math.min(n, r + cap);
      for (let q = r; q < end; q++) {
        const s = q - r;
        this.#chain(s, 2 * s, this.#encode(s, q, half));
      }
      this.#kick();
      this.#drain(end - r);
    }
  }
}
