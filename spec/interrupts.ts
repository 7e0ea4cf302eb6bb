/**
 * How a virtio device interrupts (virtio 1.3 §4.1.4.5, §4.1.5.1.2, §4.2.2) and the PCI
 * structures behind it (PCI Local Bus 3.0 §6.2.2 command/status, §6.8.2 MSI-X): the ISR and
 * InterruptStatus bits, VIRTIO_MSI_NO_VECTOR, the INTx disable and status bits, and the MSI-X
 * capability and table layouts. Shared by the driver's transports, the mock's PCI function and
 * the host backends, so all of them read one table. All fields are little-endian.
 *
 * @module
 */

// ---- Why the device interrupted ------------------------------------------------------------

/**
 * ISR status (virtio-pci, §4.1.4.5) and InterruptStatus (virtio-mmio, §4.2.2) bit 0: a used
 * buffer notification, for any of the device's queues.
 */
export const VIRTIO_ISR_QUEUE = 0x1;
/** ISR status / InterruptStatus bit 1: a configuration change notification. */
export const VIRTIO_ISR_CONFIG = 0x2;
/** Both defined ISR / InterruptStatus bits; the rest are reserved. */
export const VIRTIO_ISR_MASK = VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG;

// ---- virtio-pci MSI-X vectors (§4.1.4.3, §4.1.5.1.2) ----------------------------------------

// VIRTIO_MSI_NO_VECTOR is defined with the common config layout in `pci.ts`.
export { VIRTIO_MSI_NO_VECTOR } from "./pci.ts";

// ---- PCI command and status registers (PCI Local Bus 3.0 §6.2.2, §6.2.3) --------------------

// The command and status register offsets are PCI_CFG_COMMAND and PCI_CFG_STATUS in `pci.ts`.
/** Command register bit 10, Interrupt Disable: the function may not assert INTx while set. */
export const PCI_COMMAND_INTX_DISABLE = 1 << 10;
/** Status register bit 3, Interrupt Status: the function's INTx is pending (set or masked). */
export const PCI_STATUS_INTERRUPT = 1 << 3;
// The interrupt pin offset is PCI_CFG_INTERRUPT_PIN in `pci.ts`.

// ---- The MSI-X capability (PCI Local Bus 3.0 §6.8.2) ----------------------------------------

/** Capability ID of MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;
/** Capability ID of MSI (edu has one; virtio-pci uses MSI-X only). */
export const PCI_CAP_ID_MSI = 0x05;
/** Size of the MSI-X capability: ID, next, message control, table and PBA locators. */
export const MSIX_CAP_SIZE = 12;

/** Offsets in the MSI-X capability. */
export const MsixCap = {
  /** le16 Message Control: table size − 1 (bits 10:0), function mask (14), enable (15). */
  MESSAGE_CONTROL: 2,
  /** le32: table offset (bits 31:3) | BIR, the BAR holding the table (bits 2:0). */
  TABLE: 4,
  /** le32: pending bit array offset (bits 31:3) | BIR. */
  PBA: 8,
} as const;

/** Message Control bits 10:0: the table has this value + 1 entries (1..2048). */
export const MSIX_CONTROL_TABLE_SIZE = 0x7ff;
/** Message Control bit 14, Function Mask: every vector is masked while set. */
export const MSIX_CONTROL_MASK_ALL = 1 << 14;
/** Message Control bit 15, MSI-X Enable: the function sends MSI-X messages, not INTx. */
export const MSIX_CONTROL_ENABLE = 1 << 15;
/** The BIR field of the table and PBA locators (bits 2:0); the offset is the rest. */
export const MSIX_BIR_MASK = 0x7;

/** Bytes per MSI-X table entry. */
export const MSIX_ENTRY_SIZE = 16;
/** Offsets in one MSI-X table entry. */
export const MsixEntry = {
  /** le32 message address, low half. */
  ADDRESS_LO: 0,
  /** le32 message address, high half. */
  ADDRESS_HI: 4,
  /** le32 message data. */
  DATA: 8,
  /** le32 vector control: bit 0 masks the vector. */
  VECTOR_CONTROL: 12,
} as const;
/** Vector control bit 0: the vector is masked (a message becomes a pending bit instead). */
export const MSIX_ENTRY_MASKED = 1;

/** Bytes of the pending bit array for `vectors` entries: one bit each, in whole qwords. */
export function msixPbaSize(vectors: number): number {
  return Math.ceil(vectors / 64) * 8;
}
