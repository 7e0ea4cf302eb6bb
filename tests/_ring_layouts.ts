/**
 * The ring layouts the suites run over (virtio 1.3 §2.7 split, §2.8 packed), and how to ask
 * the mock for each: generated tests take a layout the way they take a transport kind.
 *
 * @module
 */

import type { RingLayout } from "../driver/virtio/virtqueue.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";

/** Both ring layouts, for tests generated per layout. */
export const RING_LAYOUTS: readonly RingLayout[] = ["split", "packed"];

/** Mock options that make the device offer (packed) or not offer (split) VIRTIO_F_RING_PACKED. */
export function ringMock(layout: RingLayout, options: MockIommuOptions = {}): MockIommuOptions {
  return { ...options, packed: layout === "packed" };
}
