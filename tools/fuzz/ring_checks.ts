/**
 * What the used-ring fuzz targets (split, packed) check the same way: guard memory on both
 * sides of the queue that the driver must never write, and a pop loop that accepts only
 * buffers in flight with a length within their writable part, or a typed VirtqueueError after
 * which the queue stays broken.
 *
 * @module
 */

import type { Virtqueue } from "../../driver/virtio/virtqueue.ts";
import { VirtqueueError } from "../../driver/virtio/virtqueue.ts";
import type { DmaRegion } from "../../transport/dma.ts";
import type { SimulatedMemory } from "../../transport/memory.ts";
import { FuzzCrash, type Outcome } from "./engine.ts";

const GUARD_BEFORE = 0xa5, GUARD_AFTER = 0x5a;

/** A queue with guard regions allocated right before and after it. */
export interface GuardedQueue<Q extends Virtqueue> {
  /** The queue. */
  vq: Q;
  /** Guard before the queue (its buffers' readable part points here). */
  before: DmaRegion;
  /** Guard after the queue (its buffers' writable part points here). */
  after: DmaRegion;
}

/** Allocates a guard, the queue `make` creates, and another guard, in that order. */
export function guarded<Q extends Virtqueue>(
  memory: SimulatedMemory,
  make: () => Q,
): GuardedQueue<Q> {
  const before = memory.alloc(256, 4096);
  const vq = make();
  const after = memory.alloc(256, 4096);
  before.bytes.fill(GUARD_BEFORE);
  after.bytes.fill(GUARD_AFTER);
  return { vq, before, after };
}

/** Destroys the queue and frees the guards; a FuzzCrash if the driver wrote into either. */
export function release(memory: SimulatedMemory, g: GuardedQueue<Virtqueue>): void {
  const clean = g.before.bytes.every((x) => x === GUARD_BEFORE) &&
    g.after.bytes.every((x) => x === GUARD_AFTER);
  g.vq.destroy();
  memory.free(g.before);
  memory.free(g.after);
  if (!clean) throw new FuzzCrash("the driver wrote outside its queue");
}

/**
 * Pops every used buffer the device offers: each must be in `writable` (id → writable bytes,
 * removed once returned) with a length within it; then `after` checks what else must hold.
 * Returns "rejected" when the queue broke with a VirtqueueError and stays broken.
 */
export function popChecked(
  vq: Virtqueue,
  writable: Map<number, number>,
  after?: () => void,
): Outcome {
  try {
    for (let id = vq.popUsed(); id >= 0; id = vq.popUsed()) {
      const w = writable.get(id);
      if (w === undefined) throw new FuzzCrash(`popUsed returned ${id}, not in flight`);
      if (vq.usedLen > w) throw new FuzzCrash(`used len ${vq.usedLen} > writable ${w}`);
      writable.delete(id);
    }
    after?.();
    return "ok";
  } catch (error) {
    if (!(error instanceof VirtqueueError)) throw error;
  }
  try {
    vq.popUsed();
  } catch (again) {
    if (again instanceof VirtqueueError) return "rejected";
    throw again;
  }
  throw new FuzzCrash("popUsed on a broken queue did not throw");
}
