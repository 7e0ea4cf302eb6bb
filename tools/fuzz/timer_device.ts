/**
 * A device that answers from a timer: a {@link DeviceModel} wrapper that, when the driver
 * notifies the request queue, does nothing at once and lets the inner model (the mock, or a
 * FaultyDevice around it) take the available chains a few milliseconds later, the way a device
 * working in its own thread would. Everything the driver has in flight meanwhile is really in
 * flight. Used by tests/lifecycle_test.ts and the stress run (tools/fuzz/stress.ts).
 *
 * @module
 */

import { ForwardingDevice } from "../../mock/forwarding.ts";
import type { DeviceModel } from "../../mock/device.ts";
import { REQUEST_QUEUE } from "../../spec/iommu.ts";

/** Answers the request queue `delayMs` after the first notification of each burst. */
export class TimerDevice extends ForwardingDevice {
  /** Times the inner model was let at the request queue. */
  wakeups = 0;
  /** How late the inner model sees a notification, in ms (may change between bursts). */
  delayMs: number;
  #timer: ReturnType<typeof setTimeout> | null = null;

  /** Wraps `inner`; it sees the request queue's notifications `delayMs` late (default 1). */
  constructor(inner: DeviceModel, delayMs = 1) {
    super(inner);
    this.delayMs = delayMs;
  }

  /** Request queue: answered later, from a timer. Other queues go straight through. */
  override notify(index: number): void {
    if (index !== REQUEST_QUEUE) {
      this.inner.notify(index);
      return;
    }
    if (this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.wakeups++;
      this.inner.notify(REQUEST_QUEUE);
    }, this.delayMs);
  }

  /** Stops the pending timer (call before the test or run ends). */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
