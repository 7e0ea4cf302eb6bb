/**
 * Interrupts from a virtio device, in two layers. {@link InterruptSource} is what a platform
 * delivers: one level-triggered line (PCI INTx, a virtio-mmio device's line) or a set of
 * message-signalled vectors (MSI-X); the mock, uio_pci_generic and VFIO implement it.
 * {@link VirtioInterrupts} turns that into virtio notifications: it maps MSI-X vectors to the
 * configuration change and to the queues (virtio 1.3 §4.1.4.3, §4.1.5.1.2: written, read back
 * and checked against VIRTIO_MSI_NO_VECTOR), reads and acknowledges the ISR status (§4.1.4.5)
 * or InterruptStatus/InterruptACK (§4.2.2) on a line, and tells used-buffer notifications from
 * configuration changes. It knows nothing of the device type behind the transport.
 *
 * @module
 */

import {
  VIRTIO_ISR_CONFIG,
  VIRTIO_ISR_MASK,
  VIRTIO_ISR_QUEUE,
  VIRTIO_MSI_NO_VECTOR,
} from "../spec/interrupts.ts";
import { type Transport, TransportError } from "./transport.ts";
import { type InterruptSource, MAX_INTERRUPT_VECTORS } from "./interrupt_source.ts";

export {
  type InterruptDelivery,
  type InterruptSource,
  MAX_INTERRUPT_VECTORS,
} from "./interrupt_source.ts";

/** A notification from {@link VirtioInterrupts.next}: used buffers on some queue. */
export const NOTIFY_USED_BUFFER: number = VIRTIO_ISR_QUEUE;
/** A notification from {@link VirtioInterrupts.next}: the device configuration changed. */
export const NOTIFY_CONFIG_CHANGE: number = VIRTIO_ISR_CONFIG;

/**
 * How notifications reach the driver: `"line"` (INTx or virtio-mmio, status register read),
 * `"msix"` (one vector for the configuration, one per queue) or `"msix-shared"` (one for the
 * configuration, one shared by the queues).
 */
export type InterruptMode = "line" | "msix" | "msix-shared";

/** Counters of {@link VirtioInterrupts}. */
export interface InterruptStats {
  /** Interrupts taken from the source (wake-ups of {@link VirtioInterrupts.next}). */
  interrupts: number;
  /** Of those, how many carried a used-buffer notification. */
  usedBuffer: number;
  /** Of those, how many carried a configuration change. */
  configChange: number;
  /** Interrupts with nothing in them (a shared line fired for another device, ISR 0). */
  spurious: number;
}

/** What {@link VirtioInterrupts.listen} calls for each notification. */
export interface NotificationHandlers {
  /** Used buffers may be waiting on any queue the source serves. */
  usedBuffer(): void;
  /** The device configuration changed (or the device set DEVICE_NEEDS_RESET, §2.1.2). */
  configChange(): void;
  /** The source ended the loop (it was closed) without {@link VirtioInterrupts.stop}. */
  ended?(): void;
}

/** A virtio device's interrupts: vector mapping, acknowledgement and decoding. */
export class VirtioInterrupts {
  /** Where the interrupts come from. */
  readonly source: InterruptSource;
  /** Counters since creation. */
  readonly stats: InterruptStats = { interrupts: 0, usedBuffer: 0, configChange: 0, spurious: 0 };
  #transport: Transport;
  #mode: InterruptMode;
  /** Vector bits that carry the configuration change / used buffers (MSI-X). */
  #configBits = 0;
  #queueBits = 0;
  #listening = false;
  /** Bumped by stop(): a loop of an earlier run ends at its next wake-up. */
  #run = 0;

  /**
   * Pairs `transport` with `source`. Vectors need virtio-pci (only it has MSI-X vectors,
   * §4.1.5.1.2); a line works on either transport. Throws {@link TransportError} otherwise and
   * RangeError for a source with no vectors or more than {@link MAX_INTERRUPT_VECTORS}.
   */
  constructor(transport: Transport, source: InterruptSource) {
    const n = source.vectors;
    if (!Number.isInteger(n) || n < 1 || n > MAX_INTERRUPT_VECTORS) {
      throw new RangeError(
        `Interrupt source has ${n} vectors; expected 1 to ${MAX_INTERRUPT_VECTORS}`,
      );
    }
    if (source.delivery === "vectors") {
      if (transport.setConfigVector === undefined || transport.setQueueVector === undefined) {
        throw new TransportError(
          `Cannot use MSI-X vectors on a ${transport.kind} transport: it has no vector registers`,
        );
      }
      this.#mode = "msix";
    } else {
      if (source.vectors !== 1) {
        throw new RangeError(`An interrupt line has 1 vector, not ${source.vectors}`);
      }
      this.#mode = "line";
    }
    this.source = source;
    this.#transport = transport;
  }

  /** How notifications arrive (settled by {@link VirtioInterrupts.assignVectors} for MSI-X). */
  get mode(): InterruptMode {
    return this.#mode;
  }

  /**
   * Maps the configuration change and each of `queues` to MSI-X vectors (virtio 1.3
   * §4.1.5.1.2): vector 0 for the configuration and one vector per queue when the source has
   * enough, else vector 1 shared by the queues. Each mapping is read back; a device that reads
   * back VIRTIO_MSI_NO_VECTOR could not map it, and the next plan is tried (the spec's "retry
   * with fewer vectors"). Call it after FEATURES_OK and before the queues are enabled, after
   * every reset (a reset unmaps every event). Nothing to do on a line. Throws
   * {@link TransportError} when no plan maps (everything is unmapped again then), or when the
   * source has fewer than 2 vectors.
   */
  assignVectors(queues: readonly number[]): void {
    if (this.source.delivery === "line") return;
    const n = this.source.vectors;
    if (n < 2) {
      throw new TransportError(
        `Cannot use MSI-X with ${n} vector: the configuration and the queues need 2 (use INTx)`,
      );
    }
    const plans: InterruptMode[] = n >= queues.length + 1 ? ["msix", "msix-shared"] : [
      "msix-shared",
    ];
    let refusal = "";
    for (const plan of plans) {
      const refused = this.#tryPlan(plan, queues);
      if (refused === null) {
        this.#mode = plan;
        return;
      }
      refusal = refused;
    }
    this.unassignVectors(queues);
    throw new TransportError(`Cannot map MSI-X vectors: ${refusal}`);
  }

  /** Maps per `plan`; returns null on success, else what the device refused. */
  #tryPlan(plan: InterruptMode, queues: readonly number[]): string | null {
    const t = this.#transport;
    const got = t.setConfigVector!(0);
    if (got !== 0) return this.#refusal("the configuration change", 0, got);
    let queueBits = 0;
    for (let i = 0; i < queues.length; i++) {
      const vector = plan === "msix" ? i + 1 : 1;
      const back = t.setQueueVector!(queues[i], vector);
      if (back !== vector) return this.#refusal(`queue ${queues[i]}`, vector, back);
      queueBits |= 1 << vector;
    }
    this.#configBits = 1;
    this.#queueBits = queueBits;
    return null;
  }

  /** Says what a read-back value means: a refusal, or a device that answers nonsense. */
  #refusal(what: string, vector: number, back: number): string {
    if (back === VIRTIO_MSI_NO_VECTOR) {
      return `the device read back VIRTIO_MSI_NO_VECTOR for ${what} (vector ${vector})`;
    }
    throw new TransportError(
      `Cannot map MSI-X vectors: the device read back vector ${back} for ${what}, not ${vector}`,
    );
  }

  /** Unmaps the configuration change and `queues` (VIRTIO_MSI_NO_VECTOR); nothing on a line. */
  unassignVectors(queues: readonly number[]): void {
    if (this.source.delivery === "line") return;
    const t = this.#transport;
    t.setConfigVector!(VIRTIO_MSI_NO_VECTOR);
    for (const q of queues) t.setQueueVector!(q, VIRTIO_MSI_NO_VECTOR);
    this.#configBits = 0;
    this.#queueBits = 0;
  }

  /**
   * Waits for the next interrupt that carries a notification, acknowledges it and resolves
   * with {@link NOTIFY_USED_BUFFER} and/or {@link NOTIFY_CONFIG_CHANGE}; 0 once the source's
   * wait was cancelled or closed. On a line the status register is read (which acknowledges:
   * the ISR read clears it, §4.1.4.5; InterruptACK on MMIO, §4.2.2) and then the line unmasked;
   * an interrupt with status 0 is spurious and waited past. With MSI-X the vector says what
   * happened and the ISR is not read (§4.1.4.5.2).
   */
  async next(): Promise<number> {
    const bits = await this.#nextMasked();
    if (bits !== 0) this.source.unmask();
    return bits;
  }

  /** {@link VirtioInterrupts.next} that leaves a line masked (the caller unmasks it). */
  async #nextMasked(): Promise<number> {
    for (;;) {
      const fired = await this.source.wait();
      if (fired === 0) return 0;
      const bits = this.#take(fired);
      if (bits !== 0) return bits;
      this.source.unmask();
    }
  }

  /**
   * Turns vectors that fired into notifications and acknowledges them; counts the interrupt.
   * Returns 0 for a spurious one. {@link VirtioInterrupts.next} calls it; exposed for tests.
   */
  decode(fired: number): number {
    const bits = this.#take(fired);
    this.source.unmask();
    return bits;
  }

  /** Decodes and acknowledges (reads the status of a line, leaving it masked) and counts. */
  #take(fired: number): number {
    this.stats.interrupts++;
    let bits: number;
    if (this.source.delivery === "line") {
      bits = this.#transport.takeInterrupt() & VIRTIO_ISR_MASK;
    } else {
      bits = ((fired & this.#configBits) !== 0 ? NOTIFY_CONFIG_CHANGE : 0) |
        ((fired & this.#queueBits) !== 0 ? NOTIFY_USED_BUFFER : 0);
    }
    if (bits === 0) this.stats.spurious++;
    if ((bits & NOTIFY_USED_BUFFER) !== 0) this.stats.usedBuffer++;
    if ((bits & NOTIFY_CONFIG_CHANGE) !== 0) this.stats.configChange++;
    return bits;
  }

  /**
   * Calls `handlers` for every notification until {@link VirtioInterrupts.stop}; configuration
   * changes first (a DEVICE_NEEDS_RESET comes as one, §2.1.2). A second call while listening
   * does nothing. A handler that throws does not stop the loop.
   */
  listen(handlers: NotificationHandlers): void {
    if (this.#listening) return;
    this.#listening = true;
    void this.#loop(handlers, this.#run);
  }

  async #loop(handlers: NotificationHandlers, run: number): Promise<void> {
    try {
      while (run === this.#run) {
        // The line stays masked while the handlers run and is unmasked after them: the status
        // read already deasserted it, and anything new meanwhile fires at the unmask (level).
        const bits = await this.#nextMasked();
        if (run !== this.#run) return;
        if (bits === 0) {
          // Not stop(): the source was closed (or cancelled by someone else). Nothing more
          // will come; the driver must poll from now on.
          this.#run++;
          this.#listening = false;
          handlers.ended?.();
          return;
        }
        try {
          if ((bits & NOTIFY_CONFIG_CHANGE) !== 0) handlers.configChange();
          if ((bits & NOTIFY_USED_BUFFER) !== 0) handlers.usedBuffer();
        } catch {
          // The handlers own their errors (they record them for the caller); keep listening.
        }
        this.source.unmask();
      }
    } finally {
      if (run === this.#run) this.#listening = false;
    }
  }

  /** Whether {@link VirtioInterrupts.listen} is running. */
  get listening(): boolean {
    return this.#listening;
  }

  /** Stops {@link VirtioInterrupts.listen}: cancels the source's pending wait. */
  stop(): void {
    this.#run++;
    this.#listening = false;
    this.source.cancel();
  }
}
