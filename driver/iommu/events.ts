/**
 * Fault reports from the event queue (virtio 1.3 §5.13.7). Decoding is pure and never trusts
 * the device: a report with non-zero `reserved` is ignored (MUST), undefined flags and
 * `reserved1` are ignored, an unknown reason reads as UNKNOWN (SHOULD).
 *
 * @module
 */

import {
  FAULT_ADDRESS,
  FAULT_ENDPOINT,
  FAULT_FLAGS,
  FAULT_REASON,
  FAULT_SIZE,
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_FAULT_R_DOMAIN,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
} from "../../spec/iommu.ts";

/** Why the device faulted an access. */
export type FaultReason = "UNKNOWN" | "DOMAIN" | "MAPPING";

/** A decoded fault report. */
export interface FaultEvent {
  /** DOMAIN: the endpoint is not attached; MAPPING: no mapping or bad permission. */
  reason: FaultReason;
  /** The access was a read. */
  read: boolean;
  /** The access was a write. */
  write: boolean;
  /** The endpoint that made the access. */
  endpoint: number;
  /** The faulting address, or null when the device did not supply one (no F_ADDRESS). */
  address: bigint | null;
}

/**
 * Decodes the `length` bytes the device wrote at `offset`, or returns null for a report the
 * driver must ignore (reserved bytes set) or cannot use (shorter than the 24-byte format).
 */
export function decodeFault(view: DataView, offset: number, length: number): FaultEvent | null {
  if (length < FAULT_SIZE) return null;
  // The first le32 is reason (8 bits) then reserved[3]: the reserved bytes must be zero.
  if ((view.getUint32(offset, true) & 0xffff_ff00) !== 0) return null;
  const reasonCode = view.getUint8(offset + FAULT_REASON);
  const flags = view.getUint32(offset + FAULT_FLAGS, true);
  const reason: FaultReason = reasonCode === VIRTIO_IOMMU_FAULT_R_DOMAIN
    ? "DOMAIN"
    : reasonCode === VIRTIO_IOMMU_FAULT_R_MAPPING
    ? "MAPPING"
    : "UNKNOWN";
  const hasAddress = (flags & VIRTIO_IOMMU_FAULT_F_ADDRESS) !== 0;
  return {
    reason,
    read: (flags & VIRTIO_IOMMU_FAULT_F_READ) !== 0,
    write: (flags & VIRTIO_IOMMU_FAULT_F_WRITE) !== 0,
    endpoint: view.getUint32(offset + FAULT_ENDPOINT, true),
    address: hasAddress
      ? (BigInt(view.getUint32(offset + FAULT_ADDRESS + 4, true)) << 32n) |
        BigInt(view.getUint32(offset + FAULT_ADDRESS, true))
      : null,
  };
}
