/**
 * The ACPI VIOT layout (Virtual I/O Translation table, ACPI 6.4 §5.2.30, and the ACPI standard
 * header, §5.2.6), shared by the driver's parser and the mock's q35 table so both read one
 * table. All fields are little-endian.
 *
 * ```
 * 0   standard ACPI header (36): signature "VIOT" @0, length u32 @4, revision u8 @8,
 *     checksum u8 @9, OEM ID [6] @10, OEM table ID [8] @16, OEM revision u32 @24,
 *     creator ID [4] @28, creator revision u32 @32
 * 36  node_count u16, 38 node_offset u16, 40 reserved [8]          -> 48 bytes
 * node header: type u8 @0, reserved u8 @1, length u16 @2
 * 1 PCI range (24):        endpoint_start u32 @4, segment_start u16 @8, segment_end u16 @10,
 *                          bdf_start u16 @12, bdf_end u16 @14, output_node u16 @16, reserved [6]
 * 2 single MMIO endpoint (24): endpoint u32 @4, base_address u64 @8, output_node u16 @16, [6]
 * 3 virtio-pci IOMMU (16): segment u16 @4, bdf u16 @6, reserved [8]
 * 4 virtio-mmio IOMMU (16): reserved [4] @4, base_address u64 @8
 * ```
 *
 * @module
 */

// ---- The ACPI standard header (ACPI 6.4 §5.2.6) ------------------------------------------

/** ACPI standard table header size. */
export const ACPI_HEADER_SIZE = 36;
/** Offset of the 4-character signature. */
export const ACPI_SIGNATURE = 0;
/** Offset of `length` (u32): bytes of the whole table, header included. */
export const ACPI_LENGTH = 4;
/** Offset of `revision` (u8). */
export const ACPI_REVISION = 8;
/** Offset of the header checksum byte: the table's bytes sum to 0 mod 256. */
export const ACPI_CHECKSUM = 9;
/** Offset of the OEM ID, {@link ACPI_OEM_ID_SIZE} characters. */
export const ACPI_OEM_ID = 10;
/** Length of the OEM ID. */
export const ACPI_OEM_ID_SIZE = 6;
/** Offset of the OEM table ID, {@link ACPI_OEM_TABLE_ID_SIZE} characters. */
export const ACPI_OEM_TABLE_ID = 16;
/** Length of the OEM table ID. */
export const ACPI_OEM_TABLE_ID_SIZE = 8;
/** Offset of the OEM revision (u32). */
export const ACPI_OEM_REVISION = 24;
/** Offset of the creator ID (4 characters). */
export const ACPI_CREATOR_ID = 28;
/** Offset of the creator revision (u32). */
export const ACPI_CREATOR_REVISION = 32;

/** The sum mod 256 of the first `length` bytes of `table`; a valid ACPI table sums to 0. */
export function acpiByteSum(table: Uint8Array, length: number): number {
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + table[i]) & 0xff;
  return sum;
}

// ---- The VIOT header and nodes (ACPI 6.4 §5.2.30) ----------------------------------------

/** VIOT header size: ACPI header + node_count u16 + node_offset u16 + 8 reserved. */
export const VIOT_HEADER_SIZE = 48;
/** Offset of `node_count`. */
export const VIOT_NODE_COUNT = 36;
/** Offset of `node_offset`. */
export const VIOT_NODE_OFFSET = 38;
/** Size of a node header: type u8, reserved u8, length u16. */
export const VIOT_NODE_HEADER_SIZE = 4;
/** Offset of a node's `type` (u8) in its header. */
export const VIOT_NODE_TYPE = 0;
/** Offset of a node's `length` (u16) in its header. */
export const VIOT_NODE_LENGTH = 2;

/** Node type: PCI range. */
export const VIOT_NODE_PCI_RANGE = 1;
/** Node type: single MMIO endpoint. */
export const VIOT_NODE_MMIO = 2;
/** Node type: virtio-pci IOMMU. */
export const VIOT_NODE_VIRTIO_IOMMU_PCI = 3;
/** Node type: virtio-mmio IOMMU. */
export const VIOT_NODE_VIRTIO_IOMMU_MMIO = 4;
/** Size of a PCI range node. */
export const VIOT_PCI_RANGE_SIZE = 24;
/** Size of a single MMIO endpoint node. */
export const VIOT_MMIO_SIZE = 24;
/** Size of a virtio-pci IOMMU node. */
export const VIOT_VIRTIO_IOMMU_PCI_SIZE = 16;
/** Size of a virtio-mmio IOMMU node. */
export const VIOT_VIRTIO_IOMMU_MMIO_SIZE = 16;

/** PCI range node: offset of `endpoint_start` (u32), the endpoint ID of the first device. */
export const VIOT_PCI_RANGE_ENDPOINT_START = 4;
/** PCI range node: offset of `segment_start` (u16). */
export const VIOT_PCI_RANGE_SEGMENT_START = 8;
/** PCI range node: offset of `segment_end` (u16, inclusive). */
export const VIOT_PCI_RANGE_SEGMENT_END = 10;
/** PCI range node: offset of `bdf_start` (u16). */
export const VIOT_PCI_RANGE_BDF_START = 12;
/** PCI range node: offset of `bdf_end` (u16, inclusive). */
export const VIOT_PCI_RANGE_BDF_END = 14;
/** PCI range node: offset of `output_node` (u16), the table offset of its IOMMU node. */
export const VIOT_PCI_RANGE_OUTPUT_NODE = 16;
/** MMIO endpoint node: offset of `endpoint` (u32). */
export const VIOT_MMIO_ENDPOINT = 4;
/** MMIO endpoint node: offset of `base_address` (u64). */
export const VIOT_MMIO_BASE_ADDRESS = 8;
/** MMIO endpoint node: offset of `output_node` (u16). */
export const VIOT_MMIO_OUTPUT_NODE = 16;
/** virtio-pci IOMMU node: offset of `segment` (u16). */
export const VIOT_VIRTIO_IOMMU_PCI_SEGMENT = 4;
/** virtio-pci IOMMU node: offset of `bdf` (u16). */
export const VIOT_VIRTIO_IOMMU_PCI_BDF = 6;
/** virtio-mmio IOMMU node: offset of `base_address` (u64). */
export const VIOT_VIRTIO_IOMMU_MMIO_BASE_ADDRESS = 8;
