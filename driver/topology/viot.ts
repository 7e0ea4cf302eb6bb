/**
 * ACPI VIOT (Virtual I/O Translation table, ACPI 6.4 §5.2.30) parser: which paravirtual IOMMU
 * manages which PCI ranges and MMIO endpoints, and with which endpoint IDs.
 *
 * Layout (little-endian):
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
 * `output_node` is the byte offset, from the start of the table, of an IOMMU node (type 3 or 4).
 * A PCI handle names a device by the BDF the OS sees when it first parses config space after
 * boot, i.e. before any renumbering (seed 000). The endpoint ID of (segment, bdf) in a range is
 * `((segment − segment_start) << 16) + bdf − bdf_start + endpoint_start`.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";

/** ACPI standard table header size. */
export const ACPI_HEADER_SIZE = 36;
/** Offset of the header checksum byte. */
export const ACPI_CHECKSUM = 9;
/** VIOT header size: ACPI header + node_count u16 + node_offset u16 + 8 reserved. */
export const VIOT_HEADER_SIZE = 48;
/** Offset of `node_count`. */
export const VIOT_NODE_COUNT = 36;
/** Offset of `node_offset`. */
export const VIOT_NODE_OFFSET = 38;
/** Size of a node header: type u8, reserved u8, length u16. */
export const VIOT_NODE_HEADER_SIZE = 4;

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

/** A paravirtual IOMMU described by the table, identified by its node offset. */
export type ViotIommu =
  | {
    /** Discriminant: a virtio-pci IOMMU. */
    kind: "virtio-pci";
    /** Byte offset of the node in the table (what `output_node` refers to). */
    offset: number;
    /** PCI segment of the IOMMU. */
    segment: number;
    /** BDF of the IOMMU at OS hand-off. */
    bdf: number;
  }
  | {
    /** Discriminant: a virtio-mmio IOMMU. */
    kind: "virtio-mmio";
    /** Byte offset of the node in the table. */
    offset: number;
    /** Base address of the IOMMU's MMIO registers. */
    baseAddress: bigint;
  };

/** A PCI range node: devices `segmentStart..segmentEnd` × `bdfStart..bdfEnd` behind an IOMMU. */
export interface ViotPciRange {
  /** Byte offset of the node. */
  offset: number;
  /** Endpoint ID of (segmentStart, bdfStart). */
  endpointStart: number;
  /** First PCI segment, inclusive. */
  segmentStart: number;
  /** Last PCI segment, inclusive. */
  segmentEnd: number;
  /** First BDF (hand-off numbering), inclusive. */
  bdfStart: number;
  /** Last BDF (hand-off numbering), inclusive. */
  bdfEnd: number;
  /** Offset of the IOMMU node that translates this range. */
  outputNode: number;
}

/** A single MMIO endpoint node. */
export interface ViotMmioEndpoint {
  /** Byte offset of the node. */
  offset: number;
  /** Endpoint ID. */
  endpoint: number;
  /** Base address of the endpoint's MMIO registers. */
  baseAddress: bigint;
  /** Offset of the IOMMU node that translates this endpoint. */
  outputNode: number;
}

/** The parsed VIOT. */
export interface Viot {
  /** Table revision. */
  revision: number;
  /** OEM ID (6 characters, padding kept). */
  oemId: string;
  /** OEM table ID (8 characters). */
  oemTableId: string;
  /** IOMMU nodes, in table order. */
  iommus: ViotIommu[];
  /** PCI range nodes, in table order (first match wins). */
  pciRanges: ViotPciRange[];
  /** MMIO endpoint nodes, in table order. */
  mmioEndpoints: ViotMmioEndpoint[];
  /** Nodes of unknown type that were skipped. */
  skipped: number;
}

/** Options of {@link parseViot}. */
export interface ParseViotOptions {
  /** Verify the header checksum (all `length` bytes sum to 0 mod 256). Default true. */
  verifyChecksum?: boolean;
}

/**
 * Parses a VIOT from its bytes (for example `/sys/firmware/acpi/tables/VIOT`). Every length
 * and offset is bounds-checked; malformed input throws {@link TopologyError} and nothing else.
 *
 * @example
 * ```ts
 * import { parseViot } from "@viommu/viommu";
 * try {
 *   parseViot(new Uint8Array(10));
 * } catch (e) {
 *   console.assert((e as { code: string }).code === "truncated");
 * }
 * ```
 */
export function parseViot(bytes: Uint8Array, options: ParseViotOptions = {}): Viot {
  if (bytes.length < ACPI_HEADER_SIZE) {
    throw new TopologyError(
      "viot",
      "truncated",
      `${bytes.length} bytes is shorter than the ${ACPI_HEADER_SIZE}-byte ACPI header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const signature = ascii(bytes, 0, 4);
  if (signature !== "VIOT") {
    throw new TopologyError("viot", "bad-signature", `signature is "${signature}", not "VIOT"`);
  }
  const length = view.getUint32(4, true);
  if (length > bytes.length) {
    throw new TopologyError(
      "viot",
      "truncated",
      `header length ${length} is more than the ${bytes.length} bytes given`,
    );
  }
  if (length < VIOT_HEADER_SIZE) {
    throw new TopologyError(
      "viot",
      "bad-length",
      `header length ${length} is shorter than the ${VIOT_HEADER_SIZE}-byte VIOT header`,
    );
  }
  if (options.verifyChecksum ?? true) {
    let sum = 0;
    for (let i = 0; i < length; i++) sum = (sum + bytes[i]) & 0xff;
    if (sum !== 0) {
      throw new TopologyError(
        "viot",
        "bad-checksum",
        `bytes sum to ${hex(sum)} mod 256, not 0 (checksum byte ${hex(bytes[ACPI_CHECKSUM])})`,
      );
    }
  }
  const nodeCount = view.getUint16(VIOT_NODE_COUNT, true);
  const nodeOffset = view.getUint16(VIOT_NODE_OFFSET, true);
  const viot: Viot = {
    revision: bytes[8],
    oemId: ascii(bytes, 10, 6),
    oemTableId: ascii(bytes, 16, 8),
    iommus: [],
    pciRanges: [],
    mmioEndpoints: [],
    skipped: 0,
  };
  if (nodeCount > 0 && nodeOffset < VIOT_HEADER_SIZE) {
    throw new TopologyError(
      "viot",
      "overrun",
      `node_offset ${nodeOffset} points into the ${VIOT_HEADER_SIZE}-byte header`,
    );
  }
  let offset = nodeOffset;
  for (let i = 0; i < nodeCount; i++) {
    if (offset + VIOT_NODE_HEADER_SIZE > length) {
      throw new TopologyError(
        "viot",
        "overrun",
        `node ${i} of ${nodeCount} at offset ${offset} starts past the table end ${length}`,
      );
    }
    const type = bytes[offset];
    const nodeLength = view.getUint16(offset + 2, true);
    if (nodeLength < VIOT_NODE_HEADER_SIZE) {
      // A zero length would make the walk stand still (a loop): reject it.
      throw new TopologyError(
        "viot",
        "bad-length",
        `node ${i} at offset ${offset} has length ${nodeLength}, less than its own header`,
      );
    }
    if (offset + nodeLength > length) {
      throw new TopologyError(
        "viot",
        "overrun",
        `node ${i} at offset ${offset} with length ${nodeLength} overruns the table end ${length}`,
      );
    }
    parseNode(view, viot, type, offset, nodeLength);
    offset += nodeLength;
  }
  checkReferences(viot);
  return viot;
}

function parseNode(view: DataView, viot: Viot, type: number, at: number, size: number): void {
  switch (type) {
    case VIOT_NODE_PCI_RANGE: {
      need(type, at, size, VIOT_PCI_RANGE_SIZE);
      const range: ViotPciRange = {
        offset: at,
        endpointStart: view.getUint32(at + 4, true),
        segmentStart: view.getUint16(at + 8, true),
        segmentEnd: view.getUint16(at + 10, true),
        bdfStart: view.getUint16(at + 12, true),
        bdfEnd: view.getUint16(at + 14, true),
        outputNode: view.getUint16(at + 16, true),
      };
      if (range.segmentStart > range.segmentEnd || range.bdfStart > range.bdfEnd) {
        throw new TopologyError(
          "viot",
          "invalid-range",
          `PCI range at offset ${at}: segments ${range.segmentStart}..${range.segmentEnd}, BDFs ${
            hex(range.bdfStart)
          }..${hex(range.bdfEnd)} are inverted`,
        );
      }
      const last = range.endpointStart + (range.segmentEnd - range.segmentStart) * 0x10000 +
        range.bdfEnd - range.bdfStart;
      if (last > 0xffff_ffff) {
        throw new TopologyError(
          "viot",
          "overflow",
          `PCI range at offset ${at}: endpoint IDs from ${
            hex(range.endpointStart)
          } overflow 32 bits`,
        );
      }
      viot.pciRanges.push(range);
      return;
    }
    case VIOT_NODE_MMIO:
      need(type, at, size, VIOT_MMIO_SIZE);
      viot.mmioEndpoints.push({
        offset: at,
        endpoint: view.getUint32(at + 4, true),
        baseAddress: view.getBigUint64(at + 8, true),
        outputNode: view.getUint16(at + 16, true),
      });
      return;
    case VIOT_NODE_VIRTIO_IOMMU_PCI:
      need(type, at, size, VIOT_VIRTIO_IOMMU_PCI_SIZE);
      viot.iommus.push({
        kind: "virtio-pci",
        offset: at,
        segment: view.getUint16(at + 4, true),
        bdf: view.getUint16(at + 6, true),
      });
      return;
    case VIOT_NODE_VIRTIO_IOMMU_MMIO:
      need(type, at, size, VIOT_VIRTIO_IOMMU_MMIO_SIZE);
      viot.iommus.push({
        kind: "virtio-mmio",
        offset: at,
        baseAddress: view.getBigUint64(at + 8, true),
      });
      return;
    default:
      viot.skipped++; // Unknown node types are reserved for future use: skip them.
  }
}

function need(type: number, at: number, size: number, required: number): void {
  if (size < required) {
    throw new TopologyError(
      "viot",
      "truncated",
      `node of type ${type} at offset ${at} has length ${size}, needs ${required}`,
    );
  }
}

function checkReferences(viot: Viot): void {
  const iommuOffsets = new Set(viot.iommus.map((iommu) => iommu.offset));
  for (const node of [...viot.pciRanges, ...viot.mmioEndpoints]) {
    if (!iommuOffsets.has(node.outputNode)) {
      throw new TopologyError(
        "viot",
        "unknown-reference",
        `node at offset ${node.offset} has output_node ${node.outputNode}, which is not an IOMMU node`,
      );
    }
  }
}

function ascii(bytes: Uint8Array, start: number, count: number): string {
  let s = "";
  for (let i = start; i < start + count; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/** The result of a VIOT lookup: an endpoint ID and the IOMMU that translates it. */
export interface ViotMatch {
  /** Endpoint ID. */
  endpointId: number;
  /** The IOMMU node. */
  iommu: ViotIommu;
}

/**
 * Endpoint ID of (segment, bdf) in hand-off numbering: the first PCI range that contains it
 * wins. Returns `null` if no range does, or if the device is the IOMMU itself.
 */
export function viotPciEndpoint(
  viot: Viot,
  device: { segment: number; bdf: number },
): ViotMatch | null {
  for (const range of viot.pciRanges) {
    if (
      device.segment < range.segmentStart || device.segment > range.segmentEnd ||
      device.bdf < range.bdfStart || device.bdf > range.bdfEnd
    ) continue;
    const iommu = viot.iommus.find((node) => node.offset === range.outputNode)!;
    if (
      iommu.kind === "virtio-pci" && iommu.segment === device.segment && iommu.bdf === device.bdf
    ) {
      return null; // The IOMMU never translates itself.
    }
    const endpointId = (device.segment - range.segmentStart) * 0x10000 + device.bdf -
      range.bdfStart + range.endpointStart;
    return { endpointId, iommu };
  }
  return null;
}

/** Endpoint ID of the MMIO device at `baseAddress` (first node that matches), or `null`. */
export function viotMmioEndpoint(viot: Viot, baseAddress: bigint): ViotMatch | null {
  for (const node of viot.mmioEndpoints) {
    if (node.baseAddress !== baseAddress) continue;
    const iommu = viot.iommus.find((candidate) => candidate.offset === node.outputNode)!;
    return { endpointId: node.endpoint, iommu };
  }
  return null;
}
