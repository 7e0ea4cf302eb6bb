/**
 * The device side of one split virtqueue (virtio 1.3 §2.7), over {@link SimulatedMemory}.
 * It pops descriptor chains the way a strict device would, checking every rule the driver is
 * bound by, and pushes used elements back. Steady state allocates nothing: one {@link Chain}
 * object and its segment arrays are reused, growing only when a longer chain shows up.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
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
} from "../spec/split_ring.ts";
import { hasFeature, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../spec/features.ts";
import type { QueueAddresses } from "../transport/transport.ts";
import type { Chain, ChainSegment, DeviceContext, DeviceQueue } from "./device.ts";

/** Largest total length of a chain: 2^32 bytes (virtio 1.3 §2.7.5). */
export const MAX_CHAIN_BYTES = 0x1_0000_0000;

/** Where one queue's three parts are (their addresses as the transport carries them), and its size. */
export interface DeviceQueueLayout extends QueueAddresses {
  /** Queue index. */
  index: number;
  /** Number of entries (a power of two). */
  size: number;
}

/**
 * Checks that a queue's parts are aligned (virtio 1.3 §2.7, "Virtqueue Part Alignment") and
 * lie inside `context.memory`; returns null when they do, else what is wrong.
 */
export function checkQueueLayout(context: DeviceContext, layout: DeviceQueueLayout): string | null {
  const mem = context.memory;
  const n = layout.size;
  if ((layout.descLo & (DESC_ALIGN - 1)) !== 0) return "descriptor table is not 16-byte aligned";
  if ((layout.driverLo & (AVAIL_ALIGN - 1)) !== 0) return "driver area is not 2-byte aligned";
  if ((layout.deviceLo & (USED_ALIGN - 1)) !== 0) return "device area is not 4-byte aligned";
  if (mem.resolve(layout.descLo, layout.descHi, descTableSize(n)) < 0) {
    return "descriptor table lies outside guest memory";
  }
  if (mem.resolve(layout.driverLo, layout.driverHi, availRingSize(n)) < 0) {
    return "driver area lies outside guest memory";
  }
  if (mem.resolve(layout.deviceLo, layout.deviceHi, usedRingSize(n)) < 0) {
    return "device area lies outside guest memory";
  }
  return null;
}

/** Creates an empty reusable chain. */
export function emptyChain(): Chain {
  return {
    head: 0,
    readable: [],
    readableCount: 0,
    readableLength: 0,
    writable: [],
    writableCount: 0,
    writableLength: 0,
  };
}

/** Sets entry `n` of `list` to (offset, length), growing the list only when it is too short. */
export function putSegment(list: ChainSegment[], n: number, offset: number, length: number): void {
  if (n < list.length) {
    list[n].offset = offset;
    list[n].length = length;
  } else {
    list.push({ offset, length });
  }
}

/**
 * Device side of a split virtqueue. Create it with a layout checked by
 * {@link checkQueueLayout}; the generic core does this when the driver enables a queue.
 */
export class SplitDeviceQueue implements DeviceQueue {
  /** Queue index. */
  readonly index: number;
  /** Number of entries. */
  readonly size: number;
  /** Always `"split"`. */
  readonly layout = "split" as const;
  /** Whether VIRTIO_F_EVENT_IDX was negotiated when the queue was enabled. */
  readonly eventIdx: boolean;
  /** Whether VIRTIO_F_INDIRECT_DESC was negotiated when the queue was enabled. */
  readonly indirect: boolean;
  #context: DeviceContext;
  #view: DataView;
  #desc: number;
  #avail: number;
  #used: number;
  #lastAvail = 0;
  #usedIdx = 0;
  #signalledUsed = 0;
  #signalledValid = false;
  #broken = false;
  #chain: Chain = emptyChain();
  /** 1 for each head popped and not yet pushed. */
  #inFlight: Uint8Array;

  /** Creates the queue over `context.memory`; throws RangeError for a layout that is not valid. */
  constructor(context: DeviceContext, layout: DeviceQueueLayout) {
    const problem = checkQueueLayout(context, layout);
    if (problem !== null) throw new RangeError(`Cannot create device queue: ${problem}`);
    const mem = context.memory;
    this.index = layout.index;
    this.size = layout.size;
    this.#context = context;
    this.#view = mem.view;
    this.#desc = mem.resolve(layout.descLo, layout.descHi, descTableSize(layout.size));
    this.#avail = mem.resolve(layout.driverLo, layout.driverHi, availRingSize(layout.size));
    this.#used = mem.resolve(layout.deviceLo, layout.deviceHi, usedRingSize(layout.size));
    const negotiated = context.negotiated;
    this.eventIdx = hasFeature(negotiated, VIRTIO_F_EVENT_IDX);
    this.indirect = hasFeature(negotiated, VIRTIO_F_INDIRECT_DESC);
    this.#inFlight = new Uint8Array(layout.size);
  }

  /** The device's next used index (free-running, 16 bits). */
  get usedIndex(): number {
    return this.#usedIdx;
  }

  /** The index of the next avail ring entry the device will read (free-running, 16 bits). */
  get lastAvailIndex(): number {
    return this.#lastAvail;
  }

  /** Whether the queue stopped after a malformed chain. */
  get broken(): boolean {
    return this.#broken;
  }

  /** Number of chains published by the driver and not yet popped. */
  pending(): number {
    const availIdx = this.#view.getUint16(this.#avail + AVAIL_IDX, true);
    return (availIdx - this.#lastAvail) & 0xffff;
  }

  /** Pops the next available chain; see {@link DeviceQueue.pop}. */
  pop(): Chain | null {
    if (this.#broken) return null;
    const view = this.#view;
    const size = this.size;
    const pending = this.pending();
    if (pending === 0) return null;
    if (pending > size) {
      return this.#fail(
        `virtio 1.3 §2.7.6: avail.idx moved ${pending} entries ahead on queue ${this.index} ` +
          `of size ${size}`,
      );
    }
    const slot = this.#lastAvail & (size - 1);
    const head = view.getUint16(this.#avail + AVAIL_RING + 2 * slot, true);
    if (head >= size) {
      return this.#fail(
        `virtio 1.3 §2.7.6: avail ring entry ${slot} holds head ${head}, not below queue size ${size}`,
      );
    }
    if (this.#inFlight[head] !== 0) {
      return this.#fail(
        `virtio 1.3 §2.7.13: head ${head} made available again before the device used it`,
      );
    }
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    if (this.eventIdx) {
      // The device tells the driver how far it has consumed (virtio 1.3 §2.7.10).
      view.setUint16(this.#used + availEventOffset(size), this.#lastAvail, true);
    }
    return this.#walk(head);
  }

  /** Walks the chain at `head` into the reused chain object, or fails. */
  #walk(head: number): Chain | null {
    const view = this.#view;
    const mem = this.#context.memory;
    const chain = this.#chain;
    chain.head = head;
    chain.readableCount = 0;
    chain.readableLength = 0;
    chain.writableCount = 0;
    chain.writableLength = 0;
    let table = this.#desc;
    let limit = this.size;
    let inIndirect = false;
    let idx = head;
    let count = 0;
    let total = 0;
    for (;;) {
      if (++count > limit) {
        return this.#fail(
          `virtio 1.3 §2.7.5.2: chain at head ${head} is longer than ${limit} descriptors ` +
            `(a loop?)`,
        );
      }
      const d = table + DESC_SIZE * idx;
      const addrLo = view.getUint32(d + DESC_ADDR, true);
      const addrHi = view.getUint32(d + DESC_ADDR + 4, true);
      const len = view.getUint32(d + DESC_LEN, true);
      const flags = view.getUint16(d + DESC_FLAGS, true);
      const next = view.getUint16(d + DESC_NEXT, true);
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        if (!this.indirect) {
          return this.#fail(
            `virtio 1.3 §2.7.5.3.1: indirect descriptor at head ${head} without ` +
              `VIRTIO_F_INDIRECT_DESC negotiated`,
          );
        }
        if (inIndirect) {
          return this.#fail(
            `virtio 1.3 §2.7.5.3.1: nested indirect descriptor in the table of head ${head}`,
          );
        }
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) {
          return this.#fail(
            `virtio 1.3 §2.7.5.3.1: descriptor ${idx} of head ${head} has both INDIRECT and NEXT`,
          );
        }
        if (len === 0 || len % DESC_SIZE !== 0) {
          return this.#fail(
            `virtio 1.3 §2.7.5.3.1: indirect table of head ${head} has length ${len}, ` +
              `not a non-zero multiple of 16`,
          );
        }
        const off = mem.resolve(addrLo, addrHi, len);
        if (off < 0) return this.#outOfBounds(head, addrLo, addrHi, len);
        table = off;
        limit = len / DESC_SIZE;
        inIndirect = true;
        idx = 0;
        count = 0;
        continue;
      }
      const off = mem.resolve(addrLo, addrHi, len);
      if (off < 0) return this.#outOfBounds(head, addrLo, addrHi, len);
      total += len;
      if (total > MAX_CHAIN_BYTES) {
        return this.#fail(`virtio 1.3 §2.7.5: chain at head ${head} is longer than 2^32 bytes`);
      }
      if ((flags & VIRTQ_DESC_F_WRITE) !== 0) {
        putSegment(chain.writable, chain.writableCount++, off, len);
        chain.writableLength += len;
      } else {
        if (chain.writableCount > 0) {
          return this.#fail(
            `virtio 1.3 §2.7.4.2: device-readable descriptor after a device-writable one in ` +
              `the chain at head ${head}`,
          );
        }
        putSegment(chain.readable, chain.readableCount++, off, len);
        chain.readableLength += len;
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= limit) {
        return this.#fail(
          `virtio 1.3 §2.7.5: descriptor ${idx} of head ${head} points to ${next}, ` +
            `beyond the ${limit}-entry table`,
        );
      }
      idx = next;
    }
    this.#inFlight[head] = 1;
    return chain;
  }

  /** Puts chain `head` in the used ring with `written` bytes; see {@link DeviceQueue.push}. */
  push(head: number, written: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= this.size || this.#inFlight[head] === 0) {
      throw new RangeError(`Cannot push head ${head} on queue ${this.index}: it is not in flight`);
    }
    if (!Number.isInteger(written) || written < 0 || written > 0xffff_ffff) {
      throw new RangeError(`Cannot push a used length of ${written}`);
    }
    this.#inFlight[head] = 0;
    this.#writeElem(head, written, 1);
  }

  /** Writes used element (`id`, `len`) and advances used.idx by one; see {@link DeviceQueue.forgeUsed}. */
  forgeUsed(id: number, len: number): void {
    this.#writeElem(id >>> 0, len >>> 0, 1);
  }

  /**
   * Answers chain `head`, then moves used.idx further than the queue holds; see
   * {@link DeviceQueue.pushBroken}.
   */
  pushBroken(head: number, written: number): void {
    this.#inFlight[head] = 0;
    this.#writeElem(head >>> 0, written >>> 0, this.size + 1);
  }

  /**
   * Writes a used element at used.idx, then moves used.idx by `step` (bookkeeping aside): the
   * element is written before used.idx moves (virtio 1.3 §2.7.8.2).
   */
  #writeElem(id: number, len: number, step: number): void {
    const view = this.#view;
    const e = this.#used + USED_RING + USED_ELEM_SIZE * (this.#usedIdx & (this.size - 1));
    view.setUint32(e, id, true);
    view.setUint32(e + 4, len, true);
    this.#usedIdx = (this.#usedIdx + step) & 0xffff;
    view.setUint16(this.#used + USED_IDX, this.#usedIdx, true);
  }

  /**
   * Whether the driver wants a used-buffer notification for what was pushed since the last
   * one: `used_event` with EVENT_IDX, else the NO_INTERRUPT flag (virtio 1.3 §2.7.7, §2.7.10).
   * Records a violation for avail flags the driver must not set.
   */
  needsInterrupt(): boolean {
    const view = this.#view;
    const flags = view.getUint16(this.#avail + AVAIL_FLAGS, true);
    if (this.eventIdx) {
      if (flags !== 0) {
        this.#context.violation(
          `virtio 1.3 §2.7.7.1: avail.flags is ${flags} on queue ${this.index} with EVENT_IDX`,
        );
      }
      const old = this.#signalledUsed;
      const valid = this.#signalledValid;
      this.#signalledUsed = this.#usedIdx;
      this.#signalledValid = true;
      if (!valid) return true;
      const event = view.getUint16(this.#avail + usedEventOffset(this.size), true);
      return needEvent(event, this.#usedIdx, old);
    }
    if ((flags & ~VIRTQ_AVAIL_F_NO_INTERRUPT) !== 0) {
      this.#context.violation(
        `virtio 1.3 §2.7.7.1: avail.flags is ${flags} on queue ${this.index}; only 0 or 1 allowed`,
      );
    }
    return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** Sets or clears VIRTQ_USED_F_NO_NOTIFY, asking the driver not to notify (§2.7.10). */
  setNoNotify(on: boolean): void {
    this.#view.setUint16(this.#used + USED_FLAGS, on ? VIRTQ_USED_F_NO_NOTIFY : 0, true);
  }

  #outOfBounds(head: number, lo: number, hi: number, len: number): null {
    const addr = (BigInt(hi) << 32n) | BigInt(lo);
    return this.#fail(
      `virtio 1.3 §2.7.5: chain at head ${head} points to ${hex(addr)} ` +
        `(+${len} bytes), outside guest memory`,
    );
  }

  /** Records `rule` as a violation, puts the device in DEVICE_NEEDS_RESET, stops the queue. */
  #fail(rule: string): null {
    this.#broken = true;
    this.#context.violation(rule);
    this.#context.needsReset(rule);
    return null;
  }
}
