/**
 * The device side of one packed virtqueue (virtio 1.3 §2.8), over {@link SimulatedMemory}.
 * It takes buffers from the descriptor ring in ring order the way a strict device would,
 * checking every rule the driver is bound by (§2.8.16-§2.8.19: the whole list available
 * before its head, readable before writable, no list longer than the queue, indirect rules,
 * addresses in memory, no overrun of the ring, no id reused while in flight), and writes used
 * descriptors back in the order it completes them, skipping each buffer's slots (§2.8.6).
 * Steady state allocates nothing: one {@link Chain} object is reused.
 *
 * A little over the 400-line guideline, as the split device queue would be with the same
 * checks: one class whose walk, indirect table and used side share the cursors.
 *
 * @module
 */

import { hasFeature, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../spec/features.ts";
import { hex } from "../util/hex.ts";
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
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";
import type { Chain, DeviceContext, DeviceQueue } from "./device.ts";
import { type DeviceQueueLayout, emptyChain, MAX_CHAIN_BYTES, putSegment } from "./split_queue.ts";

/** Buffer ids are 16 bits (§2.8.13). */
const ID_SPACE = 0x1_0000;

/**
 * Checks that a packed queue's parts are aligned (§2.8.10.1: ring 16, event suppression
 * structures 4) and lie inside `context.memory`; returns null when they do, else what is wrong.
 */
export function checkPackedQueueLayout(
  context: DeviceContext,
  layout: DeviceQueueLayout,
): string | null {
  const mem = context.memory;
  if ((layout.descLo & 15) !== 0) return "descriptor ring is not 16-byte aligned";
  if ((layout.driverLo & 3) !== 0) return "driver area is not 4-byte aligned";
  if ((layout.deviceLo & 3) !== 0) return "device area is not 4-byte aligned";
  if (mem.resolve(layout.descLo, layout.descHi, descRingSize(layout.size)) < 0) {
    return "descriptor ring lies outside guest memory";
  }
  if (mem.resolve(layout.driverLo, layout.driverHi, EVENT_SUPPRESS_SIZE) < 0) {
    return "driver area lies outside guest memory";
  }
  if (mem.resolve(layout.deviceLo, layout.deviceHi, EVENT_SUPPRESS_SIZE) < 0) {
    return "device area lies outside guest memory";
  }
  return null;
}

/**
 * Device side of a packed virtqueue. Create it with a layout checked by
 * {@link checkPackedQueueLayout}; the generic core does this when the driver enables a queue
 * with VIRTIO_F_RING_PACKED negotiated.
 */
export class PackedDeviceQueue implements DeviceQueue {
  /** Queue index. */
  readonly index: number;
  /** Number of ring descriptors (any value up to 32768). */
  readonly size: number;
  /** Always `"packed"`. */
  readonly layout = "packed" as const;
  /** Whether VIRTIO_F_EVENT_IDX was negotiated when the queue was enabled. */
  readonly eventIdx: boolean;
  /** Whether VIRTIO_F_INDIRECT_DESC was negotiated when the queue was enabled. */
  readonly indirect: boolean;
  #context: DeviceContext;
  #view: DataView;
  #ring: number;
  #driver: number;
  #device: number;
  /** Next slot to read, and the device's copy of the driver's wrap counter. */
  #availPos = 0;
  #availWrap = 1;
  /** Next slot to write a used descriptor into, and the Device Ring Wrap Counter (§2.8.1). */
  #usedPos = 0;
  #usedWrap = 1;
  /** Ring descriptors taken and not yet used: never more than the ring holds. */
  #outstanding = 0;
  /** Ring descriptors used since creation, and that count at the last interrupt decision. */
  #usedCount = 0;
  #signalledCount = 0;
  #signalledValid = false;
  #broken = false;
  #chain: Chain = emptyChain();
  /** Per buffer id: 1 while taken and not yet used. */
  #inFlight = new Uint8Array(ID_SPACE);
  /** Per buffer id: the ring descriptors its buffer held. */
  #countOf = new Uint16Array(ID_SPACE);

  /** Creates the queue over `context.memory`; throws RangeError for a layout that is not valid. */
  constructor(context: DeviceContext, layout: DeviceQueueLayout) {
    const problem = checkPackedQueueLayout(context, layout);
    if (problem !== null) throw new RangeError(`Cannot create device queue: ${problem}`);
    const mem = context.memory;
    this.index = layout.index;
    this.size = layout.size;
    this.#context = context;
    this.#view = mem.view;
    this.#ring = mem.resolve(layout.descLo, layout.descHi, descRingSize(layout.size));
    this.#driver = mem.resolve(layout.driverLo, layout.driverHi, EVENT_SUPPRESS_SIZE);
    this.#device = mem.resolve(layout.deviceLo, layout.deviceHi, EVENT_SUPPRESS_SIZE);
    this.eventIdx = hasFeature(context.negotiated, VIRTIO_F_EVENT_IDX);
    this.indirect = hasFeature(context.negotiated, VIRTIO_F_INDIRECT_DESC);
  }

  /** The next slot the device reads, and its copy of the driver's wrap counter. */
  get availCursor(): { pos: number; wrap: number } {
    return { pos: this.#availPos, wrap: this.#availWrap };
  }

  /** The next slot the device writes a used descriptor into, and the device's wrap counter. */
  get usedCursor(): { pos: number; wrap: number } {
    return { pos: this.#usedPos, wrap: this.#usedWrap };
  }

  /** Whether the queue stopped after a malformed buffer. */
  get broken(): boolean {
    return this.#broken;
  }

  /** Whether slot `pos` holds a descriptor made available with wrap counter `wrap` (§2.8.1). */
  #isAvail(pos: number, wrap: number): boolean {
    const flags = this.#view.getUint16(
      this.#ring + pos * PACKED_DESC_SIZE + PACKED_DESC_FLAGS,
      true,
    );
    return (flags & PACKED_STATE_MASK) === availState(wrap);
  }

  /** Number of buffers the driver has made available and the device has not taken yet. */
  pending(): number {
    let pos = this.#availPos, wrap = this.#availWrap, n = 0;
    // Each buffer's descriptors are consecutive; count heads, bounded by the ring.
    for (let seen = 0; seen < this.size && this.#isAvail(pos, wrap); seen++) {
      const flags = this.#view.getUint16(
        this.#ring + pos * PACKED_DESC_SIZE + PACKED_DESC_FLAGS,
        true,
      );
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) n++;
      if (++pos === this.size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    return n;
  }

  /** Takes the next available buffer; see {@link DeviceQueue.pop}. */
  pop(): Chain | null {
    if (this.#broken || !this.#isAvail(this.#availPos, this.#availWrap)) return null;
    const chain = this.#walk();
    if (chain === null) return null;
    if (this.eventIdx) {
      // The device wants a notification when the driver makes its next slot available.
      const v = this.#view;
      v.setUint16(
        this.#device + EVENT_OFF_WRAP,
        eventOffWrap(this.#availPos, this.#availWrap),
        true,
      );
      v.setUint16(this.#device + EVENT_FLAGS, RING_EVENT_FLAGS_DESC, true);
    }
    return chain;
  }

  /** Walks the buffer at the read cursor into the reused chain object, or fails. */
  #walk(): Chain | null {
    const view = this.#view;
    const chain = this.#chain;
    chain.readableCount = 0;
    chain.readableLength = 0;
    chain.writableCount = 0;
    chain.writableLength = 0;
    const head = this.#availPos;
    let pos = head;
    let wrap = this.#availWrap;
    let count = 0;
    let total = 0;
    let id = 0;
    for (;;) {
      if (++count > this.size) {
        return this.#fail(
          `virtio 1.3 §2.8.17: the list at slot ${head} is longer than the queue size ${this.size}`,
        );
      }
      if (count > 1 && !this.#isAvail(pos, wrap)) {
        return this.#fail(
          `virtio 1.3 §2.8.17: slot ${pos} of the list at slot ${head} is not available: the ` +
            "first descriptor was made available before the rest of the list",
        );
      }
      const d = this.#ring + pos * PACKED_DESC_SIZE;
      const addrLo = view.getUint32(d + PACKED_DESC_ADDR, true);
      const addrHi = view.getUint32(d + PACKED_DESC_ADDR + 4, true);
      const len = view.getUint32(d + PACKED_DESC_LEN, true);
      const flags = view.getUint16(d + PACKED_DESC_FLAGS, true);
      id = view.getUint16(d + PACKED_DESC_ID, true);
      if (++pos === this.size) {
        pos = 0;
        wrap ^= 1;
      }
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        const problem = this.#indirectTable(head, count, flags, addrLo, addrHi, len);
        if (problem !== null) return this.#fail(problem);
        break;
      }
      const problem = this.#segment(head, addrLo, addrHi, len, (flags & VIRTQ_DESC_F_WRITE) !== 0);
      if (problem !== null) return this.#fail(problem);
      total += len;
      if (total > MAX_CHAIN_BYTES) {
        return this.#fail(`virtio 1.3 §2.8.4: the list at slot ${head} is longer than 2^32 bytes`);
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
    }
    // §2.8.16: the driver MUST NOT change a descriptor the device has not used yet, so the
    // descriptors taken and not used can never exceed the ring.
    if (this.#outstanding + count > this.size) {
      return this.#fail(
        `virtio 1.3 §2.8.16: the driver made ${this.#outstanding + count} descriptors ` +
          `available in a ring of ${this.size} (it overwrote descriptors not yet used)`,
      );
    }
    // §2.8.6: the buffer id is in the last descriptor; the device answers by id.
    if (this.#inFlight[id] !== 0) {
      return this.#fail(
        `virtio 1.3 §2.8.21.1: buffer id ${id} at slot ${head} was made available again ` +
          "before the device used it",
      );
    }
    this.#inFlight[id] = 1;
    this.#countOf[id] = count;
    this.#outstanding += count;
    this.#availPos = pos;
    this.#availWrap = wrap;
    chain.head = id;
    return chain;
  }

  /** Adds one element to the chain; returns what is wrong with it, or null. */
  #segment(head: number, lo: number, hi: number, len: number, write: boolean): string | null {
    const off = this.#context.memory.resolve(lo, hi, len);
    if (off < 0) return this.#outside(head, lo, hi, len);
    const chain = this.#chain;
    if (write) {
      putSegment(chain.writable, chain.writableCount++, off, len);
      chain.writableLength += len;
      return null;
    }
    if (chain.writableCount > 0) {
      return `virtio 1.3 §2.8.17: device-readable element after a device-writable one in the ` +
        `list at slot ${head}`;
    }
    putSegment(chain.readable, chain.readableCount++, off, len);
    chain.readableLength += len;
    return null;
  }

  /** Reads an indirect table into the chain (§2.8.7, §2.8.19); returns what is wrong, or null. */
  #indirectTable(
    head: number,
    count: number,
    flags: number,
    lo: number,
    hi: number,
    len: number,
  ): string | null {
    if (!this.indirect) {
      return `virtio 1.3 §2.8.19: indirect descriptor at slot ${head} without ` +
        "VIRTIO_F_INDIRECT_DESC negotiated";
    }
    if (count > 1 || (flags & VIRTQ_DESC_F_NEXT) !== 0) {
      return `virtio 1.3 §2.8.19: indirect descriptor in a list linked by NEXT at slot ${head}`;
    }
    if (len === 0 || len % PACKED_DESC_SIZE !== 0 || len / PACKED_DESC_SIZE > this.size) {
      return `virtio 1.3 §2.8.7: indirect table at slot ${head} has length ${len}, not a ` +
        `non-zero multiple of 16 of at most ${this.size} entries`;
    }
    const mem = this.#context.memory;
    const table = mem.resolve(lo, hi, len);
    if (table < 0) return this.#outside(head, lo, hi, len);
    const view = this.#view;
    let total = 0;
    for (let i = 0; i < len / PACKED_DESC_SIZE; i++) {
      const d = table + i * PACKED_DESC_SIZE;
      const f = view.getUint16(d + PACKED_DESC_FLAGS, true);
      if ((f & ~VIRTQ_DESC_F_WRITE) !== 0) {
        return `virtio 1.3 §2.8.19: entry ${i} of the indirect table at slot ${head} has ` +
          `flags ${hex(f)}; only WRITE is allowed`;
      }
      const elen = view.getUint32(d + PACKED_DESC_LEN, true);
      const problem = this.#segment(
        head,
        view.getUint32(d + PACKED_DESC_ADDR, true),
        view.getUint32(d + PACKED_DESC_ADDR + 4, true),
        elen,
        (f & VIRTQ_DESC_F_WRITE) !== 0,
      );
      if (problem !== null) return problem;
      total += elen;
      if (total > MAX_CHAIN_BYTES) {
        return `virtio 1.3 §2.8.4: the list at slot ${head} is longer than 2^32 bytes`;
      }
    }
    return null;
  }

  /**
   * Writes the used descriptor of buffer `head` (its id) with `written` bytes at the used
   * slot: id and len first, then the flags with both bits equal to the device's wrap counter
   * and WRITE when data was written (§2.8.1, §2.8.3); then skips the buffer's slots.
   */
  push(head: number, written: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= ID_SPACE || this.#inFlight[head] === 0) {
      throw new RangeError(`Cannot push id ${head} on queue ${this.index}: it is not in flight`);
    }
    if (!Number.isInteger(written) || written < 0 || written > 0xffff_ffff) {
      throw new RangeError(`Cannot push a used length of ${written}`);
    }
    this.#inFlight[head] = 0;
    const count = this.#countOf[head];
    this.#writeUsed(
      head,
      written,
      usedState(this.#usedWrap) | (written > 0 ? VIRTQ_DESC_F_WRITE : 0),
    );
    this.#outstanding -= count;
    this.#advanceUsed(count);
  }

  /** Writes a used descriptor for any id at the used slot, skipping one slot; see {@link DeviceQueue.forgeUsed}. */
  forgeUsed(id: number, len: number): void {
    this.#writeUsed(id & 0xffff, len >>> 0, usedState(this.#usedWrap));
    this.#advanceUsed(1);
  }

  /**
   * Answers buffer `head` with AVAIL/USED bits of the wrong wrap counter: a slot that is
   * neither still available nor used; see {@link DeviceQueue.pushBroken}.
   */
  pushBroken(head: number, written: number): void {
    this.#writeUsed(head & 0xffff, written >>> 0, usedState(this.#usedWrap ^ 1));
  }

  #writeUsed(id: number, len: number, flags: number): void {
    const v = this.#view;
    const d = this.#ring + this.#usedPos * PACKED_DESC_SIZE;
    v.setUint16(d + PACKED_DESC_ID, id, true);
    v.setUint32(d + PACKED_DESC_LEN, len, true);
    // The flags last: they make the descriptor used (§2.8.1).
    v.setUint16(d + PACKED_DESC_FLAGS, flags, true);
  }

  #advanceUsed(count: number): void {
    this.#usedCount += count;
    this.#usedPos += count;
    if (this.#usedPos >= this.size) {
      this.#usedPos -= this.size;
      this.#usedWrap ^= 1; // §2.8.1: after using the last descriptor of the ring
    }
  }

  /**
   * Whether the driver wants a used-buffer notification for what was used since the last
   * decision: its event suppression structure (§2.8.10) says ENABLE, or DESC with a descriptor
   * event the device has passed (EVENT_IDX). Records a violation for reserved flags and for
   * DESC without EVENT_IDX (§2.8.14).
   */
  needsInterrupt(): boolean {
    const v = this.#view;
    const word = v.getUint16(this.#driver + EVENT_FLAGS, true);
    const flags = word & EVENT_FLAGS_MASK;
    if ((word & ~EVENT_FLAGS_MASK) !== 0 || flags === 3) {
      this.#context.violation(
        `virtio 1.3 §2.8.14: driver event suppression flags ${hex(word)} on queue ` +
          `${this.index} use reserved bits or the reserved value 3`,
      );
    }
    const moved = this.#usedCount - this.#signalledCount;
    const valid = this.#signalledValid;
    this.#signalledCount = this.#usedCount;
    this.#signalledValid = true;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags !== RING_EVENT_FLAGS_DESC) return true;
    if (!this.eventIdx) {
      this.#context.violation(
        `virtio 1.3 §2.8.10: RING_EVENT_FLAGS_DESC on queue ${this.index} without EVENT_IDX`,
      );
      return true;
    }
    if (!valid || moved >= this.size) return true;
    const offWrap = v.getUint16(this.#driver + EVENT_OFF_WRAP, true);
    return passedEvent(offWrap, this.#usedWrap, this.#usedPos - moved, this.#usedPos, this.size);
  }

  /** Asks the driver not to notify (DISABLE), or to notify again (ENABLE; DESC with EVENT_IDX). */
  setNoNotify(on: boolean): void {
    const v = this.#view;
    if (!on && this.eventIdx) {
      v.setUint16(
        this.#device + EVENT_OFF_WRAP,
        eventOffWrap(this.#availPos, this.#availWrap),
        true,
      );
      v.setUint16(this.#device + EVENT_FLAGS, RING_EVENT_FLAGS_DESC, true);
      return;
    }
    v.setUint16(
      this.#device + EVENT_FLAGS,
      on ? RING_EVENT_FLAGS_DISABLE : RING_EVENT_FLAGS_ENABLE,
      true,
    );
  }

  #outside(head: number, lo: number, hi: number, len: number): string {
    const addr = (BigInt(hi) << 32n) | BigInt(lo);
    return `virtio 1.3 §2.8.4: the list at slot ${head} points to ${hex(addr)} ` +
      `(+${len} bytes), outside guest memory`;
  }

  /** Records `rule` as a violation, puts the device in DEVICE_NEEDS_RESET, stops the queue. */
  #fail(rule: string): null {
    this.#broken = true;
    this.#context.violation(rule);
    this.#context.needsReset(rule);
    return null;
  }
}
