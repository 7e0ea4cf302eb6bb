/**
 * ACPI VIOT (Virtual I/O Translation table, ACPI 6.4 §5.2.30) parser: which paravirtual IOMMU
 * manages which PCI ranges and MMIO endpoints, and with which endpoint IDs.
 *
 * The byte layout is in `spec/viot.ts`. `output_node` is the byte offset, from the start of the
 * table, of an IOMMU node (type 3 or 4).
 * A PCI handle names a device by the BDF the OS sees when it first parses config space after
 * boot, i.e. before any renumbering (seed 000). The endpoint ID of (segment, bdf) in a range is
 * `((segment − segment_start) << 16) + bdf − bdf_start + endpoint_start`.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";
import {
  ACPI_CHECKSUM,
  ACPI_HEADER_SIZE,
  ACPI_LENGTH,
  ACPI_OEM_ID,
  ACPI_OEM_ID_SIZE,
  ACPI_OEM_TABLE_ID,
  ACPI_OEM_TABLE_ID_SIZE,
  ACPI_REVISION,
  ACPI_SIGNATURE,
  acpiByteSum,
  VIOT_HEADER_SIZE,
  VIOT_MMIO_BASE_ADDRESS,
  VIOT_MMIO_ENDPOINT,
  VIOT_MMIO_OUTPUT_NODE,
  VIOT_MMIO_SIZE,
  VIOT_NODE_COUNT,
  VIOT_NODE_HEADER_SIZE,
  VIOT_NODE_LENGTH,
  VIOT_NODE_MMIO,
  VIOT_NODE_OFFSET,
  VIOT_NODE_PCI_RANGE,
  VIOT_NODE_TYPE,
  VIOT_NODE_VIRTIO_IOMMU_MMIO,
  VIOT_NODE_VIRTIO_IOMMU_PCI,
  VIOT_PCI_RANGE_BDF_END,
  VIOT_PCI_RANGE_BDF_START,
  VIOT_PCI_RANGE_ENDPOINT_START,
  VIOT_PCI_RANGE_OUTPUT_NODE,
  VIOT_PCI_RANGE_SEGMENT_END,
  VIOT_PCI_RANGE_SEGMENT_START,
  VIOT_PCI_RANGE_SIZE,
  VIOT_VIRTIO_IOMMU_MMIO_BASE_ADDRESS,
  VIOT_VIRTIO_IOMMU_MMIO_SIZE,
  VIOT_VIRTIO_IOMMU_PCI_BDF,
  VIOT_VIRTIO_IOMMU_PCI_SEGMENT,
  VIOT_VIRTIO_IOMMU_PCI_SIZE,
} from "../../spec/viot.ts";

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
  const signature = ascii(bytes, ACPI_SIGNATURE, 4);
  if (signature !== "VIOT") {
    throw new TopologyError("viot", "bad-signature", `signature is "${signature}", not "VIOT"`);
  }
  const length = view.getUint32(ACPI_LENGTH, true);
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
    const sum = acpiByteSum(bytes, length);
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
    revision: bytes[ACPI_REVISION],
    oemId: ascii(bytes, ACPI_OEM_ID, ACPI_OEM_ID_SIZE),
    oemTableId: ascii(bytes, ACPI_OEM_TABLE_ID, ACPI_OEM_TABLE_ID_SIZE),
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
    const type = bytes[offset + VIOT_NODE_TYPE];
    const nodeLength = view.getUint16(offset + VIOT_NODE_LENGTH, true);
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
        endpointStart: view.getUint32(at + VIOT_PCI_RANGE_ENDPOINT_START, true),
        segmentStart: view.getUint16(at + VIOT_PCI_RANGE_SEGMENT_START, true),
        segmentEnd: view.getUint16(at + VIOT_PCI_RANGE_SEGMENT_END, true),
        bdfStart: view.getUint16(at + VIOT_PCI_RANGE_BDF_START, true),
        bdfEnd: view.getUint16(at + VIOT_PCI_RANGE_BDF_END, true),
        outputNode: view.getUint16(at + VIOT_PCI_RANGE_OUTPUT_NODE, true),
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
        endpoint: view.getUint32(at + VIOT_MMIO_ENDPOINT, true),
        baseAddress: view.getBigUint64(at + VIOT_MMIO_BASE_ADDRESS, true),
        outputNode: view.getUint16(at + VIOT_MMIO_OUTPUT_NODE, true),
      });
      return;
    case VIOT_NODE_VIRTIO_IOMMU_PCI:
      need(type, at, size, VIOT_VIRTIO_IOMMU_PCI_SIZE);
      viot.iommus.push({
        kind: "virtio-pci",
        offset: at,
        segment: view.getUint16(at + VIOT_VIRTIO_IOMMU_PCI_SEGMENT, true),
        bdf: view.getUint16(at + VIOT_VIRTIO_IOMMU_PCI_BDF, true),
      });
      return;
    case VIOT_NODE_VIRTIO_IOMMU_MMIO:
      need(type, at, size, VIOT_VIRTIO_IOMMU_MMIO_SIZE);
      viot.iommus.push({
        kind: "virtio-mmio",
        offset: at,
        baseAddress: view.getBigUint64(at + VIOT_VIRTIO_IOMMU_MMIO_BASE_ADDRESS, true),
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
