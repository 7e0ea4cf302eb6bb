/**
 * The event queue (virtio 1.3 §5.13.7): filled with device-writable fault buffers, each
 * re-posted as soon as its report has been read. Reports are decoded by {@link decodeFault}
 * and handed to a callback; malformed ones are counted and dropped, as the spec says.
 *
 * @module
 */

import type { DmaAllocator, DmaRegion } from "../../transport/dma.ts";
import type { Transport } from "../../transport/transport.ts";
import { createVirtqueue } from "../virtio/create_queue.ts";
import type { RingLayout, Virtqueue } from "../virtio/virtqueue.ts";
import { decodeFault, type FaultEvent } from "./events.ts";
import { EVENT_QUEUE, FAULT_SIZE } from "../../spec/iommu.ts";

/** Bytes per event buffer: one fault report, rounded to 32 for alignment. */
const EVENT_BUFFER_SIZE = 32;

/** The event virtqueue and its buffers. */
export class EventQueue {
  /** The underlying virtqueue (split or packed). */
  readonly vq: Virtqueue;
  /** Reports ignored because they were malformed (reserved bits set, too short). */
  ignored = 0;
  #transport: Transport;
  #dma: DmaAllocator;
  #buffers: DmaRegion;
  #headToBuffer: Int32Array;
  #onFault: (event: FaultEvent) => void;
  /** Whether used-buffer interrupts were asked for ({@link EventQueue.enableInterrupts}). */
  #interrupts = false;

  /** Creates the queue with one buffer per ring entry; `onFault` receives each report. */
  constructor(
    transport: Transport,
    dma: DmaAllocator,
    size: number,
    eventIdx: boolean,
    onFault: (event: FaultEvent) => void,
    layout: RingLayout = "split",
  ) {
    this.#transport = transport;
    this.#dma = dma;
    this.#onFault = onFault;
    this.vq = createVirtqueue(layout, EVENT_QUEUE, size, dma, { eventIdx, indirect: false });
    this.#buffers = dma.alloc(size * EVENT_BUFFER_SIZE, 4096);
    this.#headToBuffer = new Int32Array(size).fill(-1);
  }

  /** Hands the ring to the device and posts every buffer (before DRIVER_OK: no notify yet). */
  enable(): void {
    this.#transport.enableQueue(EVENT_QUEUE, this.vq.size, this.vq.addresses);
    this.#fill();
  }

  #fill(): void {
    for (let i = 0; i < this.vq.size; i++) this.#post(i);
    this.vq.publish();
  }

  #post(buffer: number): void {
    const offset = buffer * EVENT_BUFFER_SIZE;
    // Zero the buffer so a short write can never leave a stale report behind.
    this.#buffers.bytes.fill(0, offset, offset + FAULT_SIZE);
    const head = this.vq.add2(
      0,
      0,
      0,
      this.#buffers.addrLo + offset,
      this.#buffers.addrHi,
      FAULT_SIZE,
    );
    if (head >= 0) this.#headToBuffer[head] = buffer;
  }

  /** Tells the device the buffers are there (after DRIVER_OK). */
  kick(): void {
    this.#transport.notify(EVENT_QUEUE);
  }

  /**
   * Asks the device to interrupt for every report (virtio 1.3 §2.7.10), then reads what came
   * before the enable, which raised none. Returns how many reports that read found.
   */
  enableInterrupts(): number {
    this.#interrupts = true;
    return this.vq.setInterrupts(true) ? 0 : this.collect();
  }

  /**
   * Reads every report the device has posted, delivers the valid ones, and re-posts their
   * buffers. Returns how many reports were read. Ring-protocol violations throw
   * (VirtqueueError); the caller decides what a broken device means.
   */
  collect(): number {
    let n = 0;
    while (this.vq.hasUsed()) {
      const head = this.vq.popUsed();
      if (head < 0) break;
      const buffer = this.#headToBuffer[head];
      this.#headToBuffer[head] = -1;
      n++;
      if (buffer < 0) continue;
      const event = decodeFault(this.#buffers.view, buffer * EVENT_BUFFER_SIZE, this.vq.usedLen);
      if (event === null) this.ignored++;
      else this.#onFault(event);
      this.#post(buffer);
    }
    if (n > 0 && this.vq.publish()) this.kick();
    return n;
  }

  /**
   * After a device or queue reset: puts the ring back to its initial state (call enable()
   * again). A queue that took interrupts asks for them again: a ring reset clears the ring's
   * suppression state (§2.6.1), and a driver that sleeps on the interrupt would never wake.
   */
  restart(): void {
    this.vq.reset();
    this.#headToBuffer.fill(-1);
    if (this.#interrupts) this.vq.setInterrupts(true);
  }

  /** Frees the DMA memory. */
  destroy(): void {
    this.vq.destroy();
    this.#dma.free(this.#buffers);
  }
}
