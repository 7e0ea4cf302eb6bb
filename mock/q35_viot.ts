/**
 * The ACPI VIOT (ACPI 6.4 §5.2.30) that QEMU's q35 machine writes for `-device
 * virtio-iommu-pci` at 00:02.0: a virtio-pci IOMMU node (type 3) at offset 48, then one PCI
 * range node (type 1) for segment 0, BDFs 0x00-0xff (here up to `bdfEnd`), endpoint_start 0,
 * whose output node is the IOMMU. So the endpoint ID is the BDF. 88 bytes, as in the guest.
 *
 * @module
 */

import {
  ACPI_CHECKSUM,
  ACPI_CREATOR_ID,
  ACPI_CREATOR_REVISION,
  ACPI_LENGTH,
  ACPI_OEM_ID,
  ACPI_OEM_REVISION,
  ACPI_OEM_TABLE_ID,
  ACPI_REVISION,
  ACPI_SIGNATURE,
  acpiByteSum,
  VIOT_HEADER_SIZE,
  VIOT_NODE_COUNT,
  VIOT_NODE_LENGTH,
  VIOT_NODE_OFFSET,
  VIOT_NODE_PCI_RANGE,
  VIOT_NODE_TYPE,
  VIOT_NODE_VIRTIO_IOMMU_PCI,
  VIOT_PCI_RANGE_BDF_END,
  VIOT_PCI_RANGE_BDF_START,
  VIOT_PCI_RANGE_ENDPOINT_START,
  VIOT_PCI_RANGE_OUTPUT_NODE,
  VIOT_PCI_RANGE_SEGMENT_END,
  VIOT_PCI_RANGE_SEGMENT_START,
  VIOT_PCI_RANGE_SIZE,
  VIOT_VIRTIO_IOMMU_PCI_BDF,
  VIOT_VIRTIO_IOMMU_PCI_SEGMENT,
  VIOT_VIRTIO_IOMMU_PCI_SIZE,
} from "../spec/viot.ts";

/** Options of {@link q35Viot}. */
export interface Q35ViotOptions {
  /** The IOMMU's BDF (default 0x10, 00:02.0). */
  iommuBdf?: number;
  /** Last BDF of the range (default 0xff, root bus 0 only, as QEMU writes it). */
  bdfEnd?: number;
}

/** Builds the table, checksum included. */
export function q35Viot(options: Q35ViotOptions = {}): Uint8Array {
  const table = new Uint8Array(
    VIOT_HEADER_SIZE + VIOT_VIRTIO_IOMMU_PCI_SIZE + VIOT_PCI_RANGE_SIZE,
  );
  const view = new DataView(table.buffer);
  const ascii = (text: string, at: number): void => {
    for (let i = 0; i < text.length; i++) table[at + i] = text.charCodeAt(i);
  };
  ascii("VIOT", ACPI_SIGNATURE);
  view.setUint32(ACPI_LENGTH, table.length, true);
  table[ACPI_REVISION] = 0; // as QEMU writes it
  ascii("BOCHS ", ACPI_OEM_ID);
  ascii("BXPC    ", ACPI_OEM_TABLE_ID);
  view.setUint32(ACPI_OEM_REVISION, 1, true);
  ascii("BXPC", ACPI_CREATOR_ID);
  view.setUint32(ACPI_CREATOR_REVISION, 1, true);
  view.setUint16(VIOT_NODE_COUNT, 2, true);
  view.setUint16(VIOT_NODE_OFFSET, VIOT_HEADER_SIZE, true);
  // Node at 48: virtio-pci IOMMU.
  const iommu = VIOT_HEADER_SIZE;
  view.setUint8(iommu + VIOT_NODE_TYPE, VIOT_NODE_VIRTIO_IOMMU_PCI);
  view.setUint16(iommu + VIOT_NODE_LENGTH, VIOT_VIRTIO_IOMMU_PCI_SIZE, true);
  view.setUint16(iommu + VIOT_VIRTIO_IOMMU_PCI_SEGMENT, 0, true);
  view.setUint16(iommu + VIOT_VIRTIO_IOMMU_PCI_BDF, options.iommuBdf ?? 0x10, true);
  // Node at 64: PCI range → node 48.
  const range = iommu + VIOT_VIRTIO_IOMMU_PCI_SIZE;
  view.setUint8(range + VIOT_NODE_TYPE, VIOT_NODE_PCI_RANGE);
  view.setUint16(range + VIOT_NODE_LENGTH, VIOT_PCI_RANGE_SIZE, true);
  view.setUint32(range + VIOT_PCI_RANGE_ENDPOINT_START, 0, true);
  view.setUint16(range + VIOT_PCI_RANGE_SEGMENT_START, 0, true);
  view.setUint16(range + VIOT_PCI_RANGE_SEGMENT_END, 0, true);
  view.setUint16(range + VIOT_PCI_RANGE_BDF_START, 0, true);
  view.setUint16(range + VIOT_PCI_RANGE_BDF_END, options.bdfEnd ?? 0xff, true);
  view.setUint16(range + VIOT_PCI_RANGE_OUTPUT_NODE, iommu, true);
  // ACPI checksum: all bytes sum to 0 mod 256.
  table[ACPI_CHECKSUM] = (256 - acpiByteSum(table, table.length)) & 0xff;
  return table;
}
