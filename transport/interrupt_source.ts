/**
 * What a platform delivers when a device interrupts, as userspace sees it: one level-triggered
 * line (PCI INTx, a virtio-mmio device's line) or a set of message-signalled vectors (MSI-X).
 * The mock, uio_pci_generic and VFIO implement it; `interrupts.ts` turns it into virtio
 * notifications. Kept apart so the `Transport` interface can name it without a cycle.
 *
 * @module
 */

/**
 * How a source delivers interrupts: `"line"`, one level-triggered line shared by every event,
 * whose cause the device's status register tells (ISR status, InterruptStatus); `"vectors"`,
 * message-signalled vectors (MSI-X), each mapped to its own events, with no status to read.
 */
export type InterruptDelivery = "line" | "vectors";

/** Most vectors a source may have: {@link InterruptSource.wait} reports them as 32 bits. */
export const MAX_INTERRUPT_VECTORS = 32;

/** A platform's interrupts for one device, as userspace receives them. */
export interface InterruptSource {
  /** A shared line or message-signalled vectors. */
  readonly delivery: InterruptDelivery;
  /** Vectors the source delivers: 1 for a line, the enabled MSI-X vectors otherwise (≤ 32). */
  readonly vectors: number;
  /**
   * Resolves once at least one vector fired since the previous call: a mask with bit `v` set
   * for each vector `v` that fired (1 for a line). Resolves 0 when {@link InterruptSource.cancel}
   * or {@link InterruptSource.close} ends the wait. One wait at a time.
   */
  wait(): Promise<number>;
  /** Ends a pending {@link InterruptSource.wait} with 0; the next call waits again. */
  cancel(): void;
  /**
   * Lets a line fire again that the platform masked when it fired (uio_pci_generic and VFIO
   * mask INTx in their interrupt handlers). Called after the device's status was read, which
   * deasserts the line. Does nothing for vectors.
   */
  unmask(): void;
  /** Releases the source; waits resolve 0 from now on. */
  close(): void;
}
