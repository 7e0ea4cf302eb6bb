/**
 * A split ring built by hand in simulated memory, byte by byte through the ring layout
 * constants, so device-side tests depend on no driver code.
 *
 * @module
 */

import type { DmaRegion } from "../transport/dma.ts";
import type { SimulatedMemory } from "../transport/memory.ts";
import type { QueueAddresses } from "../transport/transport.ts";
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
  USED_IDX,
  USED_RING,
  usedEventOffset,
  usedRingSize,
} from "../spec/split_ring.ts";

/** A hand-built split ring. */
export class HandRing {
  /** Number of entries. */
  readonly size: number;
  /** Descriptor table. */
  readonly desc: DmaRegion;
  /** Avail ring. */
  readonly avail: DmaRegion;
  /** Used ring. */
  readonly used: DmaRegion;
  /** Free-running avail index the next publish() writes. */
  availIdx = 0;

  /** Allocates the three parts from `memory`. */
  constructor(memory: SimulatedMemory, size: number) {
    this.size = size;
    this.desc = memory.alloc(descTableSize(size), 16);
    this.avail = memory.alloc(availRingSize(size), 2);
    this.used = memory.alloc(usedRingSize(size), 4);
  }

  /** The addresses to program into the transport. */
  get addresses(): QueueAddresses {
    return {
      descLo: this.desc.addrLo,
      descHi: this.desc.addrHi,
      driverLo: this.avail.addrLo,
      driverHi: this.avail.addrHi,
      deviceLo: this.used.addrLo,
      deviceHi: this.used.addrHi,
    };
  }

  /** Writes descriptor `i` of `table` (default: the ring's own table). */
  setDesc(
    i: number,
    buf: { addrLo: number; addrHi: number },
    len: number,
    flags: number,
    next = 0,
    table: DmaRegion = this.desc,
  ): void {
    const v = table.view;
    const d = DESC_SIZE * i;
    v.setUint32(d + DESC_ADDR, buf.addrLo, true);
    v.setUint32(d + DESC_ADDR + 4, buf.addrHi, true);
    v.setUint32(d + DESC_LEN, len, true);
    v.setUint16(d + DESC_FLAGS, flags, true);
    v.setUint16(d + DESC_NEXT, next, true);
  }

  /** Puts `head` in the next avail slot and advances avail.idx. */
  publish(head: number): void {
    const v = this.avail.view;
    v.setUint16(AVAIL_RING + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    v.setUint16(AVAIL_IDX, this.availIdx, true);
  }

  /** Writes avail.idx directly. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.avail.view.setUint16(AVAIL_IDX, this.availIdx, true);
  }

  /** Writes avail.flags. */
  setAvailFlags(flags: number): void {
    this.avail.view.setUint16(AVAIL_FLAGS, flags, true);
  }

  /** Writes used_event (EVENT_IDX). */
  setUsedEvent(idx: number): void {
    this.avail.view.setUint16(usedEventOffset(this.size), idx, true);
  }

  /** Reads avail_event (EVENT_IDX). */
  availEvent(): number {
    return this.used.view.getUint16(availEventOffset(this.size), true);
  }

  /** Reads used.idx. */
  usedIdx(): number {
    return this.used.view.getUint16(USED_IDX, true);
  }

  /** Reads used.ring[slot]. */
  usedElem(slot: number): { id: number; len: number } {
    const e = USED_RING + USED_ELEM_SIZE * (slot % this.size);
    return {
      id: this.used.view.getUint32(e, true),
      len: this.used.view.getUint32(e + 4, true),
    };
  }
}
