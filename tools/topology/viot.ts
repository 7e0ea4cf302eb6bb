/** VIOT builders (the ACPI 6.4 §5.2.30 layout) and QEMU's q35 VIOT, for topology tests. */

/** A VIOT node header followed by `body` (the 4-byte header is written here). */
function viotNode(type: number, length: number, fill: (view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint16(2, length, true);
  fill(view);
  return bytes;
}

/** PCI range node (type 1, 24 bytes). */
export function viotPciRange(
  r: {
    endpointStart: number;
    segmentStart?: number;
    segmentEnd?: number;
    bdfStart: number;
    bdfEnd: number;
    outputNode: number;
  },
): Uint8Array {
  return viotNode(1, 24, (v) => {
    v.setUint32(4, r.endpointStart, true);
    v.setUint16(8, r.segmentStart ?? 0, true);
    v.setUint16(10, r.segmentEnd ?? 0, true);
    v.setUint16(12, r.bdfStart, true);
    v.setUint16(14, r.bdfEnd, true);
    v.setUint16(16, r.outputNode, true);
  });
}

/** Single MMIO endpoint node (type 2, 24 bytes). */
export function viotMmioEndpoint(
  r: { endpoint: number; baseAddress: bigint; outputNode: number },
): Uint8Array {
  return viotNode(2, 24, (v) => {
    v.setUint32(4, r.endpoint, true);
    v.setBigUint64(8, r.baseAddress, true);
    v.setUint16(16, r.outputNode, true);
  });
}

/** virtio-pci IOMMU node (type 3, 16 bytes). */
export function viotPciIommu(r: { segment?: number; bdf: number }): Uint8Array {
  return viotNode(3, 16, (v) => {
    v.setUint16(4, r.segment ?? 0, true);
    v.setUint16(6, r.bdf, true);
  });
}

/** virtio-mmio IOMMU node (type 4, 16 bytes). */
export function viotMmioIommu(r: { baseAddress: bigint }): Uint8Array {
  return viotNode(4, 16, (v) => v.setBigUint64(8, r.baseAddress, true));
}

/** Recomputes the ACPI checksum byte (offset 9) over the `length` field's bytes. */
export function fixChecksum(table: Uint8Array): Uint8Array {
  const length = Math.min(
    new DataView(table.buffer, table.byteOffset).getUint32(4, true),
    table.length,
  );
  table[9] = 0;
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + table[i]) & 0xff;
  table[9] = (256 - sum) & 0xff;
  return table;
}

/** A whole VIOT: 48-byte header, then the nodes at offset 48 (unless `nodeOffset` says else). */
export function buildViot(
  nodes: Uint8Array[],
  options: { nodeCount?: number; nodeOffset?: number } = {},
): Uint8Array {
  const bodyLength = nodes.reduce((n, node) => n + node.length, 0);
  const table = new Uint8Array(48 + bodyLength);
  const view = new DataView(table.buffer);
  table.set([..."VIOT"].map((c) => c.charCodeAt(0)), 0);
  view.setUint32(4, table.length, true);
  table[8] = 0; // revision, as QEMU writes it
  table.set([..."BOCHS "].map((c) => c.charCodeAt(0)), 10);
  table.set([..."BXPC    "].map((c) => c.charCodeAt(0)), 16);
  view.setUint32(24, 1, true);
  table.set([..."BXPC"].map((c) => c.charCodeAt(0)), 28);
  view.setUint32(32, 1, true);
  view.setUint16(36, options.nodeCount ?? nodes.length, true);
  view.setUint16(38, options.nodeOffset ?? 48, true);
  let at = 48;
  for (const node of nodes) {
    table.set(node, at);
    at += node.length;
  }
  return fixChecksum(table);
}

/**
 * QEMU's default q35 VIOT (88 bytes, qemu-guest.md): a virtio-pci IOMMU node at BDF 0x10
 * (00:02.0) at offset 48, then one PCI range for root bus 0 (BDF 0x0000..0x00ff, endpoint_start
 * 0) whose output node is the IOMMU; node_count counts both.
 */
export function qemuQ35Viot(): Uint8Array {
  return buildViot([
    viotPciIommu({ bdf: 0x10 }),
    viotPciRange({ endpointStart: 0, bdfStart: 0x0000, bdfEnd: 0x00ff, outputNode: 48 }),
  ]);
}
