/**
 * "Required work": the hand-written limit plus what any driver that keeps its promises must add
 * per request, and nothing else: a record of each mapping (insert on MAP, remove on UNMAP, in
 * the same interval map the driver uses), one `await` per request one at a time (one per submit
 * batched: the caller awaits what it returns, as it would the driver's promises), and the
 * seq-cst ring accesses virtio 1.3 §2.7.13 asks for that the limit leaves out (a store of
 * avail.idx and a load of the device's suppression field after it). Timed beside the limit and
 * the driver, it shows how close to the limit any such driver can come.
 *
 * @module
 */

import { IntervalMap } from "../util/interval_map.ts";
import type { Limit } from "./_limits.ts";

const PAGE = 0x1000;
const RESOLVED: Promise<void> = Promise.resolve();

/** The limit with the required work added (see the module's doc). */
export class RequiredWork {
  #limit: Limit;
  #iovaBase: number;
  #map = new IntervalMap();
  /** Stands in for avail.idx and the suppression word (same kind of array as the rings'). */
  #words = new Uint16Array(new ArrayBuffer(64));

  /** Adds the required work to `limit`, whose requests map pages from `iovaBase`. */
  constructor(limit: Limit, iovaBase = 0x100000) {
    this.#limit = limit;
    this.#iovaBase = iovaBase;
  }

  /** The seq-cst accesses of one notification (§2.7.13 step 3, then §2.7.10's check). */
  #ringAccesses(): number {
    Atomics.store(this.#words, 1, (this.#words[1] + 1) & 0xffff);
    return Atomics.load(this.#words, 2);
  }

  /**
   * One MAP+UNMAP pair of page `i`, each request recorded and barriered. Returns the settled
   * promise a driver hands back for a request answered during its notification: the caller
   * awaits it once per request, twice per pair, as it would the driver's two promises.
   */
  pairOneAtATime(i: number): Promise<void> {
    const lo = this.#iovaBase + i * PAGE;
    if (this.#map.insert(lo, 0, lo + PAGE - 1, 0, PAGE, 0, 3) < 0) throw new Error("overlap");
    this.#ringAccesses();
    this.#ringAccesses();
    this.#limit.pairOneAtATime(i);
    if (this.#map.removeRange(lo, 0, lo + PAGE - 1, 0) !== 1) throw new Error("not recorded");
    return RESOLVED;
  }

  /**
   * `n` requests as the limit's batch sends them (n/2 MAPs of pages 0…, then n/2 UNMAPs),
   * each recorded; returns the promise the caller awaits once per batch.
   */
  batch(n: number): Promise<void> {
    const half = n >> 1;
    const base = this.#iovaBase;
    for (let r = 0; r < half; r++) {
      const lo = base + r * PAGE;
      if (this.#map.insert(lo, 0, lo + PAGE - 1, 0, PAGE, 0, 3) < 0) throw new Error("overlap");
    }
    for (let r = 0; r < half; r++) {
      const lo = base + r * PAGE;
      if (this.#map.removeRange(lo, 0, lo + PAGE - 1, 0) !== 1) throw new Error("not recorded");
    }
    this.#ringAccesses();
    this.#limit.batch(n);
    return RESOLVED;
  }

  /** Closes the limit (resets its device). */
  close(): Promise<void> {
    return this.#limit.close();
  }
}
