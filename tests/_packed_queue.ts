/** A PackedVirtqueue with a hand-played device and descriptor flags, for packed_queue_*_test.ts. */

import assert from "node:assert/strict";
import { PackedVirtqueue } from "../driver/virtio/packed_queue.ts";
import type { VirtqueueOptions } from "../driver/virtio/virtqueue.ts";
import type { DmaRegion } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import {
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";
import { PackedHandDevice } from "./_packed_ring_helpers.ts";

export const A = VIRTQ_DESC_F_AVAIL;
export const U = VIRTQ_DESC_F_USED;
export const N = VIRTQ_DESC_F_NEXT;
export const W = VIRTQ_DESC_F_WRITE;

export interface Rig {
  memory: SimulatedMemory;
  vq: PackedVirtqueue;
  dev: PackedHandDevice;
  buf: DmaRegion;
}

export function rig(size: number, options: VirtqueueOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const vq = new PackedVirtqueue(0, size, memory, options);
  const dev = new PackedHandDevice(memory, vq.addresses, size);
  const buf = memory.alloc(64 * 1024);
  return { memory, vq, dev, buf };
}

/** Adds a 16-byte-in / 48-byte-out request at `off` of `buf` through add2(). */
export function add2(r: Rig, off = 0, rLen = 16, wLen = 48): number {
  const lo = r.buf.addrLo + off;
  return r.vq.add2(lo, r.buf.addrHi, rLen, lo + rLen, r.buf.addrHi, wLen);
}

/** The device takes the next buffer and returns it at once with `len` bytes written. */
export function serveOne(r: Rig, len: number): number {
  const b = r.dev.popAvail();
  assert.ok(b, "a buffer is available");
  r.dev.pushUsed(b.id, len, b.count);
  return b.id;
}
