/**
 * One place that turns a negotiated ring layout into a device-side queue: the split ring
 * (§2.7) unless VIRTIO_F_RING_PACKED was negotiated (§2.8). The generic core calls it when the
 * driver enables a queue.
 *
 * @module
 */

import { hasFeature, VIRTIO_F_RING_PACKED } from "../spec/features.ts";
import type { DeviceContext, DeviceQueue } from "./device.ts";
import { checkPackedQueueLayout, PackedDeviceQueue } from "./packed_queue.ts";
import { checkQueueLayout, type DeviceQueueLayout, SplitDeviceQueue } from "./split_queue.ts";

/** Whether `features` select the packed ring layout. */
export function isPacked(features: bigint): boolean {
  return hasFeature(features, VIRTIO_F_RING_PACKED);
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
