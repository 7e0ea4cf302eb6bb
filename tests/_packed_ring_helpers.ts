/**
 * A device played by hand for the packed virtqueue tests: it walks the descriptor ring in
 * order and writes used descriptors straight into simulated memory, using only the wire
 * layout constants of `spec/packed_ring.ts` (never the driver's own code).
 *
 * @module
 */

import type { SimulatedMemory } from "../transport/memory.ts";
import type { QueueAddresses } from "../transport/transport.ts";
import {
  descRingSize,
  EVENT_FLAGS,
  EVENT_OFF_WRAP,
  EVENT_SUPPRESS_SIZE,
  PACKED_DESC_ADDR,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";

/** One packed descriptor as the device reads it. */
export interface PackedDesc {
  /** Ring slot (or index in an indirect table). */
  pos: number;
  /** Address, low half. */
  addrLo: number;
  /** Address, high half. */
  addrHi: number;
  /** Length. */
  len: number;
  /** Buffer id. */
  id: number;
  /** Flags. */
  flags: number;
}

/** A buffer the hand device took from the ring. */
export interface PackedBuffer {
  /** Buffer id (from the last ring descriptor, §2.8.6). */
  id: number;
  /** Ring descriptors it held (the used-side skip). */
  count: number;
  /** The ring descriptor with INDIRECT, or null. */
  indirect: PackedDesc | null;
  /** Its elements, in order (the indirect table's entries for an indirect buffer). */
  descs: PackedDesc[];
}

/** Device side of one packed ring, by hand, over simulated memory. */
export class PackedHandDevice {
  /** The memory the ring lives in. */
  readonly memory: SimulatedMemory;
  /** Queue size. */
  readonly size: number;
  /** Offset of the descriptor ring in `memory.bytes`. */
  readonly ring: number;
  /** Offset of the driver event suppression structure. */
  readonly driver: number;
  /** Offset of the device event suppression structure. */
  readonly device: number;
  /** Next slot to read for available descriptors, and the device's view of the driver's wrap. */
  availPos = 0;
  availWrap = 1;
  /** Next slot to write a used descriptor into, and the Device Ring Wrap Counter. */
  usedPos = 0;
  usedWrap = 1;

  /** Resolves the queue's three parts; throws when any lies outside the memory. */
  constructor(memory: SimulatedMemory, addresses: QueueAddresses, size: number) {
    this.memory = memory;
    this.size = size;
    this.ring = mustResolve(memory, addresses.descLo, addresses.descHi, descRingSize(size));
    this.driver = mustResolve(memory, addresses.driverLo, addresses.driverHi, EVENT_SUPPRESS_SIZE);
    this.device = mustResolve(memory, addresses.deviceLo, addresses.deviceHi, EVENT_SUPPRESS_SIZE);
  }

  /** Reads ring slot `pos`. */
  readDesc(pos: number): PackedDesc {
    return readDescAt(this.memory, this.ring + pos * PACKED_DESC_SIZE, pos);
  }

  /** Whether slot `pos` is available for the wrap counter `wrap` (§2.8.1). */
  isAvail(pos: number, wrap: number): boolean {
    const f = this.readDesc(pos).flags;
    return ((f & VIRTQ_DESC_F_AVAIL) !== 0) === (wrap === 1) &&
      ((f & VIRTQ_DESC_F_USED) !== 0) !== (wrap === 1);
  }

  /** Takes the next available buffer (following NEXT, or its indirect table), or null. */
  popAvail(): PackedBuffer | null {
    if (!this.isAvail(this.availPos, this.availWrap)) return null;
    const ring: PackedDesc[] = [];
    for (;;) {
      const d = this.readDesc(this.availPos);
      if (!this.isAvail(this.availPos, this.availWrap)) {
        throw new Error(`slot ${this.availPos} of a chain is not available`);
      }
      ring.push(d);
      if (++this.availPos === this.size) {
        this.availPos = 0;
        this.availWrap ^= 1;
      }
      if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (ring.length > this.size) throw new Error("chain longer than the ring");
    }
    const last = ring[ring.length - 1];
    if ((ring[0].flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      const table = mustResolve(this.memory, ring[0].addrLo, ring[0].addrHi, ring[0].len);
      const descs: PackedDesc[] = [];
      for (let i = 0; i < ring[0].len / PACKED_DESC_SIZE; i++) {
        descs.push(readDescAt(this.memory, table + i * PACKED_DESC_SIZE, i));
      }
      return { id: last.id, count: ring.length, indirect: ring[0], descs };
    }
    return { id: last.id, count: ring.length, indirect: null, descs: ring };
  }

  /**
   * Writes a used descriptor for buffer `id` with `len` bytes written at the used slot, then
   * skips `count` slots (§2.8.6). `wrap` overrides the wrap bits (a lying device); `write`
   * sets VIRTQ_DESC_F_WRITE (default: when `len` > 0).
   */
  pushUsed(
    id: number,
    len: number,
    count: number,
    options: { wrap?: number; write?: boolean } = {},
  ): void {
    const wrap = options.wrap ?? this.usedWrap;
    const write = options.write ?? len > 0;
    const flags = (wrap ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0) |
      (write ? VIRTQ_DESC_F_WRITE : 0);
    this.writeUsedAt(this.usedPos, id, len, flags);
    this.usedPos += count;
    if (this.usedPos >= this.size) {
      this.usedPos -= this.size;
      this.usedWrap ^= 1;
    }
  }

  /** Writes id, len and then flags into slot `pos` (no bookkeeping). */
  writeUsedAt(pos: number, id: number, len: number, flags: number): void {
    const v = this.memory.view;
    const off = this.ring + pos * PACKED_DESC_SIZE;
    v.setUint16(off + PACKED_DESC_ID, id, true);
    v.setUint32(off + PACKED_DESC_LEN, len, true);
    v.setUint16(off + PACKED_DESC_FLAGS, flags, true);
  }

  /** The driver event suppression structure: `desc` word and flags. */
  driverEvent(): { offWrap: number; flags: number } {
    const v = this.memory.view;
    return {
      offWrap: v.getUint16(this.driver + EVENT_OFF_WRAP, true),
      flags: v.getUint16(this.driver + EVENT_FLAGS, true),
    };
  }

  /** Writes the device event suppression structure. */
  setDeviceEvent(flags: number, offWrap = 0): void {
    const v = this.memory.view;
    v.setUint16(this.device + EVENT_OFF_WRAP, offWrap, true);
    v.setUint16(this.device + EVENT_FLAGS, flags, true);
  }
}

/** Reads a packed descriptor at byte offset `off` of the memory. */
function readDescAt(memory: SimulatedMemory, off: number, pos: number): PackedDesc {
  const v = memory.view;
  return {
    pos,
    addrLo: v.getUint32(off + PACKED_DESC_ADDR, true),
    addrHi: v.getUint32(off + PACKED_DESC_ADDR + 4, true),
    len: v.getUint32(off + PACKED_DESC_LEN, true),
    id: v.getUint16(off + PACKED_DESC_ID, true),
    flags: v.getUint16(off + PACKED_DESC_FLAGS, true),
  };
}

/** Resolves an address range or throws. */
function mustResolve(memory: SimulatedMemory, lo: number, hi: number, len: number): number {
  const off = memory.resolve(lo, hi, len);
  if (off < 0) throw new Error(`Address 0x${hi.toString(16)}_${lo.toString(16)} not in memory`);
  return off;
}
