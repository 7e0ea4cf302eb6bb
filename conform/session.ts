/**
 * A raw session with a virtio-iommu device: the spec's bring-up (virtio 1.3 §3.1.1, through
 * `driver/virtio/init.ts`), a request queue and an event queue, and a way to send any bytes as
 * a request and see exactly what the device did with them: the used length, the status, every
 * writable byte, whether it wrote into the readable part, whether it set DEVICE_NEEDS_RESET.
 * Nothing here refuses a request: the device is the one being judged.
 *
 * The queues are {@link Virtqueue}s, used through `add`, `publish`, `hasUsed`, `popUsed`,
 * `usedLen` and `setInterrupts` only, so any ring layout behind the interface is judged the same
 * way; {@link createQueue} builds them (the split ring until a packed one exists).
 *
 * @module
 */

import { beginInit, finishInit, resetDevice } from "../driver/virtio/init.ts";
import { createVirtqueue } from "../driver/virtio/create_queue.ts";
import type { DmaBuffer, Virtqueue } from "../driver/virtio/virtqueue.ts";
import type { DmaAllocator, DmaRegion } from "../transport/dma.ts";
import type { Transport } from "../transport/transport.ts";
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../spec/features.ts";
import { STATUS_DEVICE_NEEDS_RESET } from "../spec/status.ts";
import {
  EVENT_QUEUE,
  FAULT_SIZE,
  REQUEST_QUEUE,
  TAIL_SIZE,
  VIRTIO_IOMMU_F_PROBE,
} from "../spec/iommu.ts";
import { addHi, addLo } from "../util/u64.ts";
import { type RawConfig, readRawConfig } from "./config.ts";
import { EventBuffers, type FaultRecord } from "./events.ts";

export type { FaultRecord } from "./events.ts";
export { type RawConfig, readRawConfig } from "./config.ts";

/** The byte the writable part is filled with before a request, to see what the device wrote. */
export const SENTINEL = 0xa5;

/** The virtqueue methods the suite uses. */
export type RawQueue = Pick<
  Virtqueue,
  "add" | "publish" | "hasUsed" | "popUsed" | "usedLen" | "setInterrupts"
>;

/** Options of {@link RawSession.open}. */
export interface RawSessionOptions {
  /** Features to accept, among those offered (default: everything the suite understands). */
  features?: bigint;
  /** Set DRIVER_OK at the end of the bring-up (default true); else call {@link RawSession.start}. */
  driverOk?: boolean;
  /** Event buffers to post (default 16). */
  eventBuffers?: number;
  /** Bytes of each event buffer (default 24, one fault report). */
  eventBufferSize?: number;
  /** How long to wait for an answer, in ms (default 1000). */
  timeoutMs?: number;
}

/** Options of {@link RawSession.send}. */
export interface SendOptions {
  /** Writable bytes (default 4: the tail). */
  writable?: number;
  /** Cut the readable part into descriptors at these offsets. */
  splitReadable?: readonly number[];
  /** Cut the writable part into descriptors at these offsets. */
  splitWritable?: readonly number[];
  /** Where the status byte is in the writable part (default: its last 4 bytes). */
  statusOffset?: number;
  /**
   * Send the available-buffer notification when the ring asks for one (default true); `always`
   * sends it even when the device suppressed notifications.
   */
  notify?: boolean | "always";
  /** How long to wait, in ms (default the session's). */
  timeoutMs?: number;
  /** The byte the writable part is filled with first (default {@link SENTINEL}). */
  fill?: number;
  /** Point the readable descriptors outside any memory ({@link BAD_ADDRESS}) instead. */
  badAddress?: boolean;
}

/** What the device did with one request. */
export interface Answer {
  /** Whether the device returned the buffers within the timeout. */
  answered: boolean;
  /** The used length, or -1 without an answer. */
  used: number;
  /** The status byte, when the used length covers it; null otherwise. */
  status: number | null;
  /** The writable bytes after the answer (they start as {@link SENTINEL}). */
  writable: Uint8Array;
  /** Whether the device left the readable bytes as they were (§2.7.5.1). */
  readableIntact: boolean;
  /** Whether DEVICE_NEEDS_RESET was set after the request. */
  needsReset: boolean;
  /** The ring rule the device broke while answering (a bad used id or length), if any. */
  ringError: string | null;
}

/** Where a descriptor points with {@link SendOptions.badAddress}: far outside any memory. */
export const BAD_ADDRESS = 0x8000_0000_0000_0000n;

/** Device-type and ring features the suite knows how to use (§5.13.3, §6). */
export const SUITE_FEATURES: bigint = 0x77n | featureBit(VIRTIO_F_INDIRECT_DESC) |
  featureBit(VIRTIO_F_EVENT_IDX);

const REQUEST_QUEUE_SIZE = 32;
const EVENT_QUEUE_SIZE = 16;
/** Gap between the descriptors of a split buffer, so they are not contiguous. */
const SEGMENT_GAP = 64;

/** Builds a driver-side queue of the largest power-of-two size up to `cap` the device allows. */
function createQueue(
  transport: Transport,
  dma: DmaAllocator,
  index: number,
  negotiated: bigint,
  cap: number,
): { queue: RawQueue; size: number; destroy: () => void } {
  const max = transport.maxQueueSize(index);
  if (max === 0) throw new Error(`The device has no queue ${index}`);
  let size = 1;
  while (size * 2 <= Math.min(max, cap)) size *= 2;
  const queue = createVirtqueue("split", index, size, dma, {
    eventIdx: (negotiated & featureBit(VIRTIO_F_EVENT_IDX)) !== 0n,
    indirect: (negotiated & featureBit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
  });
  transport.enableQueue(index, size, queue.addresses);
  return { queue, size, destroy: (): void => queue.destroy() };
}

/** Gives the event loop a turn (a device in another thread may answer meanwhile). */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A device brought up by the suite, with raw access to its request and event queues. */
export class RawSession {
  /** The transport. */
  readonly transport: Transport;
  /** The features the device offered. */
  readonly offered: bigint;
  /** The features accepted. */
  readonly negotiated: bigint;
  #dma: DmaAllocator;
  #timeoutMs: number;
  #requests: RawQueue;
  #events: EventBuffers;
  #destroy: (() => void)[] = [];
  #regions: DmaRegion[] = [];
  #closed = false;

  private constructor(
    transport: Transport,
    dma: DmaAllocator,
    offered: bigint,
    negotiated: bigint,
    timeoutMs: number,
    eventSize: number,
  ) {
    this.transport = transport;
    this.#dma = dma;
    this.offered = offered;
    this.negotiated = negotiated;
    this.#timeoutMs = timeoutMs;
    const req = createQueue(transport, dma, REQUEST_QUEUE, negotiated, REQUEST_QUEUE_SIZE);
    this.#destroy.push(req.destroy);
    this.#requests = req.queue;
    const ev = createQueue(transport, dma, EVENT_QUEUE, negotiated, EVENT_QUEUE_SIZE);
    this.#destroy.push(ev.destroy);
    this.#events = new EventBuffers(ev.queue, dma, {
      size: eventSize,
      slots: ev.size,
      notify: () => transport.notify(EVENT_QUEUE),
    });
  }

  /**
   * Resets the device and brings it up (§3.1.1): ACKNOWLEDGE, DRIVER, the features, FEATURES_OK
   * and its check, both queues, DRIVER_OK, then the event buffers. Throws what
   * `driver/virtio/init.ts` throws when the device refuses.
   */
  static async open(
    target: { transport: Transport; dma: DmaAllocator },
    options: RawSessionOptions = {},
  ): Promise<RawSession> {
    const t = target.transport;
    const timeoutMs = options.timeoutMs ?? 1000;
    const offered = t.readDeviceFeatures();
    const wanted = options.features ?? SUITE_FEATURES;
    const negotiated = await beginInit(t, { supported: wanted, timeoutMs });
    const session = new RawSession(
      t,
      target.dma,
      offered,
      negotiated,
      timeoutMs,
      options.eventBufferSize ?? FAULT_SIZE,
    );
    if (options.driverOk !== false) session.start(options.eventBuffers ?? EVENT_QUEUE_SIZE);
    return session;
  }

  /** Sets DRIVER_OK (§3.1.1 step 8) and posts `eventBuffers` event buffers. */
  start(eventBuffers = EVENT_QUEUE_SIZE): void {
    finishInit(this.transport);
    if (eventBuffers > 0) this.#events.post(eventBuffers);
  }

  /** Every config field, read now. */
  config(): RawConfig {
    return readRawConfig(this.transport);
  }

  /** Whether the device has set DEVICE_NEEDS_RESET. */
  needsReset(): boolean {
    return (this.transport.getStatus() & STATUS_DEVICE_NEEDS_RESET) !== 0;
  }

  /**
   * Sends `readable` as one request with `writable` device-writable bytes (all filled with
   * {@link SENTINEL}) and waits for the device to return it.
   */
  async send(readable: Uint8Array, options: SendOptions = {}): Promise<Answer> {
    const writable = options.writable ?? TAIL_SIZE;
    const rSegs = segments(readable.length, options.splitReadable ?? []);
    const wSegs = segments(writable, options.splitWritable ?? []);
    const wBase = 4096;
    const size = wBase + writable + SEGMENT_GAP * (wSegs.length + 1);
    const region = this.#dma.alloc(Math.max(size, 8192), 4096);
    const buffers = (segs: Segment[], base: number, bad: boolean): DmaBuffer[] =>
      segs.map((s, i) => {
        const at = base + s.offset + SEGMENT_GAP * i;
        return bad ? { addrLo: at, addrHi: Number(BAD_ADDRESS >> 32n), length: s.length } : {
          addrLo: addLo(region.addrLo, at),
          addrHi: addHi(region.addrLo, region.addrHi, at),
          length: s.length,
        };
      });
    const fill = options.fill ?? SENTINEL;
    rSegs.forEach((s, i) => {
      region.bytes.set(
        readable.subarray(s.offset, s.offset + s.length),
        s.offset + SEGMENT_GAP * i,
      );
    });
    wSegs.forEach((s, i) => {
      const at = wBase + s.offset + SEGMENT_GAP * i;
      region.bytes.fill(fill, at, at + s.length);
    });
    const head = this.#requests.add(
      buffers(rSegs, 0, options.badAddress === true),
      buffers(wSegs, wBase, false),
    );
    if (head < 0) throw new Error("The request queue is full: the device is not returning buffers");
    const wanted = this.#requests.publish();
    if (options.notify === "always" || (wanted && options.notify !== false)) {
      this.transport.notify(REQUEST_QUEUE);
    }
    let used = -1;
    let ringError: string | null = null;
    const deadline = performance.now() + (options.timeoutMs ?? this.#timeoutMs);
    try {
      for (let spins = 0; used < 0; spins++) {
        if (this.#requests.hasUsed()) {
          const id = this.#requests.popUsed();
          if (id === head) used = this.#requests.usedLen;
          continue;
        }
        if (performance.now() > deadline) break;
        if (spins > 64) await yieldTurn();
      }
    } catch (error) {
      ringError = (error as Error).message;
    }
    const gather = (segs: Segment[], base: number, total: number): Uint8Array => {
      const out = new Uint8Array(total);
      segs.forEach((s, i) => {
        const at = base + s.offset + SEGMENT_GAP * i;
        out.set(region.bytes.subarray(at, at + s.length), s.offset);
      });
      return out;
    };
    const after = gather(wSegs, wBase, writable);
    const readBack = gather(rSegs, 0, readable.length);
    const statusAt = options.statusOffset ?? writable - TAIL_SIZE;
    const answer: Answer = {
      answered: used >= 0,
      used,
      status: used > statusAt && statusAt >= 0 ? after[statusAt] : null,
      writable: after,
      readableIntact: readBack.every((b, i) => b === readable[i]),
      needsReset: this.needsReset(),
      ringError,
    };
    // A buffer the device still holds may be written later: keep it until the device is reset.
    if (used >= 0) this.#dma.free(region);
    else this.#regions.push(region);
    return answer;
  }

  /** Whether the device has returned request buffers the session has not collected. */
  returned(): boolean {
    return this.#requests.hasUsed();
  }

  /** Whether PROBE was negotiated. */
  get probes(): boolean {
    return ((this.negotiated >> VIRTIO_IOMMU_F_PROBE) & 1n) === 1n;
  }

  /** Writable bytes of a PROBE: `probe_size` of properties and the tail (§5.13.6.7). */
  get probeWritable(): number {
    return this.config().probeSize + TAIL_SIZE;
  }

  /** Sends an available-buffer notification for `queue` with nothing new in it. */
  notify(queue: number): void {
    this.transport.notify(queue);
  }

  /** Turns used-buffer notifications of the request queue on or off (§2.7.7). */
  requestInterrupts(enabled: boolean): void {
    this.#requests.setInterrupts(enabled);
  }

  /** Posts `count` more event buffers (§5.13.6.9: the driver populates the event queue). */
  postEventBuffers(count: number): void {
    this.#events.post(count);
  }

  /**
   * Waits up to `ms` for fault reports (returning once one arrived and `settleMs` passed
   * without another), re-posting each consumed buffer.
   */
  takeFaults(ms: number, settleMs = 20): Promise<FaultRecord[]> {
    return this.#events.take(ms, settleMs);
  }

  /** Resets the device and frees everything the session allocated. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await resetDevice(this.transport, this.#timeoutMs);
    } finally {
      for (const destroy of this.#destroy) destroy();
      for (const r of this.#regions) this.#dma.free(r);
      this.#events.free();
    }
  }
}

/** One descriptor's share of a buffer. */
interface Segment {
  offset: number;
  length: number;
}

/** Cuts `length` bytes at `cuts` (ignoring cuts outside 1..length-1). */
function segments(length: number, cuts: readonly number[]): Segment[] {
  if (length === 0) return [];
  const points = [0, ...[...cuts].filter((c) => c > 0 && c < length).sort((a, b) => a - b), length];
  const out: Segment[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    if (points[i + 1] > points[i]) {
      out.push({ offset: points[i], length: points[i + 1] - points[i] });
    }
  }
  return out;
}
