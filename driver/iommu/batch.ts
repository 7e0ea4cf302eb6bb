/**
 * Request batches: many MAP/UNMAP requests queued, sent with one notification per ring-full,
 * and awaited once. Batching is where throughput comes from (Linux batches MAP/UNMAP between
 * syncs too). A batch is reusable and, once its arrays have grown to its size, allocates
 * nothing per request: each request is checked and recorded on the driver side when queued,
 * encoded straight into a request slot when sent, and its outcome kept as a status byte.
 *
 * @module
 */

import type { Address } from "../../util/u64.ts";
import { DeviceResetError, type IommuError, type IommuStatus, statusName } from "./errors.ts";
import type { Completion, RequestQueue } from "./request_queue.ts";
import { encodeMap, encodeUnmap } from "./requests.ts";
import { checkIndex } from "./arguments.ts";
import { SavedMappings } from "./domains.ts";
import { type MappingPlanner, PLAN_RECORD_ONLY } from "./planner.ts";
import { MAP_SIZE, STATUS_NAMES, UNMAP_SIZE, VIRTIO_IOMMU_S_OK } from "../../spec/iommu.ts";

const OP_MAP = 1;
const OP_UNMAP = 2;
/** Words per request in the field array: domain, 6 address halves, flags. */
const FIELDS = 8;
/** Status of a request not answered yet. */
const PENDING = 0xfe;
/** Status of a request that failed without a device status (used length 0, timeout, …). */
const FAILED = 0xff;

/**
 * A reusable batch of MAP and UNMAP requests for one driver.
 *
 * @example
 * ```ts
 * import { MAP_READ, MmioTransport, VirtioIommu } from "@viommu/viommu";
 * import { MmioDevice, MockIommuDevice, SimulatedMemory } from "@viommu/viommu/testing";
 *
 * const memory = new SimulatedMemory();
 * const iommu = await VirtioIommu.create(
 *   MmioTransport.create(new MmioDevice(new MockIommuDevice(), memory)),
 *   memory,
 * );
 * await iommu.attach(1, 0x08);
 * const batch = iommu.batch();
 * for (let i = 0; i < 256; i++) batch.map(1, i * 0x1000, 0x100000 + i * 0x1000, 0x1000, MAP_READ);
 * const failed = await batch.submit(); // 0
 * await iommu.close();
 * ```
 */
export class RequestBatch {
  #queue: RequestQueue;
  #planner: MappingPlanner;
  #ops = new Uint8Array(64);
  #fields = new Uint32Array(64 * FIELDS);
  #status = new Uint8Array(64);
  #savedFrom = new Int32Array(64);
  #savedTo = new Int32Array(64);
  #errors: (Error | null)[] = [];
  #saved = new SavedMappings();
  #length = 0;
  #next = 0;
  #unsettled = 0;
  #failed = 0;
  #slotToOp: Int32Array;
  #resolve: ((failed: number) => void) | null = null;
  #pumping = false;
  #pumpScheduled = false;
  /** Requests of this batch sent and not settled. */
  #out = 0;
  /** Waiting in the queue's line for a slot (when none of ours is out to bring one back). */
  #waitingForSlot = false;
  #doneBound: Completion = (error, slot) => this.#done(error, slot);
  #pumpBound = (): void => this.#pump();
  #gotSlotBound = (slot: number, error?: Error): void => this.#gotSlot(slot, error);

  /** Internal: use `VirtioIommu.batch()`, which hands over its request queue and planner. */
  constructor(queue: RequestQueue, planner: MappingPlanner) {
    this.#queue = queue;
    this.#planner = planner;
    this.#slotToOp = new Int32Array(queue.slots).fill(-1);
  }

  /** Number of requests queued. */
  get length(): number {
    return this.#length;
  }

  #grow(): void {
    const n = this.#ops.length * 2;
    const ops = new Uint8Array(n);
    ops.set(this.#ops);
    this.#ops = ops;
    const status = new Uint8Array(n);
    status.set(this.#status);
    this.#status = status;
    const from = new Int32Array(n);
    from.set(this.#savedFrom);
    this.#savedFrom = from;
    const to = new Int32Array(n);
    to.set(this.#savedTo);
    this.#savedTo = to;
    const fields = new Uint32Array(n * FIELDS);
    fields.set(this.#fields);
    this.#fields = fields;
  }

  #checkIdle(): void {
    if (this.#resolve !== null) throw new TypeError("Cannot change a batch while it is submitted");
  }

  /**
   * Queues a MAP (see `VirtioIommu.map`). Driver-side checks run now and throw an IommuError
   * with status "DRIVER"; the mapping is recorded now. Returns the request's index.
   */
  map(domain: number, iova: Address, phys: Address, size: Address, flags: number): number {
    this.#checkIdle();
    if (this.#length === this.#ops.length) this.#grow();
    const i = this.#length;
    const plan = this.#planner.prepareMap(domain, iova, phys, size, flags);
    const c = this.#planner.checks, f = this.#fields, at = i * FIELDS;
    f[at] = domain;
    f[at + 1] = c.iova.lo;
    f[at + 2] = c.iova.hi;
    f[at + 3] = c.last.lo;
    f[at + 4] = c.last.hi;
    f[at + 5] = c.phys.lo;
    f[at + 6] = c.phys.hi;
    f[at + 7] = flags;
    this.#ops[i] = OP_MAP;
    this.#status[i] = plan === PLAN_RECORD_ONLY ? VIRTIO_IOMMU_S_OK : PENDING;
    this.#length++;
    return i;
  }

  /** Queues an UNMAP (see `VirtioIommu.unmap`); checks run and records change now. */
  unmap(domain: number, iova: Address, size: Address): number {
    this.#checkIdle();
    if (this.#length === this.#ops.length) this.#grow();
    const i = this.#length;
    this.#savedFrom[i] = this.#saved.length;
    const plan = this.#planner.prepareUnmap(domain, iova, size, this.#saved);
    this.#savedTo[i] = this.#saved.length;
    const c = this.#planner.checks, f = this.#fields, at = i * FIELDS;
    f[at] = domain;
    f[at + 1] = c.iova.lo;
    f[at + 2] = c.iova.hi;
    f[at + 3] = c.last.lo;
    f[at + 4] = c.last.hi;
    this.#ops[i] = OP_UNMAP;
    this.#status[i] = plan === PLAN_RECORD_ONLY ? VIRTIO_IOMMU_S_OK : PENDING;
    this.#length++;
    return i;
  }

  /**
   * Sends every queued request (as many per notification as the ring holds) and resolves with
   * the number that failed once all have settled. Never rejects for a device refusal: read
   * {@link RequestBatch.status} / {@link RequestBatch.error} per request.
   */
  submit(): Promise<number> {
    this.#checkIdle();
    this.#next = 0;
    this.#failed = 0;
    this.#unsettled = 0;
    for (let i = 0; i < this.#length; i++) if (this.#status[i] === PENDING) this.#unsettled++;
    if (this.#unsettled === 0) return Promise.resolve(0);
    return new Promise<number>((resolve) => {
      this.#resolve = resolve;
      this.#pump();
    });
  }

  #pump(): void {
    this.#pumpScheduled = false;
    if (this.#pumping) return;
    this.#pumping = true;
    const q = this.#queue;
    try {
      while (this.#next < this.#length) {
        const i = this.#next;
        if (this.#status[i] !== PENDING) {
          this.#next++;
          continue;
        }
        let slot: number;
        try {
          slot = q.tryTakeSlot();
        } catch (error) {
          // The queue is broken: everything not yet sent fails with its error.
          this.#failRest(error instanceof Error ? error : new Error(String(error)));
          break;
        }
        if (slot < 0) {
          // Ring full: continue when our answers free slots, or, with none of ours out (the
          // slots are others', or the queue is being reset), when the line gives us one.
          if (this.#out === 0 && !this.#waitingForSlot) {
            this.#waitingForSlot = true;
            q.acquire(this.#gotSlotBound);
          }
          break;
        }
        this.#next++;
        this.#send(q, i, slot);
      }
    } finally {
      this.#pumping = false;
    }
    // One notification for everything just queued; answers are collected right away.
    q.flushNow();
  }

  /** Encodes request `i` into `slot` and sends it (published by the pump's flush). */
  #send(q: RequestQueue, i: number, slot: number): void {
    this.#slotToOp[slot] = i;
    const v = q.view(slot);
    const o = q.offset(slot);
    const f = this.#fields;
    const at = i * FIELDS;
    let readLen = UNMAP_SIZE;
    if (this.#ops[i] === OP_MAP) {
      encodeMap(
        v,
        o,
        f[at],
        f[at + 1],
        f[at + 2],
        f[at + 3],
        f[at + 4],
        f[at + 5],
        f[at + 6],
        f[at + 7],
      );
      readLen = MAP_SIZE;
    } else {
      encodeUnmap(v, o, f[at], f[at + 1], f[at + 2], f[at + 3], f[at + 4]);
    }
    this.#out++;
    // One call site: the JIT inlines each site on its own budget.
    q.sendSlot(slot, readLen, this.#doneBound);
  }

  /** A slot from the queue's line (see #pump), or -1 when the queue failed or it timed out. */
  #gotSlot(slot: number, error?: Error): void {
    this.#waitingForSlot = false;
    const q = this.#queue;
    if (slot < 0) {
      this.#failRest(error ?? q.broken ?? new DeviceResetError("The request queue failed"));
      return;
    }
    while (this.#next < this.#length && this.#status[this.#next] !== PENDING) this.#next++;
    if (this.#next >= this.#length) {
      q.release(slot);
      return;
    }
    this.#send(q, this.#next++, slot);
    this.#pump();
  }

  #failRest(error: Error): void {
    for (let i = this.#next; i < this.#length; i++) {
      if (this.#status[i] !== PENDING) continue;
      this.#settle(i, error);
    }
    this.#next = this.#length;
  }

  #done(error: Error | null, slot: number): void {
    const i = this.#slotToOp[slot];
    this.#slotToOp[slot] = -1;
    if (i < 0) return;
    this.#out--;
    this.#settle(i, error);
    if (this.#next < this.#length && !this.#pumpScheduled) {
      this.#pumpScheduled = true;
      queueMicrotask(this.#pumpBound);
    }
  }

  #settle(i: number, error: Error | null): void {
    if (error === null) this.#status[i] = VIRTIO_IOMMU_S_OK;
    else this.#refused(i, error);
    if (--this.#unsettled === 0 && this.#resolve !== null) {
      const resolve = this.#resolve;
      this.#resolve = null;
      resolve(this.#failed);
    }
  }

  /** Records request `i`'s failure and takes back what it changed in the driver's records. */
  #refused(i: number, error: Error): void {
    const code = (error as IommuError).code;
    this.#status[i] = typeof code === "number" && code >= 0 && code < PENDING ? code : FAILED;
    this.#errors[i] = error;
    this.#failed++;
    const f = this.#fields, at = i * FIELDS, domains = this.#planner.domains;
    if (this.#ops[i] === OP_MAP) {
      domains.forgetMap(f[at], f[at + 1], f[at + 2], f[at + 3], f[at + 4], f[at + 5], f[at + 6]);
    } else {
      domains.restoreMappings(f[at], this.#saved.data, this.#savedFrom[i], this.#savedTo[i]);
    }
  }

  /** The outcome of request `index`: the spec's status name, "PENDING", or "IOERR". */
  status(index: number): IommuStatus | "PENDING" {
    checkIndex(index, this.#length, "index");
    const s = this.#status[index];
    if (s === PENDING) return "PENDING";
    // A status byte the spec does not define is an IOERR failure, as requestError() says.
    if (s === FAILED || STATUS_NAMES[s] === undefined) return "IOERR";
    return statusName(s) as IommuStatus;
  }

  /** The error of request `index`, or null when it succeeded (or has not settled). */
  error(index: number): Error | null {
    checkIndex(index, this.#length, "index");
    return this.#errors[index] ?? null;
  }

  /** Empties the batch for reuse (keeps its arrays). */
  clear(): void {
    this.#checkIdle();
    this.#length = 0;
    this.#next = 0;
    this.#saved.length = 0;
    if (this.#errors.length > 0) this.#errors.length = 0;
  }
}
