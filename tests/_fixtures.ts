/**
 * Test fixtures for the virtio-iommu driver: a driver plugged into the mock device over either
 * transport, and {@link ScriptedDevice}, a wrapper around the mock that can answer requests
 * the way a misbehaving device would (chosen statuses, bad used lengths, bad used ids, holding
 * requests, DEVICE_NEEDS_RESET, hand-written fault reports).
 *
 * @module
 */

import {
  SUPPORTED_FEATURES,
  VirtioIommu,
  type VirtioIommuOptions,
} from "../driver/iommu/device.ts";
import { featureBit, VIRTIO_F_RING_RESET } from "../spec/features.ts";
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
import type { VirtioCore } from "../mock/virtio_core.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";

/** A transport kind the fixtures can build. */
export type Kind = "mmio" | "pci";

/** Both transports, for tests generated per kind. */
export const KINDS: readonly Kind[] = ["mmio", "pci"];

/**
 * A transport kind and the ring layout the mock offers: `"pci+packed"` also offers
 * VIRTIO_F_RING_PACKED, so the driver runs the packed ring (§2.8) over PCI.
 */
export type Bus = Kind | `${Kind}+packed`;

/** Every transport with both ring layouts, for tests generated per transport and ring. */
export const BUSES: readonly Bus[] = ["mmio", "pci", "mmio+packed", "pci+packed"];

/** The transport kind of `bus`. */
export function transportOf(bus: Bus): Kind {
  return bus.startsWith("pci") ? "pci" : "mmio";
}

/** The ring layout the mock offers on `bus`. */
export function ringOf(bus: Bus): RingLayout {
  return bus.endsWith("+packed") ? "packed" : "split";
}

/** The test registrar of `kind`'s tests: `t(name, fn)` registers `[kind] name`. */
export function busTest(kind: Bus): (name: string, fn: () => Promise<void>) => void {
  const t = (name: string, fn: () => Promise<void>): void => {
    Deno.test(`[${kind}] ${name}`, fn);
  };
  return t;
}

/** The driver's features without VIRTIO_F_RING_RESET: a queue the device breaks stays broken. */
export const NO_RING_RESET: bigint = SUPPORTED_FEATURES & ~featureBit(VIRTIO_F_RING_RESET);

/** A device model plugged into a transport front-end. */
export interface Plugged {
  /** The driver-side transport. */
  transport: Transport;
  /** The device core behind it (violations, status, faults to inject). */
  core: VirtioCore;
}

/**
 * Plugs `model` into an MMIO register file or a PCI function over `memory` (the ring layout
 * of a {@link Bus} is the model's business: see {@link setup}).
 */
export function plug(kind: Bus, model: DeviceModel, memory: SimulatedMemory): Plugged {
  if (transportOf(kind) === "mmio") {
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
 * Builds the mock device (always wrapped in a pass-through {@link ScriptedDevice}), offering
 * the packed ring on a `+packed` bus, plugs it into `kind`, and initialises the driver on it.
 */
export async function setup(
  kind: Bus,
  mockOptions: MockIommuOptions = {},
  driverOptions: VirtioIommuOptions = {},
): Promise<Fixture> {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice(
    ringOf(kind) === "packed" ? { ...mockOptions, packed: true } : mockOptions,
  );
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
  /**
   * Never answer (until {@link ScriptedDevice.releaseHeld}); with `run`, execute the request
   * first (a device that did the work but never said so).
   */
  | { do: "hold"; run?: boolean }
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
  /** Per held head: where its status byte is in the simulated memory (-1: no tail). */
  readonly #heldTail: number[] = [];
  #scratch = new Uint8Array(80);

  /** Device reset: forgets held requests, resets the mock. */
  override reset(): void {
    this.held.length = 0;
    this.#heldTail.length = 0;
    this.inner.reset();
  }

  /** A reset of the request queue forgets the requests held on it (§2.6.1: never answered). */
  override resetQueue(index: number): void {
    if (index === REQUEST_QUEUE) {
      this.held.length = 0;
      this.#heldTail.length = 0;
    }
    super.resetQueue(index);
  }

  /** Holds chain `chain` back (unanswered), remembering where its status byte is. */
  #hold(chain: Chain): void {
    this.held.push(chain.head);
    const n = chain.writableCount;
    const last = n > 0 ? chain.writable[n - 1] : null;
    this.#heldTail.push(
      last !== null && last.length >= TAIL_SIZE ? last.offset + last.length - TAIL_SIZE : -1,
    );
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
        if (action.run) this.inner.handle(chain);
        this.#hold(chain);
        return;
      case "needsReset":
        this.#hold(chain);
        ctx.needsReset("scripted: device needs reset");
        return;
      case "duplicate":
        queue.push(chain.head, this.inner.handle(chain));
        queue.forgeUsed(chain.head, TAIL_SIZE);
        return;
      case "bogusId":
        this.#hold(chain);
        queue.forgeUsed(action.id, TAIL_SIZE);
        return;
    }
  }

  /**
   * Answers the held requests: each as a plain success with `status` written into the tail
   * remembered when it was held (the harness reuses chain objects, so they are not re-read).
   */
  releaseHeld(status = 0): void {
    const ctx = this.context;
    const queue = ctx?.queue(REQUEST_QUEUE);
    if (!ctx || !queue) return;
    const tails = this.#heldTail.splice(0);
    for (const [i, head] of this.held.splice(0).entries()) {
      if (tails[i] >= 0) ctx.memory.bytes[tails[i]] = status;
      queue.push(head, TAIL_SIZE);
    }
    ctx.interrupt(REQUEST_QUEUE);
  }

  /**
   * Writes used element (`id`, `len`) at the request queue's next used position without the
   * device queue's bookkeeping: for ids a correct device would never use.
   */
  rawUsed(id: number, len: number): void {
    this.context?.queue(REQUEST_QUEUE)?.forgeUsed(id, len);
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
