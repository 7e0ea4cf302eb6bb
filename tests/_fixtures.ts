/**
 * Test fixtures for the virtio-iommu driver: a driver plugged into the mock device over either
 * transport, and {@link ScriptedDevice}, a wrapper around the mock that can answer requests
 * the way a misbehaving device would (chosen statuses, bad used lengths, bad used ids, holding
 * requests, DEVICE_NEEDS_RESET, hand-written fault reports).
 *
 * @module
 */

import { VirtioIommu, type VirtioIommuOptions } from "../driver/iommu/device.ts";
import { EVENT_QUEUE, HEAD_TYPE, REQUEST_QUEUE, TAIL_SIZE } from "../spec/iommu.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import type { Chain, DeviceContext, DeviceModel } from "../mock/device.ts";
import { gatherReadable, scatterWritable } from "../mock/chain.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import { ForwardingDevice } from "../mock/forwarding.ts";
import { QUEUE_DEVICE, type VirtioCore } from "../mock/virtio_core.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";

/** A transport kind the fixtures can build. */
export type Kind = "mmio" | "pci";

/** Both transports, for tests generated per kind. */
export const KINDS: readonly Kind[] = ["mmio", "pci"];

/** A device model plugged into a transport front-end. */
export interface Plugged {
  /** The driver-side transport. */
  transport: Transport;
  /** The device core behind it (violations, status, faults to inject). */
  core: VirtioCore;
}

/** Plugs `model` into an MMIO register file or a PCI function over `memory`. */
export function plug(kind: Kind, model: DeviceModel, memory: SimulatedMemory): Plugged {
  if (kind === "mmio") {
    const regs = new MmioDevice(model, memory);
    return { transport: MmioTransport.create(regs), core: regs.core };
  }
  const fn = new PciFunction(model, memory);
  return {
    transport: PciTransport.create(fn.config, (i: number) => fn.bar(i)),
    core: fn.core,
  };
}

/** What {@link setup} returns. */
export interface Fixture {
  /** The driver. */
  iommu: VirtioIommu;
  /** The mock virtio-iommu. */
  device: MockIommuDevice;
  /** The model the transport drives: the mock itself, or the {@link ScriptedDevice} around it. */
  scripted: ScriptedDevice;
  /** The simulated memory. */
  memory: SimulatedMemory;
  /** The device core (violations). */
  core: VirtioCore;
  /** The driver-side transport. */
  transport: Transport;
}

/**
 * Builds the mock device (always wrapped in a pass-through {@link ScriptedDevice}), plugs it
 * into `kind`, and initialises the driver on it.
 */
export async function setup(
  kind: Kind,
  mockOptions: MockIommuOptions = {},
  driverOptions: VirtioIommuOptions = {},
): Promise<Fixture> {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice(mockOptions);
  const scripted = new ScriptedDevice(device);
  const { transport, core } = plug(kind, scripted, memory);
  const iommu = await VirtioIommu.create(transport, memory, driverOptions);
  return { iommu, device, scripted, memory, core, transport };
}

/** A request as the scripted device sees it. */
export interface RequestInfo {
  /** Request type byte (1 ATTACH … 5 PROBE). */
  type: number;
  /** Sequence number of the request since the device was created (0-based). */
  index: number;
  /** Copy of the readable bytes (up to 80). */
  bytes: Uint8Array;
  /** Readable length. */
  readableLength: number;
  /** Writable length. */
  writableLength: number;
}

/** What the scripted device does with one request. */
export type Action =
  /** Let the mock answer. */
  | { do: "pass" }
  /** Write status `status` in the tail (after the mock ran when `run`), used length as `len`. */
  | { do: "status"; status: number; run?: boolean; len?: number }
  /** Let the mock run (when `run`), then report used length `len` (whatever was written). */
  | { do: "len"; len: number; run?: boolean }
  /** Write `bytes` at the start of the writable part, status `status`, full used length. */
  | { do: "write"; bytes: Uint8Array; status: number }
  /** Never answer (until {@link ScriptedDevice.releaseHeld}). */
  | { do: "hold" }
  /** Set DEVICE_NEEDS_RESET and never answer. */
  | { do: "needsReset" }
  /** Answer normally, then put the same id in the used ring a second time. */
  | { do: "duplicate" }
  /** Do not answer; put id `id` (never submitted) in the used ring instead. */
  | { do: "bogusId"; id: number };

/** Decides the action for a request. */
export type Script = (request: RequestInfo) => Action;

/**
 * A {@link DeviceModel} around a {@link MockIommuDevice} that answers each request as its
 * {@link Script} says. With no script it is transparent.
 */
export class ScriptedDevice extends ForwardingDevice<MockIommuDevice> {
  /** Current script; null passes everything to the mock. */
  script: Script | null = null;
  /** Notifications received, per queue index. */
  readonly notifies: number[] = [0, 0];
  /** Requests seen so far. */
  requests = 0;
  /** Heads held back, oldest first. */
  readonly held: number[] = [];
  #scratch = new Uint8Array(80);

  /** Device reset: forgets held requests, resets the mock. */
  override reset(): void {
    this.held.length = 0;
    this.inner.reset();
  }

  /**
   * Answer requests after the notification returns (in a microtask), as a device running in
   * another thread does, instead of during it (as QEMU under TCG and the mock do).
   */
  deferred = false;
  #deferredRun = false;

  /** The request queue: each chain goes through the script. */
  override notify(index: number): void {
    this.notifies[index] = (this.notifies[index] ?? 0) + 1;
    if (this.deferred && index === REQUEST_QUEUE) {
      if (!this.#deferredRun) {
        this.#deferredRun = true;
        queueMicrotask(() => {
          this.#deferredRun = false;
          this.#process(index);
        });
      }
      return;
    }
    this.#process(index);
  }

  #process(index: number): void {
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

  #one(ctx: DeviceContext, chain: Chain): void {
    const queue = ctx.queue(REQUEST_QUEUE)!;
    const n = gatherReadable(ctx.memory, chain, this.#scratch, this.#scratch.length);
    const info: RequestInfo = {
      type: this.#scratch[HEAD_TYPE],
      index: this.requests++,
      bytes: this.#scratch.slice(0, n),
      readableLength: chain.readableLength,
      writableLength: chain.writableLength,
    };
    const action: Action = this.script?.(info) ?? { do: "pass" };
    switch (action.do) {
      case "pass":
        queue.push(chain.head, this.inner.handle(chain));
        return;
      case "status": {
        let len = chain.writableLength;
        if (action.run) len = this.inner.handle(chain);
        const tail = new Uint8Array(TAIL_SIZE);
        tail[0] = action.status;
        scatterWritable(ctx.memory, chain, chain.writableLength - TAIL_SIZE, tail, TAIL_SIZE);
        queue.push(chain.head, action.len ?? len);
        return;
      }
      case "len":
        if (action.run) this.inner.handle(chain);
        queue.push(chain.head, action.len);
        return;
      case "write": {
        scatterWritable(ctx.memory, chain, 0, action.bytes, action.bytes.length);
        const tail = new Uint8Array(TAIL_SIZE);
        tail[0] = action.status;
        scatterWritable(ctx.memory, chain, chain.writableLength - TAIL_SIZE, tail, TAIL_SIZE);
        queue.push(chain.head, chain.writableLength);
        return;
      }
      case "hold":
        this.held.push(chain.head);
        return;
      case "needsReset":
        this.held.push(chain.head);
        ctx.needsReset("scripted: device needs reset");
        return;
      case "duplicate":
        queue.push(chain.head, this.inner.handle(chain));
        this.rawUsed(chain.head, TAIL_SIZE);
        return;
      case "bogusId":
        this.held.push(chain.head);
        this.rawUsed(action.id, TAIL_SIZE);
        return;
    }
  }

  /**
   * Answers the held requests through the mock. Their chains are not re-read (the harness reuses
   * chain objects), so each is answered as a plain success with the tail written by hand.
   */
  releaseHeld(status = 0): void {
    const ctx = this.context;
    const queue = ctx?.queue(REQUEST_QUEUE);
    if (!ctx || !queue) return;
    for (const head of this.held.splice(0)) {
      this.#writeTailOf(ctx, head, status);
      queue.push(head, TAIL_SIZE);
    }
    ctx.interrupt(REQUEST_QUEUE);
  }

  /** Writes `status` into the tail of held chain `head` by walking the descriptor table. */
  #writeTailOf(ctx: DeviceContext, head: number, status: number): void {
    const core = ctx as unknown as VirtioCore;
    const size = core.queueSize(REQUEST_QUEUE);
    const desc = ctx.memory.resolve(
      core.queueAddress(REQUEST_QUEUE, 0, 0),
      core.queueAddress(REQUEST_QUEUE, 0, 1),
      16 * size,
    );
    const v = ctx.memory.view;
    let at = desc + 16 * head;
    let flags = v.getUint16(at + 12, true);
    if ((flags & 4) !== 0) {
      // Indirect: the table is at addr.
      const lo = v.getUint32(at, true);
      const hi = v.getUint32(at + 4, true);
      const len = v.getUint32(at + 8, true);
      const table = ctx.memory.resolve(lo, hi, len);
      at = table;
      flags = v.getUint16(at + 12, true);
      while ((flags & 1) !== 0) {
        at = table + 16 * v.getUint16(at + 14, true);
        flags = v.getUint16(at + 12, true);
      }
    } else {
      while ((flags & 1) !== 0) {
        at = desc + 16 * v.getUint16(at + 14, true);
        flags = v.getUint16(at + 12, true);
      }
    }
    const lo = v.getUint32(at, true);
    const hi = v.getUint32(at + 4, true);
    const len = v.getUint32(at + 8, true);
    const buf = ctx.memory.resolve(lo, hi, len);
    ctx.memory.bytes[buf + len - TAIL_SIZE] = status;
  }

  /**
   * Writes used element (`id`, `len`) straight into the request queue's used ring and advances
   * used.idx, without the device queue's bookkeeping: for ids a correct device would never use.
   */
  rawUsed(id: number, len: number): void {
    const core = this.context as unknown as VirtioCore;
    const size = core.queueSize(REQUEST_QUEUE);
    const used = core.memory.resolve(
      core.queueAddress(REQUEST_QUEUE, QUEUE_DEVICE, 0),
      core.queueAddress(REQUEST_QUEUE, QUEUE_DEVICE, 1),
      4 + 8 * size,
    );
    const v = core.memory.view;
    const idx = v.getUint16(used + 2, true);
    const elem = used + 4 + 8 * (idx & (size - 1));
    v.setUint32(elem, id, true);
    v.setUint32(elem + 4, len, true);
    v.setUint16(used + 2, (idx + 1) & 0xffff, true);
  }

  /**
   * Pops one event buffer and writes `bytes` into it as a fault report with used length
   * `len`. Returns false when the driver has no event buffer available.
   */
  postRawEvent(bytes: Uint8Array, len: number = bytes.length): boolean {
    const ctx = this.context;
    const queue = ctx?.queue(EVENT_QUEUE);
    if (!ctx || !queue) return false;
    const chain = queue.pop();
    if (chain === null) return false;
    scatterWritable(ctx.memory, chain, 0, bytes, bytes.length);
    queue.push(chain.head, len);
    ctx.interrupt(EVENT_QUEUE);
    return true;
  }
}
