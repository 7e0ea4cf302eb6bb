/**
 * Mock devices that break one conformance rule each, for the mutation check of the catalogue
 * (tests/conform_mutation_test.ts): the strict mock wrapped in a {@link Mutant} whose hooks
 * rewrite a request before the mock sees it, answer it instead of the mock, change an answer
 * or a fault report after the mock wrote it, or replace the reset; plus a transport wrapper
 * for the generic rules (status, config, interrupts) and a translation wrapper for the DMA
 * engine. Nothing here changes the mock itself.
 *
 * @module
 */

import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import type { Transport } from "../transport/transport.ts";
import type { Chain, DeviceContext, DeviceQueue } from "../mock/device.ts";
import { ForwardingDevice } from "../mock/forwarding.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import type { CoreFaults } from "../mock/virtio_core.ts";
import { MockIommuDevice, type TranslateResult } from "../mock/iommu/device.ts";
import { MockDmaEngine } from "../mock/iommu/dma_engine.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import type { ConformTarget } from "../conform/types.ts";

/** A request as a mutant sees it. */
export interface MutantRequest {
  /** The chain. */
  chain: Chain;
  /** A copy of its readable bytes; changes are what the mock sees (the original is restored). */
  bytes: Uint8Array;
  /** A view over {@link MutantRequest.bytes}. */
  view: DataView;
  /** The request type (head byte 0), or -1 without a head. */
  type: number;
}

/** What a mutation changes. */
export interface Mutation {
  /** Options of the mock. */
  options?: MockIommuOptions;
  /** Faults of the virtio core. */
  core?: Partial<CoreFaults>;
  /**
   * Answers a request itself (returns the used length), keeps it unanswered with
   * DEVICE_NEEDS_RESET (`"keep"`), or lets the mock answer it (undefined; changes to
   * `req.bytes` are what the mock reads).
   */
  request?(req: MutantRequest, m: Mutant): number | "keep" | undefined;
  /** Runs first on every notification. */
  onNotify?(index: number, m: Mutant): void;
  /** Changes the mock's answer; returns the used length to report. */
  answer?(req: MutantRequest, used: number, m: Mutant): number;
  /** Changes a fault report the mock wrote (24 bytes); returns the used length. */
  event?(record: DataView, used: number): number;
  /** Replaces the device reset. */
  reset?(m: Mutant): void;
  /** Process notifications before DRIVER_OK. */
  notifyBeforeDriverOk?: boolean;
  /** Changes what the DMA engine's accesses translate to. */
  translate?(
    result: TranslateResult,
    access: { endpoint: number; iova: bigint; access: "read" | "write" },
    device: MockIommuDevice,
  ): TranslateResult;
  /** Wraps the driver-side transport. */
  transport?(inner: Transport): Partial<Transport>;
}

/** The strict mock behind one {@link Mutation}. */
export class Mutant extends ForwardingDevice<MockIommuDevice> {
  /** The mutation. */
  readonly mutation: Mutation;
  /** The request queue as last seen (it outlives a reset, as ring memory does). */
  lastRequestQueue: DeviceQueue | null = null;

  /** Wraps the mock `inner` with `mutation`. */
  constructor(inner: MockIommuDevice, mutation: Mutation) {
    super(inner);
    this.mutation = mutation;
  }

  /** Processes notifications early when the mutation says so. */
  override get notifyBeforeDriverOk(): boolean {
    return this.mutation.notifyBeforeDriverOk ?? this.inner.notifyBeforeDriverOk;
  }

  /** Plugs the mock in through a context whose event queue the mutation may rewrite. */
  override attach(context: DeviceContext): void {
    const event = this.mutation.event;
    if (event === undefined) return super.attach(context);
    const wrapped: DeviceContext = {
      get memory() {
        return context.memory;
      },
      get negotiated() {
        return context.negotiated;
      },
      get status() {
        return context.status;
      },
      queue(index: number): DeviceQueue | null {
        const q = context.queue(index);
        if (q === null || index !== 1) return q;
        let popped: Chain | null = null;
        return {
          index: q.index,
          size: q.size,
          layout: q.layout,
          get broken(): boolean {
            return q.broken;
          },
          pop(): Chain | null {
            popped = q.pop();
            return popped;
          },
          push(head: number, written: number): void {
            let used = written;
            const seg = popped?.writable[0];
            if (popped !== null && seg !== undefined && written >= 24 && seg.length >= 24) {
              used = event(new DataView(context.memory.bytes.buffer, seg.offset, 24), written);
            }
            q.push(head, used);
          },
          pending: (): number => q.pending(),
          needsInterrupt: (): boolean => q.needsInterrupt(),
          setNoNotify: (on: boolean): void => q.setNoNotify(on),
          forgeUsed: (id: number, len: number): void => q.forgeUsed(id, len),
          pushBroken: (id: number, len: number): void => q.pushBroken(id, len),
        };
      },
      interrupt: (index: number): void => context.interrupt(index),
      needsReset: (reason: string): void => context.needsReset(reason),
      violation: (rule: string): void => context.violation(rule),
      configChanged: (): void => context.configChanged(),
    };
    super.attach(wrapped);
  }

  /** Runs requests through the hooks; other queues go to the mock. */
  override notify(index: number): void {
    const ctx = this.context;
    if (ctx === null) return;
    this.lastRequestQueue = ctx.queue(0) ?? this.lastRequestQueue;
    this.mutation.onNotify?.(index, this);
    const { request, answer } = this.mutation;
    if (index !== 0 || (request === undefined && answer === undefined)) {
      return this.inner.notify(index);
    }
    const queue = ctx.queue(0);
    if (queue === null) return;
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      const original = this.readable(chain);
      const bytes = original.slice();
      const type = bytes.length > 0 ? bytes[0] : -1;
      const req = { chain, bytes, view: new DataView(bytes.buffer), type };
      const decided = request?.(req, this);
      let used: number;
      if (decided === "keep") used = -1;
      else if (decided !== undefined) used = decided;
      else {
        this.setReadable(chain, bytes);
        used = this.inner.handle(chain);
        this.setReadable(chain, original);
      }
      if (used < 0) {
        ctx.needsReset("mutant: request kept");
        return;
      }
      queue.push(chain.head, answer?.(req, used, this) ?? used);
    }
    ctx.interrupt(0);
  }

  /** Resets through the mutation when it replaces the reset. */
  override reset(): void {
    if (this.mutation.reset !== undefined) this.mutation.reset(this);
    else this.inner.reset();
  }

  /** The chain's readable bytes. */
  readable(chain: Chain): Uint8Array {
    const out = new Uint8Array(chain.readableLength);
    let at = 0;
    for (let i = 0; i < chain.readableCount; i++) {
      const s = chain.readable[i];
      out.set(this.#memory().bytes.subarray(s.offset, s.offset + s.length), at);
      at += s.length;
    }
    return out;
  }

  /** Writes `bytes` over the chain's readable part. */
  setReadable(chain: Chain, bytes: Uint8Array): void {
    let at = 0;
    for (let i = 0; i < chain.readableCount; i++) {
      const s = chain.readable[i];
      this.#memory().bytes.set(bytes.subarray(at, at + s.length), s.offset);
      at += s.length;
    }
  }

  /** The chain's writable bytes as they are now. */
  writable(chain: Chain): Uint8Array {
    const out = new Uint8Array(chain.writableLength);
    let at = 0;
    for (let i = 0; i < chain.writableCount; i++) {
      const s = chain.writable[i];
      out.set(this.#memory().bytes.subarray(s.offset, s.offset + s.length), at);
      at += s.length;
    }
    return out;
  }

  /** Writes `bytes` over the chain's writable part from byte `offset` of it. */
  setWritable(chain: Chain, offset: number, bytes: Uint8Array): void {
    let skip = offset;
    let done = 0;
    for (let i = 0; i < chain.writableCount && done < bytes.length; i++) {
      const s = chain.writable[i];
      if (skip >= s.length) {
        skip -= s.length;
        continue;
      }
      const n = Math.min(s.length - skip, bytes.length - done);
      this.#memory().bytes.set(bytes.subarray(done, done + n), s.offset + skip);
      done += n;
      skip = 0;
    }
  }

  /** Answers `chain` with `status` in its last 4 writable bytes; returns the used length. */
  status(chain: Chain, status: number): number {
    if (chain.writableLength < 4) return 0;
    this.setWritable(chain, chain.writableLength - 4, new Uint8Array([status, 0, 0, 0]));
    return chain.writableLength;
  }

  /** Sends `bytes` to the mock as a request of its own and returns the status it wrote. */
  send(bytes: Uint8Array): number {
    const memory = this.#memory();
    const region = memory.alloc(bytes.length + 4, 8);
    const at = memory.resolve(region.addrLo, region.addrHi, region.size);
    memory.bytes.set(bytes, at);
    const chain: Chain = {
      head: 0,
      readable: [{ offset: at, length: bytes.length }],
      readableCount: 1,
      readableLength: bytes.length,
      writable: [{ offset: at + bytes.length, length: 4 }],
      writableCount: 1,
      writableLength: 4,
    };
    this.inner.handle(chain);
    const status = memory.bytes[at + bytes.length];
    memory.free(region);
    return status;
  }

  #memory(): SimulatedMemory {
    const ctx = this.context;
    if (ctx === null) throw new Error("The mutant is not plugged in");
    return ctx.memory;
  }
}

/** Forwards every Transport call to `inner`, except those `over` replaces. */
export function wrapTransport(inner: Transport, over: Partial<Transport>): Transport {
  return {
    kind: inner.kind,
    deviceId: inner.deviceId,
    getStatus: () => inner.getStatus(),
    setStatus: (v) => inner.setStatus(v),
    readDeviceFeatures: () => inner.readDeviceFeatures(),
    writeDriverFeatures: (f) => inner.writeDriverFeatures(f),
    configGeneration: () => inner.configGeneration(),
    readConfig8: (o) => inner.readConfig8(o),
    readConfig16: (o) => inner.readConfig16(o),
    readConfig32: (o) => inner.readConfig32(o),
    writeConfig8: (o, v) => inner.writeConfig8(o, v),
    maxQueueSize: (i) => inner.maxQueueSize(i),
    enableQueue: (i, s, a) => inner.enableQueue(i, s, a),
    notify: (i) => inner.notify(i),
    takeInterrupt: () => inner.takeInterrupt(),
    resetQueue: (i) => inner.resetQueue(i),
    queueResetPending: (i) => inner.queueResetPending(i),
    queueEnabled: (i) => inner.queueEnabled(i),
    ...over,
  };
}

/** The endpoints of the mock by default (the oracle's 0x18 first, as the CLI orders them). */
export const MOCK_ENDPOINTS = [0x18, 0x08, 0x10, 0x00];

/** A conformance target over the mock with `mutation` (none: the strict mock). */
export function mutantTarget(mutation: Mutation = {}): { target: ConformTarget; mutant: Mutant } {
  const memory = new SimulatedMemory({ size: 32 * 1024 * 1024 });
  const inner = new MockIommuDevice(mutation.options ?? {});
  const mutant = new Mutant(inner, mutation);
  const mmio = new MmioDevice(mutant, memory);
  Object.assign(mmio.core.faults, mutation.core ?? {});
  const plain = MmioTransport.create(mmio);
  const transport = mutation.transport ? wrapTransport(plain, mutation.transport(plain)) : plain;
  const translate = mutation.translate;
  const engineDevice = translate === undefined ? inner : {
    translate: (endpoint: number, iova: bigint, access: "read" | "write"): TranslateResult =>
      translate(inner.translate(endpoint, iova, access), { endpoint, iova, access }, inner),
  };
  const ids = mutation.options?.endpoints?.map((e) => e.id) ?? MOCK_ENDPOINTS;
  return {
    target: {
      transport,
      dma: memory,
      endpoints: ids,
      missingEndpoint: 0xff,
      oracle: new MockDmaEngine(engineDevice, memory, { endpoint: ids[0] }),
    },
    mutant,
  };
}
