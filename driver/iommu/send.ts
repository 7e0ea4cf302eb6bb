/**
 * Sending a request that may have to wait for a slot: encode it in the slot once one is free
 * (FIFO behind earlier callers), send it, and settle its promise; `undo` takes back the
 * driver's records when the device refuses. Used by ATTACH, DETACH, PROBE-free paths, replay
 * and MAP/UNMAP when every slot is busy; the one-at-a-time hot path is `fast_path.ts`.
 *
 * @module
 */

import { ATTACH_SIZE, DETACH_SIZE, MAP_SIZE, UNMAP_SIZE } from "../../spec/iommu.ts";
import type { DomainRecord } from "./domains.ts";
import { DeviceResetError } from "./errors.ts";
import type { MappingPlanner } from "./planner.ts";
import type { Completion, RequestQueue } from "./request_queue.ts";
import { encodeAttach, encodeDetach, encodeMap, encodeUnmap } from "./requests.ts";

/** Sends requests over one request queue. Internal to the driver. */
export class RequestSender {
  /**
   * Send ahead of every caller waiting behind a closed line (a queue reset's resync); set
   * only around the synchronous issuing of those requests.
   */
  urgent = false;
  #requests: RequestQueue;
  #planner: MappingPlanner;

  /** A sender over `requests`; `planner` says whether the driver is still open. */
  constructor(requests: RequestQueue, planner: MappingPlanner) {
    this.#requests = requests;
    this.#planner = planner;
  }

  /**
   * Encodes with `encode(view, offset)` in a free slot (waiting FIFO when none is free) and
   * sends. The encoder runs synchronously when a slot is free, so scratch state is safe.
   * `undo` runs before the promise rejects (to take back the driver's records).
   */
  request(
    readLen: number,
    encode: (view: DataView, offset: number) => void,
    undo?: () => void,
  ): Promise<void> {
    this.#planner.open();
    const q = this.#requests;
    if (q.broken) {
      undo?.();
      return Promise.reject(q.broken); // map()/unmap() reject, never throw
    }
    return new Promise<void>((resolve, reject) => {
      const done: Completion = (error) => {
        if (error === null) return resolve();
        undo?.();
        reject(error);
      };
      const slot = this.urgent ? -1 : q.tryTakeSlot();
      if (slot >= 0) {
        encode(q.view(slot), q.offset(slot));
        q.sendSlot(slot, readLen, done);
        return;
      }
      // Ring full (or urgent): wait our turn; encode when a slot is ours.
      const take = this.urgent ? q.acquireAhead : q.acquire;
      take.call(q, (s, error) => {
        if (s < 0) {
          // Timed out waiting for a slot, or the queue failed meanwhile.
          done(error ?? q.broken ?? new DeviceResetError("The request queue failed"), s);
          return;
        }
        encode(q.view(s), q.offset(s));
        q.sendSlot(s, readLen, done);
      });
    });
  }

  /** Sends ATTACH (§5.13.6.3) with `flags`. */
  attach(domain: number, endpoint: number, flags: number): Promise<void> {
    return this.request(
      ATTACH_SIZE,
      (v, o) => encodeAttach(v, o, domain, endpoint, flags),
      () => this.#planner.domains.uncertain?.endpoint(domain, endpoint),
    );
  }

  /** Sends DETACH (§5.13.6.4). */
  detach(domain: number, endpoint: number): Promise<void> {
    return this.request(
      DETACH_SIZE,
      (v, o) => encodeDetach(v, o, domain, endpoint),
      () => this.#planner.domains.uncertain?.endpoint(domain, endpoint),
    );
  }

  /** Sends MAP (§5.13.6.5) of `[s, e]` to `p`; `undo` runs if it fails. */
  map(
    domain: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    pLo: number,
    pHi: number,
    flags: number,
    undo?: () => void,
  ): Promise<void> {
    return this.request(
      MAP_SIZE,
      (v, o) => encodeMap(v, o, domain, sLo, sHi, eLo, eHi, pLo, pHi, flags),
      undo,
    );
  }

  /** Sends UNMAP (§5.13.6.6) of `[s, e]`; `undo` runs if it fails. */
  unmap(
    domain: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
    undo?: () => void,
  ): Promise<void> {
    return this.request(
      UNMAP_SIZE,
      (v, o) => encodeUnmap(v, o, domain, sLo, sHi, eLo, eHi),
      undo,
    );
  }

  /** Sends MAP of the mapping in slot `slot` of `record`'s records, as recorded. */
  mapRecorded(record: DomainRecord, slot: number): Promise<void> {
    const m = record.mappings;
    return this.map(
      record.id,
      m.startLo(slot),
      m.startHi(slot),
      m.endLo(slot),
      m.endHi(slot),
      m.physLo(slot),
      m.physHi(slot),
      m.flags(slot),
    );
  }

  /**
   * Re-sends every remembered mapping of a domain the device has just created; rejects with the
   * first refusal once all have settled.
   */
  async replay(record: DomainRecord): Promise<void> {
    const m = record.mappings;
    const sends: Promise<void>[] = [];
    m.forEach((s) => {
      sends.push(this.mapRecorded(record, s));
    });
    // Every MAP settles before the first refusal is thrown, so that nothing of the replay is
    // still in flight when the caller reacts to it (attach detaches the endpoint again).
    for (const r of await Promise.allSettled(sends)) if (r.status === "rejected") throw r.reason;
  }
}
