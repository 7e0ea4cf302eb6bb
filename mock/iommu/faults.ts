/**
 * A fault-injecting mode of the mock: {@link FaultyDevice} wraps any {@link DeviceModel}
 * (normally the mock virtio-iommu) and, following a seeded {@link FaultPlan}, answers requests
 * the way a hostile or broken device would: used ids never submitted or already completed, used
 * lengths beyond the writable part (virtio 1.3 §2.7.8.1), a used ring state the driver cannot
 * accept (used.idx jumping by more than the queue size, §2.7; wrong wrap counter bits,
 * §2.8.1), requests never answered, DEVICE_NEEDS_RESET in the middle of a batch (§2.1.2), a
 * config generation that never settles (§2.5.1), PROBE properties whose lengths overrun or
 * loop (§5.13.6.7), fault records with reserved bits set (§5.13.5), used length 0 and unknown
 * statuses. Every fault injected is counted by kind. Ring-level lies go through the device
 * queue's `forgeUsed()` and `pushBroken()`, so they fit either ring layout.
 *
 * The plan's seed drives {@link FaultRandom}, the project's one hand-written generator, kept
 * on purpose: which requests a faulty device picks is device behaviour that users of
 * `testing.ts` script and replay, and the library ships no third-party code (fast-check, which
 * drives every test and fuzz loop, is a test-only dependency).
 *
 * @module
 */

import {
  EVENT_QUEUE,
  FAULT_SIZE,
  HEAD_TYPE,
  REQUEST_QUEUE,
  TAIL_SIZE,
  VIRTIO_IOMMU_T_PROBE,
} from "../../spec/iommu.ts";
import type { Chain, DeviceContext, DeviceModel } from "../device.ts";
import { ForwardingDevice } from "../forwarding.ts";
import { gatherReadable, scatterWritable } from "../chain.ts";

/** One way the device can misbehave. */
export type FaultKind =
  /** Put an id that was never submitted (≥ the queue size) in the used ring; never answer. */
  | "unknownId"
  /** Answer, then put the same id in the used ring a second time (already completed). */
  | "duplicateId"
  /** Answer with a used length beyond the writable part of the chain. */
  | "longLength"
  /**
   * Answer with a ring state the driver cannot accept: split, used.idx moves ahead by more
   * than the queue size; packed, AVAIL/USED bits of the wrong wrap counter.
   */
  | "idxJump"
  /** Never answer this request (until the device is reset). */
  | "silent"
  /** Set DEVICE_NEEDS_RESET and answer nothing more, in the middle of a batch. */
  | "needsReset"
  /** Every config read changes the config generation, so it never settles. */
  | "unstableConfig"
  /** PROBE: a property whose length runs past probe_size. */
  | "probeOverrun"
  /** PROBE: probe_size filled with zero-length unknown properties (a walk that never ends early). */
  | "probeLoop"
  /** Answer, and post a fault record with reserved bits set on the event queue. */
  | "faultReserved"
  /** Return the request unwritten: used length 0. */
  | "zeroLength"
  /** Answer with a status byte the spec does not define, without executing the request. */
  | "badStatus";

/** Every {@link FaultKind}, in declaration order. */
export const FAULT_KINDS: readonly FaultKind[] = [
  "unknownId",
  "duplicateId",
  "longLength",
  "idxJump",
  "silent",
  "needsReset",
  "unstableConfig",
  "probeOverrun",
  "probeLoop",
  "faultReserved",
  "zeroLength",
  "badStatus",
];

/** Which faults to inject, how often, from which request on; all seeded. */
export interface FaultPlan {
  /** Kinds to choose from (uniformly, among those that apply to the request). */
  kinds: readonly FaultKind[];
  /** Probability that a request gets a fault, 0..1 (default 1). */
  rate?: number;
  /** Seed of the generator that picks requests, kinds and bad values (default 1). */
  seed?: number;
  /** Requests answered normally before any fault (default 0). */
  after?: number;
  /** Most request faults to inject (default unlimited). */
  limit?: number;
}

/** Kinds that apply to a request (the rest act on config reads). */
const REQUEST_KINDS: ReadonlySet<FaultKind> = new Set<FaultKind>(
  FAULT_KINDS.filter((k) => k !== "unstableConfig"),
);
/** Kinds that apply only to PROBE requests. */
const PROBE_KINDS: ReadonlySet<FaultKind> = new Set<FaultKind>(["probeOverrun", "probeLoop"]);

/** The fault plan's seeded generator (mulberry32): uniform in [0, 1); see the module header. */
export class FaultRandom {
  #state: number;

  /** Creates the generator from a 32-bit seed. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next value in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/**
 * A {@link DeviceModel} around another model that injects the faults of its {@link FaultPlan}
 * on the request queue, the event queue and config reads. With an empty plan it is transparent.
 *
 * @example
 * ```ts
 * import { FaultyDevice, MockIommuDevice } from "@viommu/viommu/testing";
 * const device = new FaultyDevice(new MockIommuDevice(), { kinds: ["silent"], rate: 0.1, seed: 7 });
 * console.assert(device.injected.silent === 0); // nothing until requests arrive
 * ```
 */
export class FaultyDevice extends ForwardingDevice {
  /** Faults injected so far, by kind. */
  readonly injected: Record<FaultKind, number>;
  /** Requests seen on the request queue since creation. */
  requests = 0;
  /** Heads held back (never answered) since the last reset. */
  readonly held: number[] = [];
  #plan: FaultPlan;
  #random: FaultRandom;
  #requestFaults = 0;
  /** DEVICE_NEEDS_RESET was set: answer nothing until reset. */
  #dead = false;
  #scratch = new Uint8Array(64);

  /** Wraps `inner`, injecting faults as `plan` says (default: none). */
  constructor(inner: DeviceModel, plan: FaultPlan = { kinds: [] }) {
    super(inner);
    this.#plan = plan;
    this.#random = new FaultRandom(plan.seed ?? 1);
    this.injected = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
      FaultKind,
      number
    >;
  }

  /** The current plan. */
  get plan(): FaultPlan {
    return this.#plan;
  }

  /** Replaces the plan (and restarts its generator from the plan's seed); counters are kept. */
  set plan(plan: FaultPlan) {
    this.#plan = plan;
    this.#random = new FaultRandom(plan.seed ?? 1);
    this.#requestFaults = 0;
  }

  /** Total faults injected, every kind. */
  get total(): number {
    let n = 0;
    for (const k of FAULT_KINDS) n += this.injected[k];
    return n;
  }

  /** Reads config; with `unstableConfig`, every read also moves the config generation. */
  override readConfig(offset: number, width: number): number {
    if (this.#plan.kinds.includes("unstableConfig") && this.context !== null) {
      this.injected.unstableConfig++;
      this.context.configChanged();
    }
    return this.inner.readConfig(offset, width);
  }

  /** Device reset: forgets held requests and the NEEDS_RESET state, resets the inner model. */
  override reset(): void {
    this.held.length = 0;
    this.#dead = false;
    this.inner.reset();
  }

  /** A reset of the request queue forgets the requests held on it (§2.6.1: never answered). */
  override resetQueue(index: number): void {
    if (index === REQUEST_QUEUE) this.held.length = 0;
    super.resetQueue(index);
  }

  /** The request queue goes through the plan; other queues go straight to the inner model. */
  override notify(index: number): void {
    const ctx = this.context;
    if (index !== REQUEST_QUEUE || ctx === null) {
      this.inner.notify(index);
      return;
    }
    const queue = ctx.queue(REQUEST_QUEUE);
    if (queue === null) return;
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      this.#one(ctx, chain);
    }
    ctx.interrupt(REQUEST_QUEUE);
  }

  /**
   * Posts a fault record with reserved bits set on the event queue (§5.13.5: the driver must
   * ignore it). Returns false when the driver has no event buffer posted.
   */
  postReservedFault(): boolean {
    const ctx = this.context;
    const queue = ctx?.queue(EVENT_QUEUE);
    if (!ctx || !queue) return false;
    const chain = queue.pop();
    if (chain === null) return false;
    const record = new Uint8Array(FAULT_SIZE);
    const view = new DataView(record.buffer);
    const r = this.#random;
    view.setUint8(0, r.below(4));
    // reserved[3] after the reason byte: at least one bit set.
    view.setUint8(1 + r.below(3), 1 + r.below(255));
    view.setUint32(4, r.below(8), true);
    view.setUint32(8, r.below(0x1_0000), true);
    view.setUint32(16, r.below(0x1_0000) << 12, true);
    scatterWritable(ctx.memory, chain, 0, record, FAULT_SIZE);
    queue.push(chain.head, Math.min(FAULT_SIZE, chain.writableLength));
    ctx.interrupt(EVENT_QUEUE);
    this.injected.faultReserved++;
    return true;
  }

  #choose(type: number): FaultKind | null {
    const plan = this.#plan;
    this.requests++;
    if (this.requests <= (plan.after ?? 0)) return null;
    if (this.#requestFaults >= (plan.limit ?? Infinity)) return null;
    const candidates = plan.kinds.filter((k) =>
      REQUEST_KINDS.has(k) && (!PROBE_KINDS.has(k) || type === VIRTIO_IOMMU_T_PROBE)
    );
    if (candidates.length === 0) return null;
    if (this.#random.next() >= (plan.rate ?? 1)) return null;
    return candidates[this.#random.below(candidates.length)];
  }

  #one(ctx: DeviceContext, chain: Chain): void {
    const queue = ctx.queue(REQUEST_QUEUE)!;
    if (this.#dead) {
      this.held.push(chain.head);
      return;
    }
    gatherReadable(ctx.memory, chain, this.#scratch, this.#scratch.length);
    const kind = this.#choose(this.#scratch[HEAD_TYPE]);
    if (kind === null) {
      queue.push(chain.head, this.#innerHandle(chain));
      return;
    }
    this.#requestFaults++;
    if (kind !== "faultReserved") this.injected[kind]++;
    const r = this.#random;
    switch (kind) {
      case "unknownId":
        this.held.push(chain.head);
        // Ids at or past the queue size were never submitted (16-bit: a packed id field).
        queue.forgeUsed(queue.size + r.below(0x1_0000 - queue.size), TAIL_SIZE);
        return;
      case "duplicateId":
        queue.push(chain.head, this.#innerHandle(chain));
        queue.forgeUsed(chain.head, TAIL_SIZE);
        return;
      case "longLength":
        queue.push(chain.head, chain.writableLength + 1 + r.below(4096));
        return;
      case "idxJump":
        queue.pushBroken(chain.head, this.#innerHandle(chain));
        return;
      case "silent":
        this.held.push(chain.head);
        return;
      case "needsReset":
        this.held.push(chain.head);
        this.#dead = true;
        ctx.needsReset("fault plan: DEVICE_NEEDS_RESET in the middle of a batch");
        return;
      case "probeOverrun":
      case "probeLoop":
        this.#badProbe(ctx, chain, kind);
        queue.push(chain.head, chain.writableLength);
        return;
      case "faultReserved":
        queue.push(chain.head, this.#innerHandle(chain));
        this.postReservedFault();
        return;
      case "zeroLength":
        queue.push(chain.head, 0);
        return;
      case "badStatus":
        this.#writeStatus(ctx, chain, 9 + r.below(247));
        queue.push(chain.head, chain.writableLength);
        return;
      case "unstableConfig":
        return; // Not a request fault (filtered out by #choose).
    }
  }

  #innerHandle(chain: Chain): number {
    const handle = (this.inner as { handle?: (chain: Chain) => number }).handle;
    if (typeof handle !== "function") {
      throw new TypeError("FaultyDevice needs an inner model with handle(chain)");
    }
    return handle.call(this.inner, chain);
  }

  #writeStatus(ctx: DeviceContext, chain: Chain, status: number): void {
    const tail = new Uint8Array(TAIL_SIZE);
    tail[0] = status;
    scatterWritable(ctx.memory, chain, chain.writableLength - TAIL_SIZE, tail, TAIL_SIZE);
  }

  /** Writes PROBE properties that overrun probe_size or are all zero-length, then status OK. */
  #badProbe(ctx: DeviceContext, chain: Chain, kind: "probeOverrun" | "probeLoop"): void {
    const area = Math.max(0, chain.writableLength - TAIL_SIZE);
    const bytes = new Uint8Array(area);
    const view = new DataView(bytes.buffer);
    const r = this.#random;
    if (kind === "probeLoop") {
      // Zero-length properties of an unknown type, back to back up to the very end.
      for (let at = 0; at + 4 <= area; at += 4) view.setUint16(at, 2 + r.below(0xffe), true);
    } else {
      // One valid RESV_MEM, then a header whose length runs past the end of the area.
      let at = 0;
      if (area >= 28) {
        view.setUint16(0, 1, true);
        view.setUint16(2, 20, true);
        view.setUint32(8, 0x1000, true);
        view.setUint32(16, 0x1fff, true);
        at = 24;
      }
      if (at + 4 <= area) {
        view.setUint16(at, 1 + r.below(2), true);
        view.setUint16(at + 2, Math.min(0xffff, area - at - 4 + 1 + r.below(0x1000)), true);
      }
    }
    scatterWritable(ctx.memory, chain, 0, bytes, area);
    this.#writeStatus(ctx, chain, 0);
  }
}
