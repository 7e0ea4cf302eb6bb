/**
 * The ACPI VIOT (ACPI 6.4 §5.2.30) that QEMU's q35 machine writes for `-device
 * virtio-iommu-pci` at 00:02.0: a virtio-pci IOMMU node (type 3) at offset 48, then one PCI
 * range node (type 1) for segment 0, BDFs 0x00-0xff (here up to `bdfEnd`), endpoint_start 0,
 * whose output node is the IOMMU. So the endpoint ID is the BDF. 88 bytes, as in the guest.
 *
 * @module
 */

/** VIOT header size: ACPI header (36) + node_count, node_offset, reserved[8]. */
const HEADER_SIZE = 48;
/** virtio-pci IOMMU node: type u8, reserved u8, length u16, segment u16 @4, bdf u16 @6, [8]. */
const PCI_IOMMU_SIZE = 16;
/** PCI range node: endpoint_start u32 @4, segment_start/end u16 @8/@10, bdf_start/end u16
 * @12/@14, output_node u16 @16, reserved[6]. */
const PCI_RANGE_SIZE = 24;

/** Options of {@link q35Viot}. */
export interface Q35ViotOptions {
  /** The IOMMU's BDF (default 0x10, 00:02.0). */
  iommuBdf?: number;
  /** Last BDF of the range (default 0xff, root bus 0 only, as QEMU writes it). */
  bdfEnd?: number;
}

/** Builds the table, checksum included. */
export function q35Viot(options: Q35ViotOptions = {}): Uint8Array {
  const table = new Uint8Array(HEADER_SIZE + PCI_IOMMU_SIZE + PCI_RANGE_SIZE);
  const view = new DataView(table.buffer);
  const ascii = (text: string, at: number): void => {
    for (let i = 0; i < text.length; i++) table[at + i] = text.charCodeAt(i);
  };
  ascii("VIOT", 0);
  view.setUint32(4, table.length, true);
  table[8] = 0; // revision, as QEMU writes it
  ascii("BOCHS ", 10);
  ascii("BXPC    ", 16);
  view.setUint32(24, 1, true);
  ascii("BXPC", 28);
  view.setUint32(32, 1, true);
  view.setUint16(36, 2, true); // node_count
  view.setUint16(38, HEADER_SIZE, true); // node_offset
  // Node at 48: virtio-pci IOMMU.
  let at = HEADER_SIZE;
  view.setUint8(at, 3);
  view.setUint16(at + 2, PCI_IOMMU_SIZE, true);
  view.setUint16(at + 4, 0, true);
  view.setUint16(at + 6, options.iommuBdf ?? 0x10, true);
  // Node at 64: PCI range → node 48.
  at += PCI_IOMMU_SIZE;
  view.setUint8(at, 1);
  view.setUint16(at + 2, PCI_RANGE_SIZE, true);
  view.setUint32(at + 4, 0, true);
  view.setUint16(at + 8, 0, true);
  view.setUint16(at + 10, 0, true);
  view.setUint16(at + 12, 0, true);
  view.setUint16(at + 14, options.bdfEnd ?? 0xff, true);
  view.setUint16(at + 16, HEADER_SIZE, true);
  // ACPI checksum: all bytes sum to 0 mod 256.
  let sum = 0;
  for (const byte of table) sum = (sum + byte) & 0xff;
  table[9] = (256 - sum) & 0xff;
  return table;
}
