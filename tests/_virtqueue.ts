/** A SplitVirtqueue on simulated memory with a hand-played device, for virtqueue_*_test.ts. */

import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import type { VirtqueueOptions } from "../driver/virtio/virtqueue.ts";
import type { DmaRegion } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { HandDevice } from "./_ring_helpers.ts";

export interface Rig {
  memory: SimulatedMemory;
  vq: SplitVirtqueue;
  dev: HandDevice;
  buf: DmaRegion;
}

export function rig(size: number, options: VirtqueueOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const vq = new SplitVirtqueue(0, size, memory, options);
  const dev = new HandDevice(memory, vq.addresses, size);
  const buf = memory.alloc(64 * 1024);
  return { memory, vq, dev, buf };
}

/** Adds a 16-byte-in / 48-byte-out request at `off` of `buf` through add2(). */
export function add2(r: Rig, off = 0, rLen = 16, wLen = 48): number {
  return r.vq.add2(
    r.buf.addrLo + off,
    r.buf.addrHi,
    rLen,
    r.buf.addrLo + off + rLen,
    r.buf.addrHi,
    wLen,
  );
}

/** The device puts `head` in the used ring with `len` bytes written. */
export function complete(r: Rig, head: number, len: number): void {
  r.dev.pushUsed(head, len);
}
