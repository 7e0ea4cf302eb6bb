/**
 * The platform side of the mock's interrupts: {@link MockInterruptSource}, what a driver waits
 * on (the transport's `InterruptSource`), and {@link LevelLine}, a level-triggered line that
 * the platform masks when it delivers it, as uio_pci_generic (the INTx disable bit) and VFIO
 * (automasked INTx) do, until the driver unmasks it. The device front-ends decide when their
 * line is asserted or a vector fires; this file only delivers.
 *
 * @module
 */

import type { InterruptDelivery, InterruptSource } from "../transport/interrupt_source.ts";

/** An in-process {@link InterruptSource}: the device side calls {@link MockInterruptSource.fire}. */
export class MockInterruptSource implements InterruptSource {
  /** A shared line or message-signalled vectors. */
  readonly delivery: InterruptDelivery;
  /** Vectors delivered (1 for a line). */
  readonly vectors: number;
  /** Interrupts fired by the device side since creation (vectors count one each). */
  fired = 0;
  /** Wake-ups handed to a waiting driver (several fires before a wait make one). */
  delivered = 0;
  #pending = 0;
  #waiter: ((bits: number) => void) | null = null;
  #closed = false;
  #onUnmask: (() => void) | null;

  /** A source of `vectors` vectors; `onUnmask` runs when the driver unmasks a line. */
  constructor(delivery: InterruptDelivery, vectors: number, onUnmask?: () => void) {
    this.delivery = delivery;
    this.vectors = vectors;
    this.#onUnmask = onUnmask ?? null;
  }

  /** Device side: vector bits `bits` fired (1 for a line). Delivered to the waiter, or kept. */
  fire(bits: number): void {
    if (this.#closed) return;
    this.fired++;
    this.#pending |= bits;
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      const pending = this.#pending;
      this.#pending = 0;
      this.delivered++;
      waiter(pending);
    }
  }

  /** Resolves with the vectors fired since the last call, at once when some already did. */
  wait(): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    if (this.#pending !== 0) {
      const pending = this.#pending;
      this.#pending = 0;
      this.delivered++;
      return Promise.resolve(pending);
    }
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  /** Ends a pending wait with 0. */
  cancel(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.(0);
  }

  /** The driver re-enables a line the platform masked. */
  unmask(): void {
    this.#onUnmask?.();
  }

  /** Ends every wait with 0 from now on. */
  close(): void {
    this.#closed = true;
    this.cancel();
  }

  /** Whether {@link MockInterruptSource.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }
}

/**
 * A level-triggered line delivered to a {@link MockInterruptSource}: while it is asserted and
 * not masked it fires once and is masked (the platform's handler masks it, as uio_pci_generic
 * and VFIO do); the driver's unmask fires it again if it is still asserted, so an interrupt is
 * never lost and never repeats while the driver handles it.
 */
export class LevelLine {
  /** Where the line is delivered, or null while no driver listens. */
  source: MockInterruptSource | null = null;
  #masked = false;

  /** Whether the platform masked the line (it fired and was not unmasked yet). */
  get masked(): boolean {
    return this.#masked;
  }

  /** Masks or unmasks the line (INTx disable bit; a platform's mask). */
  setMasked(masked: boolean): void {
    this.#masked = masked;
  }

  /** Re-evaluates the line: fires and masks when `asserted` and unmasked. */
  update(asserted: boolean): void {
    if (!asserted || this.#masked || this.source === null) return;
    this.#masked = true;
    this.source.fire(1);
  }
}
