/**
 * What a driver sees of a virtqueue, whatever its ring layout (virtio 1.3 §2.6): add a chain,
 * publish, collect used buffers, suppress or enable used-buffer notifications, reset. The split
 * ring (§2.7, `SplitVirtqueue`) is one implementation, the packed ring (§2.8, `PackedVirtqueue`)
 * the other.
 * Callers (the request and event queues) use only this interface, so they run unchanged over
 * either layout.
 *
 * Ids: {@link Virtqueue.add2}, {@link Virtqueue.add} and {@link Virtqueue.addPair} return the
 * chain's id, an integer in 0..size−1 that {@link Virtqueue.popUsed} hands back when the device
 * returns the chain (the head descriptor index in a split ring, the buffer id in a packed one).
 * Pinned pair `p` always comes back as id `2p`.
 *
 * @module
 */

import type { QueueAddresses } from "../../transport/transport.ts";

/** The ring layout of a virtqueue: split (§2.7) or packed (§2.8, VIRTIO_F_RING_PACKED). */
export type RingLayout = "split" | "packed";

/** Options of a virtqueue; set each one only when the feature was negotiated. */
export interface VirtqueueOptions {
  /** VIRTIO_F_EVENT_IDX (bit 29) was negotiated: use the event suppression indices (§2.7.10, §2.8.10). */
  eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC (bit 28) was negotiated: put chains in indirect tables (§2.7.5.3, §2.8.7). */
  indirect?: boolean;
  /**
   * Entries of each preallocated indirect table (default 8, at least 2, clamped to the queue
   * size). A chain with more buffers than this falls back to direct descriptors.
   */
  maxIndirect?: number;
  /**
   * Chains pinned to fixed two-buffer pairs (default 0, at most `size / 2`): pair `p` is
   * pointed at its buffers once with {@link Virtqueue.setPair} and sent again and again with
   * {@link Virtqueue.addPair}, writing at most one length. Its id is `2p`.
   */
  pairs?: number;
}

/** One buffer of a chain passed to {@link Virtqueue.add}. */
export interface DmaBuffer {
  /** Low 32 bits of the buffer's device-visible address. */
  addrLo: number;
  /** High 32 bits of the buffer's device-visible address. */
  addrHi: number;
  /** Length in bytes (1 to 2^32 − 1). */
  length: number;
}

/**
 * Thrown when the device broke a ring rule (an id, length, index or flag the driver cannot
 * accept). The queue is then {@link Virtqueue.broken} until {@link Virtqueue.reset}; the caller
 * should reset the queue or the device.
 */
export class VirtqueueError extends Error {
  /** Index of the queue the device broke. */
  readonly queueIndex: number;
  /** Creates the error for queue `queueIndex` with a message naming the bad value. */
  constructor(queueIndex: number, message: string) {
    super(message);
    this.name = "VirtqueueError";
    this.queueIndex = queueIndex;
  }
}

/**
 * The driver side of one virtqueue. Every method is allocation-free except {@link Virtqueue.add}
 * (which takes arrays) and {@link Virtqueue.reset}; none uses `bigint`.
 */
export interface Virtqueue {
  /** Queue index on the device. */
  readonly index: number;
  /** Number of descriptors (split: a power of two up to 32768; packed: up to 32768). */
  readonly size: number;
  /** Which ring layout this queue uses. */
  readonly layout: RingLayout;
  /** Device-visible addresses of the ring's three areas, for `Transport.enableQueue`. */
  readonly addresses: QueueAddresses;
  /** Entries of each indirect table; 0 when indirect descriptors are not used. */
  readonly maxIndirect: number;
  /** Whether VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** Pinned pairs ({@link VirtqueueOptions.pairs}). */
  readonly pairs: number;
  /** Number of free descriptors. */
  readonly numFree: number;
  /** Number of chains added and not yet returned by {@link Virtqueue.popUsed}. */
  readonly inFlight: number;
  /** Length the device reported for the chain last returned by {@link Virtqueue.popUsed}. */
  readonly usedLen: number;
  /** Whether the device broke a ring rule (a {@link VirtqueueError} was thrown) since the last reset. */
  readonly broken: boolean;

  /**
   * Adds a chain of one device-readable buffer (`rLo`/`rHi`, `rLen` bytes) then one
   * device-writable buffer (`wLo`/`wHi`, `wLen` bytes); a zero length omits that part. Returns
   * the chain's id, or -1 when the ring has no room. Not visible until {@link Virtqueue.publish}.
   */
  add2(rLo: number, rHi: number, rLen: number, wLo: number, wHi: number, wLen: number): number;
  /**
   * Adds a chain of `readable` buffers followed by `writable` buffers (device-readable first,
   * §2.7.4.2 / §2.8.4). Returns the chain's id, or -1 when the ring has no room.
   */
  add(readable: readonly DmaBuffer[], writable: readonly DmaBuffer[]): number;
  /** Points pinned pair `pair` at a readable buffer of up to `rLen` bytes and a writable one of `wLen`. */
  setPair(
    pair: number,
    rLo: number,
    rHi: number,
    rLen: number,
    wLo: number,
    wHi: number,
    wLen: number,
  ): void;
  /**
   * Adds pinned pair `pair` with its first `rLen` readable bytes; returns its id `2·pair`, or
   * -1 when the ring has no room (a packed ring writes the pair's two descriptors anew).
   */
  addPair(pair: number, rLen: number): number;
  /**
   * Makes the chains added since the last call visible to the device; returns whether the
   * device wants an available-buffer notification (false when nothing was added).
   */
  publish(): boolean;
  /** Whether the device has returned chains that were not popped yet. */
  hasUsed(): boolean;
  /**
   * Pops one returned chain: its id, with {@link Virtqueue.usedLen} set, or -1 when there is
   * none. Everything the device wrote is checked first; a violation throws
   * {@link VirtqueueError} and leaves the queue {@link Virtqueue.broken}.
   */
  popUsed(): number;
  /**
   * Turns used-buffer notifications on or off. Returns true when nothing was returned meanwhile;
   * false means a caller about to wait for an interrupt must poll first.
   */
  setInterrupts(enabled: boolean): boolean;
  /**
   * Puts the queue back into its initial state (the device must not be using it: after a device
   * reset or a queue reset). Returns the ids that were in flight, ascending.
   */
  reset(): number[];
  /** Frees the queue's DMA memory; a second call does nothing. */
  destroy(): void;
}
