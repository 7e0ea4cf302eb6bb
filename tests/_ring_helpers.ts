/**
 * A device played by hand for the split virtqueue tests: it reads the avail ring and the
 * descriptor table and writes used elements straight into simulated memory, using only the
 * wire layout constants of `spec/split_ring.ts` (never the driver's own code).
 *
 * @module
 */

import type { SimulatedMemory } from "../transport/memory.ts";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  AVAIL_RING,
  availEventOffset,
  availRingSize,
  DESC_ADDR,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  descTableSize,
  USED_ELEM_SIZE,
  USED_FLAGS,
  USED_IDX,
  USED_RING,
  usedEventOffset,
  usedRingSize,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
} from "../spec/split_ring.ts";
import type { QueueAddresses } from "../transport/transport.ts";

/** One descriptor as the device reads it. */
export interface Desc {
  /** Index in its table (ring table or indirect table). */
  index: number;
  /** Address, low half. */
  addrLo: number;
  /** Address, high half. */
  addrHi: number;
  /** Length. */
  len: number;
  /** Flags. */
  flags: number;
  /** Next field. */
  next: number;
}

/** Device side of one split ring, by hand, over simulated memory. */
export class HandDevice {
  /** The memory the rings live in. */
  readonly memory: SimulatedMemory;
  /** Queue size. */
  readonly size: number;
  /** Offset of the descriptor table in `memory.bytes`. */
  readonly desc: number;
  /** Offset of the avail ring. */
  readonly avail: number;
  /** Offset of the used ring. */
  readonly used: number;
  /** The device's next avail idx to consume. */
  lastAvail = 0;

  /** Resolves the queue's three parts; throws when any lies outside the memory. */
  constructor(memory: SimulatedMemory, addresses: QueueAddresses, size: number) {
    this.memory = memory;
    this.size = size;
    this.desc = mustResolve(memory, addresses.descLo, addresses.descHi, descTableSize(size));
    this.avail = mustResolve(memory, addresses.driverLo, addresses.driverHi, availRingSize(size));
    this.used = mustResolve(memory, addresses.deviceLo, addresses.deviceHi, usedRingSize(size));
  }

  /** avail.flags. */
  availFlags(): number {
    return this.memory.view.getUint16(this.avail + AVAIL_FLAGS, true);
  }
  /** avail.idx. */
  availIdx(): number {
    return this.memory.view.getUint16(this.avail + AVAIL_IDX, true);
  }
  /** avail.ring[slot]. */
  availRing(slot: number): number {
    return this.memory.view.getUint16(this.avail + AVAIL_RING + 2 * slot, true);
  }
  /** used_event (at the end of the avail ring). */
  usedEvent(): number {
    return this.memory.view.getUint16(this.avail + usedEventOffset(this.size), true);
  }
  /** used.flags. */
  usedFlags(): number {
    return this.memory.view.getUint16(this.used + USED_FLAGS, true);
  }
  /** Writes used.flags. */
  setUsedFlags(flags: number): void {
    this.memory.view.setUint16(this.used + USED_FLAGS, flags, true);
  }
  /** used.idx. */
  usedIdx(): number {
    return this.memory.view.getUint16(this.used + USED_IDX, true);
  }
  /** Writes used.idx. */
  setUsedIdx(idx: number): void {
    this.memory.view.setUint16(this.used + USED_IDX, idx & 0xffff, true);
  }
  /** avail_event (at the end of the used ring). */
  availEvent(): number {
    return this.memory.view.getUint16(this.used + availEventOffset(this.size), true);
  }
  /** Writes avail_event. */
  setAvailEvent(value: number): void {
    this.memory.view.setUint16(this.used + availEventOffset(this.size), value & 0xffff, true);
  }

  /** Reads descriptor `index` of the ring's table. */
  readDesc(index: number): Desc {
    return readDescAt(this.memory, this.desc + index * DESC_SIZE, index);
  }

  /** Overwrites the `next` field of ring descriptor `index` (a misbehaving device). */
  scribbleNext(index: number, next: number): void {
    this.memory.view.setUint16(this.desc + index * DESC_SIZE + DESC_NEXT, next, true);
  }

  /**
   * The descriptors of chain `head` as a device walks it: NEXT links in the ring table, or the
   * entries of the indirect table a single INDIRECT descriptor points to. Throws on a loop.
   */
  chain(head: number): { indirect: Desc | null; descs: Desc[] } {
    const first = this.readDesc(head);
    if ((first.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      const table = mustResolve(this.memory, first.addrLo, first.addrHi, first.len);
      const descs: Desc[] = [];
      let i = 0;
      for (;;) {
        const d = readDescAt(this.memory, table + i * DESC_SIZE, i);
        descs.push(d);
        if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) break;
        i = d.next;
        if (descs.length > first.len / DESC_SIZE) throw new Error("Loop in indirect table");
      }
      return { indirect: first, descs };
    }
    const descs: Desc[] = [first];
    let d = first;
    while ((d.flags & VIRTQ_DESC_F_NEXT) !== 0) {
      d = this.readDesc(d.next);
      descs.push(d);
      if (descs.length > this.size) throw new Error("Loop in descriptor chain");
    }
    return { indirect: null, descs };
  }

  /** Pops the next available head, or -1 when the driver published none. */
  popAvail(): number {
    if (this.lastAvail === this.availIdx()) return -1;
    const head = this.availRing(this.lastAvail % this.size);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return head;
  }

  /** Writes used element {id, len} at the slot of used.idx, then advances used.idx. */
  pushUsed(id: number, len: number): void {
    const idx = this.usedIdx();
    this.writeUsedElem(idx % this.size, id, len);
    this.setUsedIdx(idx + 1);
  }

  /** Writes used.ring[slot] without touching used.idx. */
  writeUsedElem(slot: number, id: number, len: number): void {
    const off = this.used + USED_RING + slot * USED_ELEM_SIZE;
    this.memory.view.setUint32(off, id, true);
    this.memory.view.setUint32(off + 4, len, true);
  }
}

/** Reads a descriptor at byte offset `off` of the memory. */
function readDescAt(memory: SimulatedMemory, off: number, index: number): Desc {
  const v = memory.view;
  return {
    index,
    addrLo: v.getUint32(off + DESC_ADDR, true),
    addrHi: v.getUint32(off + DESC_ADDR + 4, true),
    len: v.getUint32(off + DESC_LEN, true),
    flags: v.getUint16(off + DESC_FLAGS, true),
    next: v.getUint16(off + DESC_NEXT, true),
  };
}

/** Resolves an address range or throws. */
function mustResolve(memory: SimulatedMemory, lo: number, hi: number, len: number): number {
  const off = memory.resolve(lo, hi, len);
  if (off < 0) throw new Error(`Address 0x${hi.toString(16)}_${lo.toString(16)} not in memory`);
  return off;
}
