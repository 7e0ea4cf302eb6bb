/**
 * Argument checks shared by the virtio-mmio and virtio-pci transports.
 *
 * @module
 */

import { MAX_QUEUE_SIZE } from "../spec/split_ring.ts";
import { TransportError } from "./transport.ts";

/** Throws RangeError unless `index` is a valid 16-bit queue index. */
export function checkQueueIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) {
    throw new RangeError(`Queue index ${index} is not an integer in 0..65535`);
  }
}

/**
 * Checks a queue size: an integer in 1..32768 (RangeError otherwise; virtio 1.3 §2.7 and §2.8
 * both stop at 32768, and the split ring's power-of-two rule is the split ring's own check)
 * no larger than the device's maximum `max` (TransportError otherwise).
 */
export function checkQueueSize(index: number, size: number, max: number): void {
  if (!Number.isInteger(size) || size <= 0 || size > MAX_QUEUE_SIZE) {
    throw new RangeError(`Queue ${index} size ${size} is not an integer in 1..32768`);
  }
  if (size > max) {
    throw new TransportError(`Queue ${index} size ${size} exceeds the device's maximum ${max}`);
  }
}
