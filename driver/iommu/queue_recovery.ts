/**
 * Recovering one queue without resetting the device (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1),
 * so the device keeps its domains and mappings:
 *
 * - the event queue: reset, re-enabled, every buffer posted again (a device that broke the
 *   event ring, or wedged it, loses nothing the driver holds: faults are only reports);
 * - the request queue: new requests wait in line while it is down; requests in flight reject
 *   with a typed error (the device may or may not have executed them); then, before anyone
 *   else, the driver puts the device back in step with its records for whatever those
 *   requests touched (UNMAP of each uncertain range and MAP of the records inside it; an
 *   uncertain ATTACH/DETACH re-attaches per the records and rebuilds that domain), and only
 *   then lets the waiting requests go.
 *
 * @module
 */

import { resetVirtqueue } from "../virtio/queue_reset.ts";
import { VirtqueueError } from "../virtio/virtqueue.ts";
import type { IommuConfig } from "./config.ts";
import type { Transport } from "../../transport/transport.ts";
import type { DomainTable } from "./domains.ts";
import type { EventQueue } from "./event_queue.ts";
import type { RequestQueue } from "./request_queue.ts";
import type { RequestSender } from "./send.ts";
import { EVENT_QUEUE, REQUEST_QUEUE, VIRTIO_IOMMU_ATTACH_F_BYPASS } from "../../spec/iommu.ts";
import { rangesOverlap } from "../../util/u64.ts";
import { UncertainLog } from "./uncertain.ts";

/** Queue resets in a row, without a request answered in between, before the driver gives up. */
export const MAX_QUEUE_RESETS_IN_A_ROW = 3;

/** What {@link QueueRecovery} works with, owned by the driver. */
export interface RecoveryParts {
  /** The transport (queue reset registers). */
  transport: Transport;
  /** The request queue. */
  requests: RequestQueue;
  /** The event queue. */
  events: EventQueue;
  /** The driver's records. */
  domains: DomainTable;
  /** Sends requests (with {@link RequestSender.urgent} for the resync). */
  sender: RequestSender;
  /** The device's config now (its input range bounds an UNMAP of a whole domain). */
  config: () => IommuConfig;
  /** How long a queue reset may take, in ms. */
  timeoutMs: number;
}

/** Resets one queue of a running device and puts things back in step. Internal to the driver. */
export class QueueRecovery {
  /** Request-queue resets since creation. */
  requestResets = 0;
  /** Event-queue resets since creation. */
  eventResets = 0;
  #parts: RecoveryParts;
  #requestRun: Promise<void> | null = null;
  #eventRun: Promise<void> | null = null;
  #inARow = 0;
  /** {@link RequestQueue.answered} at the last request-queue reset. */
  #answeredAtReset = -1;
  /** Bumped by a device reset or close: a recovery under way stops at its next step. */
  #epoch = 0;

  /** Recovery over the driver's `parts`. */
  constructor(parts: RecoveryParts) {
    this.#parts = parts;
  }

  /** Whether a request-queue reset is under way. */
  get busy(): boolean {
    return this.#requestRun !== null || this.#eventRun !== null;
  }

  /** A device reset or close supersedes any recovery under way. */
  cancel(): void {
    this.#epoch++;
  }

  /**
   * Resets the request queue: requests in flight reject with `error`, later ones wait, the
   * device is put back in step with the records, then the waiting requests go. Resolves when
   * the queue works again; rejects (leaving the queue failed) when the reset does not complete.
   */
  resetRequests(error: Error): Promise<void> {
    if (this.#requestRun !== null) return this.#requestRun;
    const { requests, domains } = this.#parts;
    const log = new UncertainLog();
    // Synchronously: nothing can be sent between the failures and the closing of the line.
    domains.uncertain = log;
    try {
      requests.beforeQueueReset(error);
    } finally {
      domains.uncertain = null;
    }
    this.requestResets++;
    // Resets in a row: nothing answered since the last one.
    this.#inARow = requests.answered === this.#answeredAtReset ? this.#inARow + 1 : 1;
    this.#answeredAtReset = requests.answered;
    const run = this.#resetRequests(log, this.#epoch).finally(() => {
      this.#requestRun = null;
    });
    this.#requestRun = run;
    return run;
  }

  /**
   * The request ring broke (a {@link VirtqueueError}): resets the queue unless that already
   * happened {@link MAX_QUEUE_RESETS_IN_A_ROW} times with nothing answered in between. Returns
   * whether it took over (otherwise the queue fails, as without VIRTIO_F_RING_RESET).
   */
  requestRingBroken(error: Error): boolean {
    if (this.#requestRun !== null) return false;
    const stuck = this.#parts.requests.answered === this.#answeredAtReset;
    if (stuck && this.#inARow >= MAX_QUEUE_RESETS_IN_A_ROW) return false;
    this.resetRequests(error).catch(() => {});
    return true;
  }

  async #resetRequests(log: UncertainLog, epoch: number): Promise<void> {
    const { transport, requests } = this.#parts;
    try {
      await resetVirtqueue(transport, REQUEST_QUEUE, this.#parts.timeoutMs);
    } catch (error) {
      if (epoch === this.#epoch) requests.fail(error as Error);
      throw error;
    }
    if (epoch !== this.#epoch) return;
    requests.afterQueueReset();
    await Promise.allSettled(this.#resync(log));
    if (epoch === this.#epoch) requests.reopen();
  }

  /** Sends, ahead of everyone, what brings the device back in step with the records. */
  #resync(log: UncertainLog): Promise<void>[] {
    const { domains, sender } = this.#parts;
    const sends: Promise<void>[] = [];
    const rebuild = new Set<number>();
    sender.urgent = true;
    try {
      const e = log.endpoints;
      for (let i = 0; i < e.length; i += 2) {
        const endpoint = e[i + 1];
        const home = domains.domainOf(endpoint);
        if (home === undefined) {
          // The records have it nowhere: undo an ATTACH that may have run (NOENT is fine).
          sends.push(sender.detach(e[i], endpoint));
          continue;
        }
        // Where the records have it. A device may take a repeated ATTACH as detach + attach
        // (QEMU 7.2), which can destroy the domain: rebuild the domain afterwards.
        const record = domains.get(home)!;
        sends.push(
          sender.attach(home, endpoint, record.bypass ? VIRTIO_IOMMU_ATTACH_F_BYPASS : 0),
        );
        if (!record.bypass) rebuild.add(home);
      }
      const r = log.ranges;
      for (let i = 0; i < r.length; i += 5) {
        const domain = r[i];
        if (rebuild.has(domain)) continue;
        const record = domains.get(domain);
        if (record === undefined || record.endpoints.size === 0 || record.bypass) continue;
        sends.push(sender.unmap(domain, r[i + 1], r[i + 2], r[i + 3], r[i + 4]));
        const m = record.mappings;
        m.forEach((s) => {
          if (
            rangesOverlap(
              m.startLo(s),
              m.startHi(s),
              m.endLo(s),
              m.endHi(s),
              r[i + 1],
              r[i + 2],
              r[i + 3],
              r[i + 4],
            )
          ) {
            sends.push(sender.mapRecorded(record, s));
          }
        });
      }
      const c = this.#parts.config();
      const sLo = Number(c.inputStart & 0xffff_ffffn), sHi = Number(c.inputStart >> 32n);
      const eLo = Number(c.inputEnd & 0xffff_ffffn), eHi = Number(c.inputEnd >> 32n);
      for (const domain of rebuild) {
        const record = domains.get(domain);
        if (record === undefined || record.endpoints.size === 0) continue;
        sends.push(sender.unmap(domain, sLo, sHi, eLo, eHi));
        sends.push(sender.replay(record));
      }
    } finally {
      sender.urgent = false;
    }
    return sends;
  }

  /**
   * The event ring broke (`error`, from the event queue's collect): resets the queue when it is
   * a {@link VirtqueueError}. Returns whether it took over (otherwise the caller rethrows).
   */
  eventRingBroken(error: unknown): boolean {
    if (!(error instanceof VirtqueueError)) return false;
    this.resetEvents().catch(() => {});
    return true;
  }

  /**
   * Resets the event queue and posts every buffer again. Reports the device had not returned
   * yet are lost (the device drops faults it has no buffer for, §5.13.7); nothing else is.
   */
  resetEvents(): Promise<void> {
    if (this.#eventRun !== null) return this.#eventRun;
    this.eventResets++;
    const run = this.#resetEvents(this.#epoch).finally(() => {
      this.#eventRun = null;
    });
    this.#eventRun = run;
    return run;
  }

  async #resetEvents(epoch: number): Promise<void> {
    const { transport, events } = this.#parts;
    await resetVirtqueue(transport, EVENT_QUEUE, this.#parts.timeoutMs);
    if (epoch !== this.#epoch) return;
    events.restart();
    events.enable();
    events.kick();
  }
}
