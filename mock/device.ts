/**
 * The device-side contracts of the test harness: what a device model (such as the mock
 * virtio-iommu) implements, and what the generic virtio device core gives it in return.
 * The MMIO register file and the PCI function in this folder both drive a {@link DeviceModel}
 * through a {@link DeviceContext}, so a device is written once and runs behind both.
 *
 * @module
 */

import type { SimulatedMemory } from "../transport/memory.ts";

/** One buffer of a descriptor chain, as an offset into the simulated memory's bytes. */
export interface ChainSegment {
  /** Offset into `SimulatedMemory.bytes`. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/**
 * A descriptor chain the device popped from the avail ring (virtio 1.3 §2.7.5). The harness
 * reuses these objects: a model must not keep one after calling {@link DeviceQueue.push}.
 */
export interface Chain {
  /** The id to put in the used ring: the head descriptor index (split) or the buffer id (packed). */
  head: number;
  /** Device-readable segments, in order. Only the first `readableCount` entries are valid. */
  readable: ChainSegment[];
  /** Number of valid entries in {@link Chain.readable}. */
  readableCount: number;
  /** Total bytes of the readable segments. */
  readableLength: number;
  /** Device-writable segments, in order. Only the first `writableCount` entries are valid. */
  writable: ChainSegment[];
  /** Number of valid entries in {@link Chain.writable}. */
  writableCount: number;
  /** Total bytes of the writable segments. */
  writableLength: number;
}

/** Device side of one virtqueue (split, §2.7, or packed, §2.8), over simulated memory. */
export interface DeviceQueue {
  /** Queue index. */
  readonly index: number;
  /** Number of entries. */
  readonly size: number;
  /** The ring layout: split, or packed when VIRTIO_F_RING_PACKED was negotiated. */
  readonly layout: "split" | "packed";
  /** Whether the queue stopped after a malformed chain. */
  readonly broken: boolean;
  /**
   * Pops the next available chain, or returns null when the driver has published none.
   * A malformed chain (loop, out-of-bounds address, readable after writable, nested indirect,
   * longer than the queue) is recorded as a violation, makes the device set
   * DEVICE_NEEDS_RESET, and yields null.
   */
  pop(): Chain | null;
  /** Puts chain `head` in the used ring with `written` bytes, then advances used.idx. */
  push(head: number, written: number): void;
  /** Number of chains published by the driver and not yet popped. */
  pending(): number;
  /**
   * Whether the driver wants a used-buffer notification for what was pushed since the last
   * decision (its suppression flags or event index); records a violation for values the
   * driver must not write.
   */
  needsInterrupt(): boolean;
  /** Asks the driver to stop (true) or resume (false) available-buffer notifications. */
  setNoNotify(on: boolean): void;
  /**
   * A broken device: puts a used element for `id` (any value) at the next used position,
   * without the queue's bookkeeping, and moves on by one.
   */
  forgeUsed(id: number, len: number): void;
  /**
   * A broken device: answers chain `head` in a way the driver cannot accept as a ring state
   * (split: used.idx moves further than the queue holds; packed: the used descriptor carries
   * the AVAIL/USED bits of the wrong wrap counter).
   */
  pushBroken(head: number, written: number): void;
}

/** What the generic device core offers to a device model. */
export interface DeviceContext {
  /** The simulated memory the driver's DMA regions live in. */
  readonly memory: SimulatedMemory;
  /** Features both sides agreed on (valid after FEATURES_OK). */
  readonly negotiated: bigint;
  /** The device status byte. */
  readonly status: number;
  /** Device side of queue `index`, or null when the driver has not enabled it. */
  queue(index: number): DeviceQueue | null;
  /** Raises a used-buffer interrupt for queue `index` if the driver has not suppressed it. */
  interrupt(index: number): void;
  /** Sets DEVICE_NEEDS_RESET and raises a config-change interrupt (virtio 1.3 §2.1.2). */
  needsReset(reason: string): void;
  /** Records that the driver broke a spec rule (`rule` cites the section). */
  violation(rule: string): void;
  /** Marks the config as changed so the next generation read differs (virtio 1.3 §2.5.1). */
  configChanged(): void;
}

/** A virtio device behind the harness: its identity, config space and queue processing. */
export interface DeviceModel {
  /** Virtio device ID (23 for virtio-iommu). */
  readonly deviceId: number;
  /** Feature bits offered (VERSION_1 included by the model). */
  readonly features: bigint;
  /** Maximum size of each queue, by index; 0 for a queue that does not exist. */
  readonly queueSizes: readonly number[];
  /** Size of the device-specific config space in bytes. */
  readonly configSize: number;
  /** Called once when the model is plugged into a transport front-end. */
  attach(context: DeviceContext): void;
  /** Reads `width` (1, 2 or 4) bytes of config at `offset`. */
  readConfig(offset: number, width: number): number;
  /** Handles a driver write of `width` bytes of config at `offset`. */
  writeConfig(offset: number, width: number, value: number): void;
  /** The driver notified queue `index` (only delivered after DRIVER_OK). */
  notify(index: number): void;
  /** The device was reset (status 0 written). */
  reset(): void;
  /**
   * Whether the device processes available-buffer notifications that arrive before DRIVER_OK
   * (QEMU 7.2 does; virtio 1.3 §2.1.2 says it MUST NOT consume buffers then). Default false.
   */
  readonly notifyBeforeDriverOk?: boolean;
  /**
   * Queue `index` alone was reset (VIRTIO_F_RING_RESET, §2.6.1): forget what was taken from
   * it and not answered; the device MUST NOT use or answer it any more.
   */
  resetQueue?(index: number): void;
}
