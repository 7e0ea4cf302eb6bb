/**
 * One place that turns a negotiated ring layout into a {@link Virtqueue}: the split ring
 * (§2.7) unless VIRTIO_F_RING_PACKED was negotiated (§2.8). Callers hold only the interface.
 *
 * @module
 */

import type { DmaAllocator } from "../../transport/dma.ts";
import { PackedVirtqueue } from "./packed_queue.ts";
import { SplitVirtqueue } from "./split_queue.ts";
import type { RingLayout, Virtqueue, VirtqueueOptions } from "./virtqueue.ts";

/**
 * Creates queue `index` with `size` descriptors of ring layout `layout` in memory from `dma`.
 * Throws RangeError for a size, index or option the layout cannot take, and TypeError for an
 * unknown layout.
 */
export function createVirtqueue(
  layout: RingLayout,
  index: number,
  size: number,
  dma: DmaAllocator,
  options: VirtqueueOptions = {},
): Virtqueue {
  if (layout === "split") return new SplitVirtqueue(index, size, dma, options);
  if (layout === "packed") return new PackedVirtqueue(index, size, dma, options);
  throw new TypeError(`Ring layout ${JSON.stringify(layout)} is not implemented`);
}
