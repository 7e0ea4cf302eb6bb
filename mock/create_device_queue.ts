/**
 * One place that turns a negotiated ring layout into a device-side queue: the split ring
 * (§2.7) unless VIRTIO_F_RING_PACKED was negotiated (§2.8). The generic core calls it when the
 * driver enables a queue.
 *
 * @module
 */

import type { DeviceContext, DeviceQueue } from "./device.ts";
import { checkPackedQueueLayout, PackedDeviceQueue } from "./packed_queue.ts";
import { checkQueueLayout, type DeviceQueueLayout, SplitDeviceQueue } from "./split_queue.ts";

/** Feature bit 34, VIRTIO_F_RING_PACKED (virtio 1.3 §6). */
const RING_PACKED_MASK = 1n << 34n;

/** Whether `features` select the packed ring layout. */
export function isPacked(features: bigint): boolean {
  return (features & RING_PACKED_MASK) !== 0n;
}

/**
 * The device side of the queue at `layout` for the negotiated features, or a string saying
 * what is wrong with the layout (alignment, memory) when it cannot be created.
 */
export function createDeviceQueue(
  context: DeviceContext,
  layout: DeviceQueueLayout,
): DeviceQueue | string {
  if (isPacked(context.negotiated)) {
    return checkPackedQueueLayout(context, layout) ?? new PackedDeviceQueue(context, layout);
  }
  return checkQueueLayout(context, layout) ?? new SplitDeviceQueue(context, layout);
}
