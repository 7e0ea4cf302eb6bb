/**
 * Where fault reports from the event queue (virtio 1.3 §5.13.7) wait for the application: a
 * bounded backlog for takeFaults()/nextFault(), listeners that see every report as it is
 * delivered, and an async iterator. It knows nothing of how reports are collected: the caller
 * passes the function that reads the event queue. Waiting is event-driven while the event
 * queue's interrupt delivers reports ({@link FaultInbox.eventDriven}): a waiter sleeps until
 * {@link FaultInbox.deliver} wakes it, with no timer but its own deadline; otherwise it
 * reads the event queue every millisecond.
 *
 * @module
 */

import type { FaultEvent } from "./events.ts";

/** Fault reports kept for takeFaults() before the oldest are dropped. */
export const MAX_KEPT_FAULTS = 4096;

/** Options of {@link FaultInbox.iterate}. */
export interface FaultIterateOptions {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
  /** Ends the iteration after this many ms without a report (default: never). */
  idleMs?: number;
}

/** The backlog and listeners of fault reports. */
export class FaultInbox {
  #faults: FaultEvent[] = [];
  #dropped = 0;
  #listeners = new Set<(event: FaultEvent) => void>();
  #waiters = new Set<() => void>();
  /**
   * Whether reports are delivered as they arrive (the event queue's interrupt), so waiters
   * sleep instead of polling. The driver sets it while interrupts are on.
   */
  eventDriven = false;

  /** Takes one report: kept in the backlog (bounded) and handed to every listener. */
  deliver(event: FaultEvent): void {
    // A device can post faults without end: keep the newest MAX_KEPT_FAULTS and count the
    // rest, rather than grow without bound. Listeners see every one.
    if (this.#faults.length >= MAX_KEPT_FAULTS) {
      this.#faults.shift();
      this.#dropped++;
    }
    this.#faults.push(event);
    for (const listener of this.#listeners) listener(event);
    this.wake();
  }

  /** Wakes every waiter to look again (a report arrived, the mode changed, the driver closed). */
  wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Sleeps until {@link FaultInbox.wake}, `ms` (Infinity: no timer) or `signal`'s abort. */
  #sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (!this.eventDriven) return new Promise((resolve) => setTimeout(resolve, Math.min(ms, 1)));
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#waiters.delete(done);
        resolve();
      };
      this.#waiters.add(done);
      if (ms !== Infinity) timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Reports dropped from the backlog because it was full (oldest first). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Empties the backlog and returns its reports, oldest first. */
  take(): FaultEvent[] {
    return this.#faults.splice(0);
  }

  /** Calls `listener` for every report; returns a function that unsubscribes. */
  listen(listener: (event: FaultEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The next report from the backlog; null after `timeoutMs` without one. `collect` (read the
   * event queue) runs before each look: once per wake-up when event-driven, else every
   * millisecond.
   */
  async next(timeoutMs: number, collect: () => void): Promise<FaultEvent | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      collect();
      const event = this.#faults.shift();
      if (event) return event;
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await this.#sleep(left);
    }
  }

  /**
   * The reports as an async iterator, calling `collect` before each look (every millisecond
   * while idle, unless event-driven); ends when `signal` aborts, after `idleMs` without a
   * report, or once `closed()` returns true.
   */
  async *iterate(
    options: FaultIterateOptions,
    collect: () => void,
    closed: () => boolean,
  ): AsyncGenerator<FaultEvent, void, void> {
    const { signal, idleMs = Infinity } = options;
    let idleSince = performance.now();
    while (!closed() && !signal?.aborted) {
      collect();
      const event = this.#faults.shift();
      if (event) {
        yield event;
        idleSince = performance.now();
        continue;
      }
      const left = idleMs - (performance.now() - idleSince);
      if (left <= 0) return;
      await this.#sleep(left, signal);
    }
  }
}
