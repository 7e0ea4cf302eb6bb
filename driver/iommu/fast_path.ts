/**
 * The one-at-a-time MAP/UNMAP path of {@link VirtioIommu}: with a slot free, a request is
 * checked and recorded by the planner, encoded straight into its slot, and settles through
 * per-slot state: one promise per request and no closure of ours, which matters most where JIT
 * code is slow (a TCG guest). A request the device refuses takes back what it recorded, from
 * the driver's own copy of the fields (the slot is shared memory the device could change).
 *
 * @module
 */

import type { Address } from "../../util/u64.ts";
import { MAP_SIZE, UNMAP_SIZE } from "../../spec/iommu.ts";
import { SavedMappings } from "./domains.ts";
import { type MappingPlanner, PLAN_RECORD_ONLY, PLAN_SEND } from "./planner.ts";
import type { Completion, RequestQueue } from "./request_queue.ts";
import { encodeMap, encodeUnmap } from "./requests.ts";

/** A failed fast-path request has nothing to take back. */
const UNDO_NONE = 0;
/** A failed MAP takes its record back. */
const UNDO_MAP = 1;
/** A failed UNMAP puts back the records it removed. */
const UNDO_UNMAP = 2;
/** Undo fields per slot: domain, first (lo, hi), last (lo, hi), phys (lo, hi). */
const UNDO_FIELDS = 7;
/** The promise of every fast-path request that settled before its call returned. */
const RESOLVED: Promise<void> = Promise.resolve();

/** MAP and UNMAP sent one at a time, each in its own request slot. Internal to the driver. */
export class FastRequests {
  #requests: RequestQueue;
  #planner: MappingPlanner;
  #resolveOf: ((() => void) | null)[];
  #rejectOf: (((error: Error) => void) | null)[];
  /** The slot being sent right now (-1: none), and its outcome if it settled meanwhile. */
  #syncSlot = -1;
  #syncDone = false;
  #syncError: Error | null = null;
  #undoOf: Uint8Array;
  #undoFields: Uint32Array;
  #savedOf: SavedMappings[];

  /** The fast path over `requests`, checking and recording with `planner`. */
  constructor(requests: RequestQueue, planner: MappingPlanner) {
    this.#requests = requests;
    this.#planner = planner;
    const slots = requests.slots;
    this.#resolveOf = new Array(slots).fill(null);
    this.#rejectOf = new Array(slots).fill(null);
    this.#undoOf = new Uint8Array(slots);
    this.#undoFields = new Uint32Array(slots * UNDO_FIELDS);
    this.#savedOf = Array.from({ length: slots }, () => new SavedMappings());
  }

  /** A free request slot, or -1 (queue broken, full, or callers waiting). */
  slot(): number {
    const q = this.#requests;
    return q.broken ? -1 : q.tryTakeSlot();
  }

  /** Checks, records, encodes and sends a MAP in `slot` (taken with {@link FastRequests.slot}). */
  map(
    slot: number,
    domain: number,
    iova: Address,
    phys: Address,
    size: Address,
    flags: number,
  ): Promise<void> {
    const q = this.#requests;
    let plan: number;
    try {
      plan = this.#planner.prepareMap(domain, iova, phys, size, flags);
    } catch (error) {
      q.release(slot);
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) {
      q.release(slot);
      return Promise.resolve();
    }
    const v = q.view(slot),
      o = q.offset(slot),
      a = this.#planner.checks.iova,
      b = this.#planner.checks.last,
      c = this.#planner.checks.phys;
    encodeMap(v, o, domain, a.lo, a.hi, b.lo, b.hi, c.lo, c.hi, flags);
    this.#undoOf[slot] = plan === PLAN_SEND ? UNDO_MAP : UNDO_NONE;
    const f = this.#undoFields, at = slot * UNDO_FIELDS;
    f[at] = domain;
    f[at + 1] = a.lo;
    f[at + 2] = a.hi;
    f[at + 3] = b.lo;
    f[at + 4] = b.hi;
    f[at + 5] = c.lo;
    f[at + 6] = c.hi;
    return this.#sendFast(slot, MAP_SIZE);
  }

  /** Checks, records, encodes and sends an UNMAP in `slot` (taken with {@link FastRequests.slot}). */
  unmap(slot: number, domain: number, iova: Address, size: Address): Promise<void> {
    const q = this.#requests;
    const saved = this.#savedOf[slot];
    saved.length = 0;
    let plan: number;
    try {
      plan = this.#planner.prepareUnmap(domain, iova, size, saved);
    } catch (error) {
      q.release(slot);
      return Promise.reject(error);
    }
    if (plan === PLAN_RECORD_ONLY) {
      q.release(slot);
      return Promise.resolve();
    }
    const v = q.view(slot),
      o = q.offset(slot),
      a = this.#planner.checks.iova,
      b = this.#planner.checks.last;
    encodeUnmap(v, o, domain, a.lo, a.hi, b.lo, b.hi);
    this.#undoOf[slot] = plan === PLAN_SEND ? UNDO_UNMAP : UNDO_NONE;
    this.#undoFields[slot * UNDO_FIELDS] = domain;
    return this.#sendFast(slot, UNMAP_SIZE);
  }

  /**
   * Sends a fast-path request. A device that answers during the notification (QEMU under TCG,
   * the mock) has settled it before the send returns: then the outcome is known and no
   * deferred promise is needed, which saves most of the cost of a promise per request. Alone
   * in the ring, the queue settles it inline ({@link RequestQueue.sendAlone}) and no completion
   * runs; otherwise #completeFast may run before the send returns (#syncSlot says it did).
   */
  #sendFast(slot: number, readLen: number): Promise<void> {
    this.#syncSlot = slot;
    this.#syncDone = false;
    let inline: Error | null | undefined;
    try {
      inline = this.#requests.sendAlone(slot, readLen, this.#completeFast);
    } finally {
      this.#syncSlot = -1;
    }
    if (inline === null) return RESOLVED;
    if (inline !== undefined) {
      this.#undoFast(slot);
      return Promise.reject(inline);
    }
    if (this.#syncDone) {
      const error = this.#syncError;
      this.#syncError = null;
      return error === null ? RESOLVED : Promise.reject(error);
    }
    return this.#deferred(slot);
  }

  /**
   * The promise of a request still in flight, settled by {@link FastRequests.#completeFast}.
   * Its own method on purpose: a function that creates a closure capturing its variables
   * (here `this` and `slot`) allocates their context on every call, closure or not, which in
   * #sendFast was 24 bytes of garbage per request.
   */
  #deferred(slot: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#resolveOf[slot] = resolve;
      this.#rejectOf[slot] = reject;
    });
  }

  /** Settles a fast-path request; on failure first takes back what it recorded. */
  #completeFast: Completion = (error, slot) => {
    if (slot === this.#syncSlot) {
      // Answered inside #sendFast: it returns the outcome itself.
      this.#syncDone = true;
      this.#syncError = error;
      if (error !== null) this.#undoFast(slot);
      return;
    }
    const resolve = this.#resolveOf[slot];
    const reject = this.#rejectOf[slot];
    this.#resolveOf[slot] = null;
    this.#rejectOf[slot] = null;
    if (error === null) {
      resolve?.();
      return;
    }
    this.#undoFast(slot);
    reject?.(error);
  };

  /** Takes back what a failed fast-path request recorded. */
  #undoFast(slot: number): void {
    const undo = this.#undoOf[slot];
    if (undo === UNDO_MAP) {
      // From the driver's own copy: the slot is shared memory the device could have changed.
      const f = this.#undoFields, at = slot * UNDO_FIELDS;
      this.#planner.domains.forgetMap(
        f[at],
        f[at + 1],
        f[at + 2],
        f[at + 3],
        f[at + 4],
        f[at + 5],
        f[at + 6],
      );
    } else if (undo === UNDO_UNMAP) {
      const saved = this.#savedOf[slot];
      this.#planner.domains.restoreMappings(
        this.#undoFields[slot * UNDO_FIELDS],
        saved.data,
        0,
        saved.length,
      );
    }
  }
}
