/**
 * Raw virtio-iommu requests built byte by byte with the LITERAL offsets of the spec's tables
 * (virtio 1.3 §5.13.6.3-§5.13.6.7, reference §1.5), deliberately not with spec/iommu.ts,
 * so that a wrong constant there cannot hide in both the mock and its tests. Plus a small fake
 * device context and queue so the mock device model can be driven without a transport.
 *
 * @module
 */

import { SimulatedMemory } from "../transport/memory.ts";
import type { Chain, DeviceContext, DeviceQueue } from "../mock/device.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";

/** ATTACH: head 0:4, domain 4:4, endpoint 8:4, flags 12:4, reserved 16:4 (20 readable). */
export function attachRequest(
  domain: number,
  endpoint: number,
  flags = 0,
  reserved = 0,
): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  b[0] = 1;
  v.setUint32(4, domain, true);
  v.setUint32(8, endpoint, true);
  v.setUint32(12, flags, true);
  v.setUint32(16, reserved, true);
  return b;
}

/** DETACH: head 0:4, domain 4:4, endpoint 8:4, reserved 12:8 (20 readable). */
export function detachRequest(domain: number, endpoint: number, reserved = 0): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  b[0] = 2;
  v.setUint32(4, domain, true);
  v.setUint32(8, endpoint, true);
  v.setUint32(12, reserved, true);
  v.setUint32(16, reserved, true);
  return b;
}

/** MAP: head 0:4, domain 4:4, virt_start 8:8, virt_end 16:8, phys_start 24:8, flags 32:4. */
export function mapRequest(
  domain: number,
  range: { start: bigint; end: bigint; phys: bigint },
  flags: number,
): Uint8Array {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  b[0] = 3;
  v.setUint32(4, domain, true);
  v.setBigUint64(8, range.start, true);
  v.setBigUint64(16, range.end, true);
  v.setBigUint64(24, range.phys, true);
  v.setUint32(32, flags, true);
  return b;
}

/** UNMAP: head 0:4, domain 4:4, virt_start 8:8, virt_end 16:8, reserved 24:4 (28 readable). */
export function unmapRequest(domain: number, start: bigint, end: bigint, reserved = 0): Uint8Array {
  const b = new Uint8Array(28);
  const v = new DataView(b.buffer);
  b[0] = 4;
  v.setUint32(4, domain, true);
  v.setBigUint64(8, start, true);
  v.setBigUint64(16, end, true);
  v.setUint32(24, reserved, true);
  return b;
}

/** PROBE: head 0:4, endpoint 4:4, reserved 8:64 (72 readable). */
export function probeRequest(endpoint: number, reservedFill = 0): Uint8Array {
  const b = new Uint8Array(72);
  b[0] = 5;
  new DataView(b.buffer).setUint32(4, endpoint, true);
  b.fill(reservedFill, 8, 72);
  return b;
}

/** Literal status codes of virtio 1.3 §5.13.6 (not imported from wire.ts on purpose). */
export const S = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
  DEVERR: 3,
  INVAL: 4,
  RANGE: 5,
  NOENT: 6,
  FAULT: 7,
  NOMEM: 8,
} as const;

/** Byte the harness pre-fills writable buffers with, to see what the device wrote. */
export const SENTINEL = 0xaa;

/** A device queue fed by hand: tests append chains, the device pops and pushes. */
export class FakeQueue implements DeviceQueue {
  /** Queue index. */
  readonly index: number;
  /** Queue size. */
  readonly size: number = 256;
  /** Chains not yet popped. */
  readonly available: Chain[] = [];
  /** Used elements pushed by the device. */
  readonly used: { head: number; written: number }[] = [];

  /** Creates an empty queue with index `index`. */
  constructor(index: number) {
    this.index = index;
  }

  /** Pops the oldest available chain. */
  pop(): Chain | null {
    return this.available.shift() ?? null;
  }

  /** Records a used element. */
  push(head: number, written: number): void {
    this.used.push({ head, written });
  }

  /** Chains not yet popped. */
  pending(): number {
    return this.available.length;
  }

  /** A fed queue has no ring layout of its own; it reports split. */
  readonly layout = "split" as const;
  /** Never broken. */
  readonly broken = false;
  /** Always wants an interrupt. */
  needsInterrupt(): boolean {
    return true;
  }
  /** Nothing to suppress. */
  setNoNotify(): void {}
  /** Records a forged used element like any other. */
  forgeUsed(id: number, len: number): void {
    this.used.push({ head: id, written: len });
  }
  /** Records the answer like any other. */
  pushBroken(head: number, written: number): void {
    this.used.push({ head, written });
  }
}

/** A device context that records everything the model asks of it. */
export class FakeContext implements DeviceContext {
  /** Simulated memory. */
  readonly memory: SimulatedMemory = new SimulatedMemory();
  /** Negotiated features. */
  negotiated: bigint;
  /** Status byte (ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK by default). */
  status = 15;
  /** The two queues; set one to null to simulate a disabled queue. */
  queues: (FakeQueue | null)[] = [new FakeQueue(0), new FakeQueue(1)];
  /** Violations recorded. */
  readonly violations: string[] = [];
  /** Queue indexes interrupts were raised for. */
  readonly interrupts: number[] = [];
  /** needsReset reasons. */
  readonly resets: string[] = [];
  /** configChanged() calls. */
  configChanges = 0;

  /** Creates a context with `negotiated` features. */
  constructor(negotiated: bigint) {
    this.negotiated = negotiated;
  }

  /** The queue, or null. */
  queue(index: number): DeviceQueue | null {
    return this.queues[index] ?? null;
  }

  /** Records an interrupt. */
  interrupt(index: number): void {
    this.interrupts.push(index);
  }

  /** Records a reset request. */
  needsReset(reason: string): void {
    this.resets.push(reason);
  }

  /** Records a violation. */
  violation(rule: string): void {
    this.violations.push(rule);
  }

  /** Counts a config change. */
  configChanged(): void {
    this.configChanges++;
  }
}

/** Result of {@link RawHarness.send}. */
export interface RawAnswer {
  /** Used length the device reported. */
  used: number;
  /** The writable bytes after the device answered (a copy). */
  writable: Uint8Array;
  /** Status byte: the first byte of the last 4 writable bytes. */
  status: number;
}

/** Options of {@link RawHarness.send}. */
export interface SendOptions {
  /** Writable bytes (default 4: the tail). */
  writable?: number;
  /** Split the readable part into descriptors at these offsets. */
  splitReadable?: number[];
  /** Split the writable part into descriptors at these offsets. */
  splitWritable?: number[];
}

function segments(
  offset: number,
  length: number,
  splits: number[],
): { offset: number; length: number }[] {
  const cuts = [0, ...splits.filter((s) => s > 0 && s < length), length];
  const out: { offset: number; length: number }[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    out.push({ offset: offset + cuts[i], length: cuts[i + 1] - cuts[i] });
  }
  return out.filter((s) => s.length > 0);
}

/** A mock IOMMU on a fake context, and a way to send it raw requests. */
export class RawHarness {
  /** The context. */
  readonly ctx: FakeContext;
  /** The device under test. */
  readonly device: MockIommuDevice;
  #head = 0;

  /** Creates the device with `options`; negotiated = everything offered unless given. */
  constructor(options: MockIommuOptions = {}, negotiated?: bigint) {
    this.device = new MockIommuDevice(options);
    this.ctx = new FakeContext(negotiated ?? this.device.features);
    this.device.attach(this.ctx);
  }

  /** Builds a chain over fresh memory holding `readable` then `writable` sentinel bytes. */
  chain(readable: Uint8Array, options: SendOptions = {}): { chain: Chain; writableAt: number } {
    const w = options.writable ?? 4;
    const region = this.ctx.memory.alloc(Math.max(1, readable.length + w), 16);
    const base = this.ctx.memory.resolve(region.addrLo, region.addrHi, region.size);
    this.ctx.memory.bytes.set(readable, base);
    this.ctx.memory.bytes.fill(SENTINEL, base + readable.length, base + readable.length + w);
    const r = segments(base, readable.length, options.splitReadable ?? []);
    const wr = segments(base + readable.length, w, options.splitWritable ?? []);
    const chain: Chain = {
      head: this.#head++,
      readable: r,
      readableCount: r.length,
      readableLength: readable.length,
      writable: wr,
      writableCount: wr.length,
      writableLength: w,
    };
    return { chain, writableAt: base + readable.length };
  }

  /** Sends one request through queue 0 and notify, and returns the device's answer. */
  send(readable: Uint8Array, options: SendOptions = {}): RawAnswer {
    const w = options.writable ?? 4;
    const { chain, writableAt } = this.chain(readable, options);
    const q = this.ctx.queues[0] as FakeQueue;
    q.available.push(chain);
    const before = q.used.length;
    this.device.notify(0);
    if (q.used.length !== before + 1) throw new Error("The device did not answer exactly once");
    const used = q.used[before];
    if (used.head !== chain.head) throw new Error("The device answered another chain");
    const writable = this.ctx.memory.bytes.slice(writableAt, writableAt + w);
    return { used: used.written, writable, status: w >= 4 ? writable[w - 4] : -1 };
  }

  /** Sends and returns the status, failing unless the answer is a 4-byte tail. */
  status(readable: Uint8Array): number {
    const a = this.send(readable);
    if (a.used !== 4) throw new Error(`Expected used length 4, got ${a.used}`);
    return a.status;
  }

  /** Adds an event buffer of `length` writable bytes; returns its offset in memory. */
  addEventBuffer(length = 24): number {
    const { chain, writableAt } = this.chain(new Uint8Array(0), { writable: length });
    (this.ctx.queues[1] as FakeQueue).available.push(chain);
    return writableAt;
  }
}
