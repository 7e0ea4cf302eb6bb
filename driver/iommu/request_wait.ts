/**
 * How the request queue waits for answers, the one place that decides *when* the used ring is
 * looked at. Both waits start with a short busy-poll right after a notification, with the
 * queue's used-buffer notifications suppressed (a device in another thread answers in
 * microseconds, far below a timer's millisecond). Then {@link PollingWait} polls from a timer
 * every millisecond, while {@link InterruptWait} enables the notifications, looks once more
 * (an answer that came before the enable raised no interrupt, §2.7.10) and sleeps until the
 * interrupt, with only a coarse timer for deadlines, DEVICE_NEEDS_RESET and a lost interrupt.
 * The request path is the same for both.
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
  /** Turns the queue's used-buffer notifications on or off; false: answers came meanwhile. */
  setInterrupts(enabled: boolean): boolean;
}

/** What the request queue calls on its wait, whichever it is. */
export interface RequestWait {
  /** After a notification: busy-poll a moment, then wait for the rest. */
  afterFlush(): void;
  /** Something is pending (a slot waiter, an unanswered request): make sure it is waited for. */
  start(): void;
  /** Stops waiting (the queue failed or is being destroyed). */
  stop(): void;
  /** A used-buffer notification arrived. */
  onInterrupt(): void;
}

/** Default busy-poll after a notification, in ms. */
export const DEFAULT_SPIN_MS = 2;
/** Busy-poll of each timer-driven poll, in ms. */
const SPIN_SLICE_MS = 0.2;
/** Period of the timer-driven poll, in ms. */
const POLL_PERIOD_MS = 1;
/**
 * Period of {@link InterruptWait}'s coarse timer, in ms: how late a deadline may be noticed (a
 * request's clock starts at the first tick after it was sent), and what a lost interrupt costs.
 */
export const COARSE_PERIOD_MS = 50;

/**
 * Busy-polls `t`'s used ring for up to `ms`, until nothing is in flight. A device in another
 * thread (QEMU's) answers in microseconds, far below a timer's millisecond granularity.
 */
export function spin(t: WaitTarget, ms: number): void {
  if (ms <= 0) return;
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

/** Polls a {@link WaitTarget}: busy for a moment after each flush, then from a timer. */
export class PollingWait implements RequestWait {
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
    if (t.inFlight > 0) spin(t, this.#spinMs);
    if (t.pending > 0) this.start();
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

  /** Polling takes no interrupts; one that arrives anyway is a cheap look at the ring. */
  onInterrupt(): void {
    this.#target.collect();
  }

  #poll(): void {
    this.#timer = undefined;
    const t = this.#target;
    if (t.broken) return;
    spin(t, SPIN_SLICE_MS);
    if (t.broken || t.pending === 0) return;
    if (!t.checkDevice()) return;
    t.expire(performance.now());
    if (t.pending > 0) this.#timer = setTimeout(this.#pollBound, POLL_PERIOD_MS);
  }
}

/**
 * Sleeps on the queue's used-buffer interrupt instead of a timer: notifications stay
 * suppressed while nothing is in flight and while busy-polling after a flush; they are enabled
 * only before sleeping, followed by one more look at the ring, and suppressed again once
 * nothing is in flight (virtio 1.3 §2.7.7, §2.7.10).
 */
export class InterruptWait implements RequestWait {
  #target: WaitTarget;
  #spinMs: number;
  /** Notifications are enabled and the queue sleeps on them. */
  #armed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #tickBound = (): void => this.#tick();

  /** Waits for `target`, busy-polling `spinMs` after each flush before sleeping. */
  constructor(target: WaitTarget, spinMs: number) {
    this.#target = target;
    this.#spinMs = spinMs;
  }

  /** Whether the queue sleeps on its interrupt right now (notifications enabled). */
  get armed(): boolean {
    return this.#armed;
  }

  /** After a notification: busy-polls with notifications suppressed, then sleeps on them. */
  afterFlush(): void {
    const t = this.#target;
    if (t.inFlight > 0) {
      // The busy-poll collects the answers itself; an interrupt would only wake us afterwards.
      if (this.#armed) this.#suppress();
      spin(t, this.#spinMs);
    }
    if (t.pending > 0) this.start();
  }

  /** Enables the notifications (looking at the ring once more) and starts the coarse timer. */
  start(): void {
    const t = this.#target;
    if (t.broken !== null) return;
    if (!this.#armed) this.#arm();
    if (this.#timer === undefined && t.pending > 0) {
      this.#timer = setTimeout(this.#tickBound, COARSE_PERIOD_MS);
    }
  }

  #arm(): void {
    const t = this.#target;
    // Enable, then look again: an answer that arrived before the enable raised no interrupt.
    while (!t.setInterrupts(true)) {
      t.collect();
      if (t.broken !== null || t.inFlight === 0) {
        this.#suppress();
        return;
      }
    }
    this.#armed = true;
  }

  #suppress(): void {
    this.#armed = false;
    if (this.#target.broken === null) this.#target.setInterrupts(false);
  }

  /** Stops the coarse timer and forgets the armed state (the queue failed or was reset). */
  stop(): void {
    this.#armed = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A used-buffer interrupt: collects; once nothing is in flight, suppresses again. */
  onInterrupt(): void {
    const t = this.#target;
    t.collect();
    if (t.broken !== null) {
      this.stop();
      return;
    }
    // Still in flight: stay armed (with EVENT_IDX, used_event follows every pop).
    if (this.#armed && t.inFlight === 0) this.#suppress();
    if (t.pending === 0) this.stop();
  }

  /** The coarse tick: a lost interrupt, DEVICE_NEEDS_RESET, deadlines. */
  #tick(): void {
    this.#timer = undefined;
    const t = this.#target;
    if (t.broken !== null) return;
    t.collect();
    if (t.broken !== null) return;
    if (t.pending > 0 && t.checkDevice()) t.expire(performance.now());
    if (t.broken !== null) return;
    if (t.inFlight === 0 && this.#armed) this.#suppress();
    if (t.pending > 0) this.start();
  }
}
