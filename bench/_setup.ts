/**
 * Shared set-up of the benchmarks: the mock device over virtio-mmio, the driver, and "the
 * limit" — the thinnest hand-written code that pushes the same MAP and UNMAP bytes through the
 * same kind of ring (2-descriptor chains) to the same mock device.
 *
 * @module
 */

import {
  beginInit,
  featureBit,
  finishInit,
  MmioTransport,
  SUPPORTED_FEATURES,
  VIRTIO_F_INDIRECT_DESC,
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
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../transport/ring_layout.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

/** The driver's feature set for like-for-like comparison: no indirect descriptors. */
export const DIRECT_FEATURES: bigint = SUPPORTED_FEATURES & ~featureBit(VIRTIO_F_INDIRECT_DESC);

/** A driver on a fresh mock device. */
export interface DriverRig {
  iommu: VirtioIommu;
  device: MockIommuDevice;
  memory: SimulatedMemory;
}

/** Builds the mock (QEMU-like defaults, 64 MiB of memory) and the driver over virtio-mmio. */
export async function driverRig(options: VirtioIommuOptions = {}): Promise<DriverRig> {
  const memory = new SimulatedMemory({ size: 64 * 1024 * 1024 });
  const device = new MockIommuDevice();
  const iommu = await VirtioIommu.create(
    MmioTransport.create(new MmioDevice(device, memory)),
    memory,
    { features: DIRECT_FEATURES, ...options },
  );
  return { iommu, device, memory };
}

/**
 * The limit: a hand-written request loop with no checks, no records and no promises. It
 * initialises the device itself, owns request queue 0 (direct 2-descriptor chains: request,
 * then tail), and sends pre-encoded MAP/UNMAP requests for `pairs` distinct pages.
 */
export class Baseline {
  #t: MmioTransport;
  #desc: DataView;
  #availIdxView: DataView;
  #used: DataView;
  #avail: DataView;
  #size: number;
  #availIdx = 0;
  #usedIdx = 0;
  #reqLo: number;
  #reqHi: number;
  #reqView: DataView;
  /** The mock device. */
  readonly device: MockIommuDevice;

  private constructor(
    t: MmioTransport,
    device: MockIommuDevice,
    memory: SimulatedMemory,
    size: number,
  ) {
    this.#t = t;
    this.device = device;
    this.#size = size;
    const ring = memory.alloc(16 * size + 6 + 2 * size + 8 * size + 4096, 4096);
    const descOff = 0;
    const availOff = 16 * size;
    const usedOff = (availOff + 6 + 2 * size + 3) & ~3;
    this.#desc = new DataView(ring.view.buffer, ring.view.byteOffset + descOff, 16 * size);
    this.#avail = new DataView(ring.view.buffer, ring.view.byteOffset + availOff, 6 + 2 * size);
    this.#availIdxView = this.#avail;
    this.#used = new DataView(ring.view.buffer, ring.view.byteOffset + usedOff, 6 + 8 * size);
    t.enableQueue(0, size, {
      descLo: ring.addrLo + descOff,
      descHi: ring.addrHi,
      driverLo: ring.addrLo + availOff,
      driverHi: ring.addrHi,
      deviceLo: ring.addrLo + usedOff,
      deviceHi: ring.addrHi,
    });
    // One 64-byte request slot per ring entry pair, like the driver's.
    const slots = memory.alloc(64 * size, 4096);
    this.#reqLo = slots.addrLo;
    this.#reqHi = slots.addrHi;
    this.#reqView = slots.view;
  }

  /** Initialises the device by hand (queue 1 left disabled) and attaches endpoint 8 to domain 1. */
  static async create(size = 256): Promise<Baseline> {
    const memory = new SimulatedMemory({ size: 64 * 1024 * 1024 });
    const device = new MockIommuDevice();
    const t = MmioTransport.create(new MmioDevice(device, memory));
    await beginInit(t, { supported: DIRECT_FEATURES });
    const b = new Baseline(t, device, memory, size);
    finishInit(t);
    // ATTACH endpoint 8 to domain 1, by hand.
    const v = b.#reqView;
    v.setUint32(0, 1, true); // type ATTACH
    v.setUint32(4, 1, true); // domain
    v.setUint32(8, 8, true); // endpoint
    b.#chain(0, 0, 20);
    b.#kick();
    b.#drain(1);
    return b;
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
    const slot = this.#availIdx & (this.#size - 1);
    this.#avail.setUint16(4 + 2 * slot, d, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
  }

  #kick(): void {
    this.#availIdxView.setUint16(2, this.#availIdx, true);
    this.#t.notify(0);
  }

  #drain(n: number): void {
    let got = 0;
    while (got < n) {
      const idx = this.#used.getUint16(USED_IDX, true);
      while (this.#usedIdx !== idx) {
        const e = USED_RING + USED_ELEM_SIZE * (this.#usedIdx & (this.#size - 1));
        if (this.#used.getUint32(e + 4, true) !== 4) throw new Error("baseline: bad used len");
        this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
        got++;
      }
    }
  }

  /** Encodes request `r` of a batch of n (MAP of page r, or UNMAP of page r - n/2) in slot `s`. */
  #encode(s: number, r: number, half: number): number {
    const v = this.#reqView;
    const o = s * 64;
    const map = r < half;
    const iova = 0x100000 + (map ? r : r - half) * 0x1000;
    v.setUint32(o, map ? 3 : 4, true);
    v.setUint32(o + 4, 1, true);
    v.setUint32(o + 8, iova, true);
    v.setUint32(o + 12, 0, true);
    v.setUint32(o + 16, iova + 0xfff, true);
    v.setUint32(o + 20, 0, true);
    if (!map) {
      v.setUint32(o + 24, 0, true);
      return 28;
    }
    v.setUint32(o + 24, 0x1000, true);
    v.setUint32(o + 28, 0, true);
    v.setUint32(o + 32, 3, true);
    return 36;
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
