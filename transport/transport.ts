/**
 * The transport interface: the primitives a virtio driver needs from a transport and nothing
 * more (virtio 1.3 §4). Procedures such as device initialisation are written once over it in
 * `driver/`; virtio-mmio and virtio-pci implement it and differ only in where registers are.
 *
 * @module
 */

import type { InterruptSource } from "./interrupt_source.ts";

/** Which transport a {@link Transport} speaks. */
export type TransportKind = "mmio" | "pci";

/**
 * Device-visible addresses of one virtqueue's three parts, as 32-bit halves: descriptor area,
 * driver area and device area (split: descriptor table, avail ring, used ring, §2.7; packed:
 * descriptor ring and the driver and device event suppression structures, §2.8).
 */
export interface QueueAddresses {
  /** Descriptor area (table or ring), low half. */
  descLo: number;
  /** Descriptor area, high half. */
  descHi: number;
  /** Driver area (avail ring, or driver event suppression), low half. */
  driverLo: number;
  /** Driver area (avail ring), high half. */
  driverHi: number;
  /** Device area (used ring, or device event suppression), low half. */
  deviceLo: number;
  /** Device area (used ring), high half. */
  deviceHi: number;
}

/** Thrown by a transport that cannot drive what it found (wrong magic, legacy device, …). */
export class TransportError extends Error {
  /** Creates the error with a message saying what was found. */
  constructor(message: string) {
    super(message);
    this.name = "TransportError";
  }
}

/** The register-level primitives of a virtio transport. */
export interface Transport {
  /** Which transport this is. */
  readonly kind: TransportKind;
  /** The virtio device ID (23 for virtio-iommu). */
  readonly deviceId: number;

  /** Reads the device status byte (virtio 1.3 §2.1). */
  getStatus(): number;
  /** Writes the device status byte; writing 0 starts a reset (virtio 1.3 §2.1). */
  setStatus(status: number): void;

  /** Reads the 64 feature bits the device offers (selects 0 and 1). */
  readDeviceFeatures(): bigint;
  /** Writes the 64 feature bits the driver accepts (selects 0 and 1). */
  writeDriverFeatures(features: bigint): void;

  /** Reads the configuration generation counter (virtio 1.3 §2.5.1). */
  configGeneration(): number;
  /** Reads an 8-bit device config field at `offset` from the start of device config. */
  readConfig8(offset: number): number;
  /** Reads an aligned 16-bit device config field. */
  readConfig16(offset: number): number;
  /** Reads an aligned 32-bit device config field (or one half of a 64-bit one). */
  readConfig32(offset: number): number;
  /** Writes an 8-bit device config field. */
  writeConfig8(offset: number, value: number): void;

  /** The maximum size of queue `index`; 0 when the queue does not exist. */
  maxQueueSize(index: number): number;
  /**
   * Programs queue `index` with `size` entries (1..32768, no larger than the device's maximum;
   * the ring layout decides whether it must be a power of two) at `addresses` and enables it.
   * The queue must be disabled (as it is after a device or queue reset); throws
   * {@link TransportError} otherwise.
   */
  enableQueue(index: number, size: number, addresses: QueueAddresses): void;
  /** Sends an available-buffer notification for queue `index`. Hot path: allocation-free. */
  notify(index: number): void;
  /**
   * Writes 1 to queue `index`'s reset register (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1; PCI
   * `queue_reset` §4.1.4.3, MMIO QueueReset §4.2.2): the device stops using the queue and
   * returns it to its default state. Only once VIRTIO_F_RING_RESET is negotiated; the waiting
   * is done by the driver (`resetVirtqueue()`).
   */
  resetQueue(index: number): void;
  /** Reads queue `index`'s reset register: true (1) while a queue reset is in progress. */
  queueResetPending(index: number): boolean;
  /** Reads queue `index`'s enable register (PCI `queue_enable`, MMIO QueueReady). */
  queueEnabled(index: number): boolean;
  /**
   * Reads and acknowledges the interrupt status (MMIO InterruptStatus + InterruptACK, PCI ISR
   * read-to-clear). Bit 0: used buffer; bit 1: configuration change.
   */
  takeInterrupt(): number;

  /**
   * How the device's interrupts reach this process (an INTx line through uio_pci_generic,
   * MSI-X vectors through VFIO, the mock's line), or null/absent: the driver then polls.
   */
  readonly interrupts?: InterruptSource | null;
  /**
   * Maps configuration-change notifications to MSI-X `vector` (VIRTIO_MSI_NO_VECTOR unmaps)
   * and returns the vector the device reads back (virtio 1.3 §4.1.4.3, §4.1.5.1.2). Only
   * transports with MSI-X vectors (virtio-pci) have it.
   */
  setConfigVector?(vector: number): number;
  /**
   * Maps queue `index`'s used-buffer notifications to MSI-X `vector` before the queue is
   * enabled and returns the vector the device reads back. Only virtio-pci has it.
   */
  setQueueVector?(index: number, vector: number): number;
}
