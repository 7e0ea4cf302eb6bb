/**
 * Resetting one virtqueue without resetting the device (VIRTIO_F_RING_RESET, virtio 1.3
 * §2.6.1), written once over the {@link Transport} primitives so virtio-pci (`queue_reset`,
 * §4.1.4.3) and virtio-mmio (QueueReset, §4.2.2) go through the same steps. Re-enabling is the
 * queue's ordinary setup (§2.6.1.2: "the same as the initialization process of a single
 * queue"): reset the driver's ring, then `Transport.enableQueue`.
 *
 * @module
 */

import type { Transport } from "../../transport/transport.ts";
import { VirtqueueError } from "./virtqueue.ts";

/** Default time to wait for a queue reset to complete, in ms. */
const QUEUE_RESET_TIMEOUT_MS = 1000;

/**
 * Resets queue `index` and waits until the device reports it done: the reset register reads
 * 0 again (§4.1.4.3.2, §4.2.2.2: the driver MUST NOT consider the reset complete before) and
 * the queue reads as disabled (§2.6.1.1.2: the driver MUST verify the queue was reset). After
 * this the device no longer uses the queue's memory. Throws {@link VirtqueueError} when the
 * reset does not complete within `timeoutMs` or leaves the queue enabled: never hangs.
 */
export async function resetVirtqueue(
  transport: Transport,
  index: number,
  timeoutMs: number = QUEUE_RESET_TIMEOUT_MS,
): Promise<void> {
  transport.resetQueue(index);
  const deadline = performance.now() + timeoutMs;
  let spins = 0;
  while (transport.queueResetPending(index)) {
    if (performance.now() > deadline) {
      throw new VirtqueueError(
        index,
        `Queue ${index} reset did not complete within ${timeoutMs} ms (queue_reset still reads 1)`,
      );
    }
    // Spin briefly (QEMU completes the reset within the register write), then yield.
    if (++spins > 1000) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  if (transport.queueEnabled(index)) {
    throw new VirtqueueError(
      index,
      `Queue ${index} still reads as enabled after its reset completed`,
    );
  }
}
