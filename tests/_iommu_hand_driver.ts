/**
 * A driver played by hand for the mock IOMMU's transport tests: it programs the MMIO or PCI
 * registers with literal offsets (virtio 1.3 §4.2.2, §4.1.4.3) and drives one split ring per
 * queue with literal ring offsets (§2.7), one request at a time. It uses no driver code, so
 * the mock is tested through the real harness without depending on the driver.
 *
 * @module
 */

import type { SimulatedMemory } from "../transport/memory.ts";
import type { RegisterSpace } from "../transport/registers.ts";

const QUEUE_SIZE = 8;

/** Where one transport keeps its registers. */
interface Regs {
  status(value?: number): number;
  features(): bigint;
  accept(features: bigint): void;
  queue(index: number, desc: number, avail: number, used: number, hi: number): void;
  notify(index: number): void;
  config: (offset: number) => number;
}

function mmioRegs(r: RegisterSpace): Regs {
  return {
    status(value?: number): number {
      if (value !== undefined) r.write32(0x070, value);
      return r.read32(0x070);
    },
    features(): bigint {
      r.write32(0x014, 0);
      const lo = r.read32(0x010);
      r.write32(0x014, 1);
      return (BigInt(r.read32(0x010)) << 32n) | BigInt(lo);
    },
    accept(f: bigint): void {
      r.write32(0x024, 0);
      r.write32(0x020, Number(f & 0xffff_ffffn));
      r.write32(0x024, 1);
      r.write32(0x020, Number(f >> 32n));
    },
    queue(i: number, desc: number, avail: number, used: number, hi: number): void {
      r.write32(0x030, i);
      r.write32(0x038, QUEUE_SIZE);
      r.write32(0x080, desc);
      r.write32(0x084, hi);
      r.write32(0x090, avail);
      r.write32(0x094, hi);
      r.write32(0x0a0, used);
      r.write32(0x0a4, hi);
      r.write32(0x044, 1);
    },
    notify(i: number): void {
      r.write32(0x050, i);
    },
    config: (offset: number): number => 0x100 + offset,
  };
}

function pciRegs(bar: RegisterSpace): Regs {
  // QEMU's layout, as the mock PCI function builds it: common 0x0, device 0x2000, notify 0x3000
  // with notify_off = queue index and multiplier 4.
  return {
    status(value?: number): number {
      if (value !== undefined) bar.write8(20, value);
      return bar.read8(20);
    },
    features(): bigint {
      bar.write32(0, 0);
      const lo = bar.read32(4);
      bar.write32(0, 1);
      return (BigInt(bar.read32(4)) << 32n) | BigInt(lo);
    },
    accept(f: bigint): void {
      bar.write32(8, 0);
      bar.write32(12, Number(f & 0xffff_ffffn));
      bar.write32(8, 1);
      bar.write32(12, Number(f >> 32n));
    },
    queue(i: number, desc: number, avail: number, used: number, hi: number): void {
      bar.write16(22, i);
      bar.write16(24, QUEUE_SIZE);
      bar.write32(32, desc);
      bar.write32(36, hi);
      bar.write32(40, avail);
      bar.write32(44, hi);
      bar.write32(48, used);
      bar.write32(52, hi);
      bar.write16(28, 1);
    },
    notify(i: number): void {
      bar.write16(0x3000 + i * 4, i);
    },
    config: (offset: number): number => 0x2000 + offset,
  };
}

/** One split ring driven by hand. */
class HandRing {
  readonly base: number;
  readonly addrLo: number;
  #avail = 0;
  #used = 0;
  #memory: SimulatedMemory;

  constructor(memory: SimulatedMemory) {
    this.#memory = memory;
    const region = memory.alloc(4096, 4096);
    this.addrLo = region.addrLo;
    this.base = memory.resolve(region.addrLo, region.addrHi, 4096);
  }

  /** Publishes a chain of (offset, length, writable) buffers in descriptors 0..n-1. */
  add(buffers: { addrLo: number; addrHi: number; len: number; write: boolean }[]): void {
    const v = this.#memory.view;
    buffers.forEach((b, i) => {
      const d = this.base + 16 * i;
      v.setUint32(d, b.addrLo, true);
      v.setUint32(d + 4, b.addrHi, true);
      v.setUint32(d + 8, b.len, true);
      v.setUint16(d + 12, (i + 1 < buffers.length ? 1 : 0) | (b.write ? 2 : 0), true);
      v.setUint16(d + 14, i + 1, true);
    });
    const avail = this.base + 128;
    v.setUint16(avail + 4 + 2 * (this.#avail % QUEUE_SIZE), 0, true);
    this.#avail = (this.#avail + 1) & 0xffff;
    v.setUint16(avail + 2, this.#avail, true);
  }

  /** Takes the next used element, or null. */
  take(): { id: number; len: number } | null {
    const v = this.#memory.view;
    const used = this.base + 256;
    if (v.getUint16(used + 2, true) === this.#used) return null;
    const e = used + 4 + 8 * (this.#used % QUEUE_SIZE);
    this.#used = (this.#used + 1) & 0xffff;
    return { id: v.getUint32(e, true), len: v.getUint32(e + 4, true) };
  }
}

/** A driver by hand over MMIO or PCI registers. */
export class HandDriver {
  readonly #regs: Regs;
  readonly #space: RegisterSpace;
  readonly #memory: SimulatedMemory;
  readonly #rings: HandRing[] = [];
  /** The features the driver accepted. */
  readonly negotiated: bigint;

  /** Initialises the device (§3.1.1), accepting `want & offered`, and sets up both queues. */
  constructor(
    kind: "mmio" | "pci",
    space: RegisterSpace,
    memory: SimulatedMemory,
    want: bigint,
  ) {
    this.#regs = kind === "mmio" ? mmioRegs(space) : pciRegs(space);
    this.#space = space;
    this.#memory = memory;
    const r = this.#regs;
    r.status(0);
    while (r.status() !== 0) { /* wait for the reset to complete */ }
    r.status(1);
    r.status(3);
    this.negotiated = r.features() & want;
    r.accept(this.negotiated);
    r.status(11);
    if ((r.status() & 8) === 0) throw new Error("FEATURES_OK refused");
    for (let i = 0; i < 2; i++) {
      const ring = new HandRing(memory);
      this.#rings.push(ring);
      r.queue(i, ring.addrLo, ring.addrLo + 128, ring.addrLo + 256, memory.baseHi);
    }
    r.status(15);
  }

  /** Sends `readable` with `writable` device-writable bytes; returns used length and bytes. */
  request(readable: Uint8Array, writable = 4): { used: number; bytes: Uint8Array } {
    const m = this.#memory;
    const rd = m.alloc(readable.length, 8);
    rd.bytes.set(readable);
    const wr = m.alloc(writable, 8);
    this.#rings[0].add([
      { addrLo: rd.addrLo, addrHi: rd.addrHi, len: readable.length, write: false },
      { addrLo: wr.addrLo, addrHi: wr.addrHi, len: writable, write: true },
    ]);
    this.#regs.notify(0);
    const e = this.#rings[0].take();
    if (e === null || e.id !== 0) throw new Error("No answer from the device");
    const bytes = wr.bytes.slice();
    m.free(rd);
    m.free(wr);
    return { used: e.len, bytes };
  }

  /** Offers one 24-byte event buffer on the event queue and returns it. */
  addEventBuffer(): Uint8Array {
    const buf = this.#memory.alloc(24, 8);
    this.#rings[1].add([{ addrLo: buf.addrLo, addrHi: buf.addrHi, len: 24, write: true }]);
    this.#regs.notify(1);
    return buf.bytes;
  }

  /** Takes the next used event, or null. */
  takeEvent(): { id: number; len: number } | null {
    return this.#rings[1].take();
  }

  /** Writes one byte of device config. */
  writeConfig8(offset: number, value: number): void {
    this.#space.write8(this.#regs.config(offset), value);
  }

  /** Reads 32 bits of device config. */
  readConfig32(offset: number): number {
    return this.#space.read32(this.#regs.config(offset));
  }
}
