/**
 * How the request queue waits for answers: a short busy-poll right after a notification (a
 * device in another thread answers in microseconds, far below a timer's millisecond), then a
 * timer-driven poll every millisecond that also runs the deadlines and watches for
 * DEVICE_NEEDS_RESET. This is the one place that decides *when* the used ring is looked at; an
 * interrupt-driven wait replaces the timer here without touching the request path.
 *
 * @module
 */

/** What the waiting part needs from the queue it waits for. */
export interface WaitTarget {
  /** Collects every answer in the used ring; returns how many settled. */
  collect(): number;
  /** Requests sent and not yet settled. */
  readonly inFlight: number;
  /** Requests sent plus those waiting for a slot: nothing to wait for when 0. */
  readonly pending: number;
  /** The error that broke the queue, or null. */
  readonly broken: Error | null;
  /** Times out requests and slot waiters whose deadline is before `now` (performance.now()). */
  expire(now: number): void;
  /** Fails the queue when the device asks to be reset; returns whether it is still usable. */
  checkDevice(): boolean;
}

/** Default busy-poll after a notification, in ms. */
export const DEFAULT_SPIN_MS = 2;
/** Busy-poll of each timer-driven poll, in ms. */
const SPIN_SLICE_MS = 0.2;
/** Period of the timer-driven poll, in ms. */
const POLL_PERIOD_MS = 1;

/** Polls a {@link WaitTarget}: busy for a moment after each flush, then from a timer. */
export class PollingWait {
  #target: WaitTarget;
  #spinMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pollBound = (): void => this.#poll();

  /** Waits for `target`, busy-polling `spinMs` after each flush (0: timers only). */
  constructor(target: WaitTarget, spinMs: number) {
    this.#target = target;
    this.#spinMs = spinMs;
  }

  /** After a notification: busy-polls for a moment, then leaves the rest to the timer. */
  afterFlush(): void {
    const t = this.#target;
    if (t.inFlight > 0) this.spin(this.#spinMs);
    if (t.pending > 0) this.start();
  }

  /**
   * Busy-polls the used ring for up to `ms`, until nothing is in flight. A device in another
   * thread (QEMU's) answers in microseconds, far below a timer's millisecond granularity.
   */
  spin(ms: number): void {
    if (ms <= 0) return;
    const t = this.#target;
    let until = 0;
    for (let i = 1; t.inFlight > 0 && t.broken === null; i++) {
      t.collect();
      // Reading the clock costs more than reading used.idx (microseconds in a TCG guest), and
      // most answers arrive within a few rounds: look at it only every 32 rounds.
      if ((i & 31) === 0) {
        const now = performance.now();
        if (until === 0) until = now + ms;
        else if (now >= until) return;
      }
    }
  }

  /** Starts the timer-driven poll unless it runs already. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(this.#pollBound, 0);
  }

  /** Stops the timer-driven poll. */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #poll(): void {
    this.#timer = undefined;
    const t = this.#target;
    if (t.broken) return;
    this.spin(SPIN_SLICE_MS);
    if (t.broken || t.pending === 0) return;
    if (!t.checkDevice()) return;
    t.expire(performance.now());
    if (t.pending > 0) this.#timer = setTimeout(this.#pollBound, POLL_PERIOD_MS);
  }
}
