/**
 * Whether a driver takes interrupts and how: the choice (`"auto"` takes the transport's
 * interrupt source when it has one, `"off"` polls), the MSI-X vector mapping during queue setup
 * (virtio 1.3 §4.1.5.1.2), the listening loop, and the fall-back to polling when the vectors
 * cannot be mapped or the source goes away, with the reason kept for the caller. Generic: it
 * knows nothing of the device type.
 *
 * @module
 */

import type { Transport } from "../../transport/transport.ts";
import {
  type InterruptMode,
  type InterruptStats,
  type NotificationHandlers,
  VirtioInterrupts,
} from "../../transport/interrupts.ts";

/** Whether to take interrupts: `"auto"` when the transport has a source, or `"off"` (poll). */
export type InterruptChoice = "auto" | "off";

/** How a driver learns that its device has something for it. */
export interface InterruptInfo {
  /** `"off"` when it polls; otherwise how interrupts arrive. */
  mode: "off" | InterruptMode;
  /** Why it polls (null while interrupts are on). */
  reason: string | null;
}

/** The interrupts a driver uses, or why it polls. */
export class InterruptSetup {
  #irq: VirtioInterrupts | null = null;
  /** The counters of the interrupts taken, kept after a fall-back to polling. */
  #stats: InterruptStats | null = null;
  #reason: string | null;

  /** Takes `transport`'s interrupt source unless `choice` is "off" or it cannot be used. */
  constructor(transport: Transport, choice: InterruptChoice = "auto") {
    if (choice !== "auto" && choice !== "off") {
      throw new TypeError(`Invalid interrupts option ${JSON.stringify(choice)}: "auto" or "off"`);
    }
    const source = transport.interrupts ?? null;
    if (choice === "off") {
      this.#reason = 'interrupts: "off" was chosen';
    } else if (source === null) {
      this.#reason = "the transport has no interrupt source";
    } else {
      try {
        this.#irq = new VirtioInterrupts(transport, source);
        this.#stats = this.#irq.stats;
        this.#reason = null;
      } catch (error) {
        this.#reason = (error as Error).message;
      }
    }
  }

  /** Whether interrupts are in use. */
  get active(): boolean {
    return this.#irq !== null;
  }

  /** How notifications arrive, or why the driver polls. */
  get info(): InterruptInfo {
    return { mode: this.#irq?.mode ?? "off", reason: this.#reason };
  }

  /** The interrupt counters (kept after a fall-back to polling), or null: never any. */
  get stats(): InterruptStats | null {
    return this.#stats === null ? null : { ...this.#stats };
  }

  /**
   * Maps the configuration change and `queues` to MSI-X vectors, if the source has vectors.
   * Part of step 7 of §3.1.1, before the queues are enabled, after every reset. A device that
   * cannot map them leaves the driver polling (returns false, with the reason in
   * {@link InterruptSetup.info}).
   */
  assign(queues: readonly number[]): boolean {
    const irq = this.#irq;
    if (irq === null) return false;
    try {
      irq.assignVectors(queues);
      return true;
    } catch (error) {
      this.fallBack((error as Error).message);
      return false;
    }
  }

  /**
   * Calls `handlers` for every notification; when the source goes away, `handlers.ended` runs
   * after the driver has been switched to polling.
   */
  start(handlers: NotificationHandlers): void {
    const irq = this.#irq;
    if (irq === null) return;
    irq.listen({
      usedBuffer: () => handlers.usedBuffer(),
      configChange: () => handlers.configChange(),
      ended: () => {
        this.fallBack("the interrupt source was closed");
        handlers.ended?.();
      },
    });
  }

  /** Stops listening (the source stays open: the caller owns it). */
  stop(): void {
    this.#irq?.stop();
  }

  /** Gives interrupts up for polling, keeping `reason`. */
  fallBack(reason: string): void {
    this.#irq?.stop();
    this.#irq = null;
    this.#reason = reason;
  }
}
