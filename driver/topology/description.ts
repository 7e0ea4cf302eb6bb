/**
 * One shape for every topology source: IOMMUs, PCI range rules and MMIO endpoint rules. The
 * built-in topology, the VIOT and the device tree each convert to it, and the resolver only
 * reads this shape. PCI numbers in a description are in hand-off numbering (the bus numbers
 * firmware assigned, seed 000).
 *
 * @module
 */

import type { BuiltinTopology } from "./builtin.ts";
import type { FdtTopology } from "./fdt.ts";
import type { Viot } from "./viot.ts";

/** Where a rule came from. */
export type DescriptionSource = "builtin" | "viot" | "fdt";

/** A paravirtual IOMMU. */
export interface TopologyIommu {
  /** Stable identifier, e.g. `viot@48`, `builtin`, `fdt:/virtio_mmio@a000000`. */
  id: string;
  /** Its PCI address in hand-off numbering when it is a PCI device (it never translates itself). */
  pci?: { segment: number; bdf: number };
  /** Base address of its registers when it is an MMIO device. */
  mmio?: bigint;
}

/**
 * A PCI range rule: a requester (segment, rid) matches when segmentStart ≤ segment ≤ segmentEnd
 * and bdfStart ≤ (rid & mask) ≤ bdfEnd; its endpoint ID is
 * ((segment − segmentStart) << 16) + (rid & mask) − bdfStart + endpointStart.
 */
export interface PciRangeRule {
  /** The source. */
  source: DescriptionSource;
  /** First segment, inclusive. */
  segmentStart: number;
  /** Last segment, inclusive. */
  segmentEnd: number;
  /** First (masked) requester ID, inclusive, hand-off numbering. */
  bdfStart: number;
  /** Last (masked) requester ID, inclusive. */
  bdfEnd: number;
  /** Mask applied to the requester ID before matching (`iommu-map-mask`); 0xffff otherwise. */
  mask: number;
  /** Endpoint ID of (segmentStart, bdfStart). */
  endpointStart: number;
  /** `id` of the IOMMU. */
  iommu: string;
}

/** A single MMIO endpoint rule. */
export interface MmioEndpointRule {
  /** The source. */
  source: DescriptionSource;
  /** Base address of the endpoint's registers. */
  address: bigint;
  /** Its endpoint ID. */
  endpointId: number;
  /** `id` of the IOMMU. */
  iommu: string;
  /** Device-tree path when known. */
  path?: string;
}

/** A normalized topology description. Rules are in priority order: first match wins. */
export interface TopologyDescription {
  /** The IOMMUs. */
  iommus: TopologyIommu[];
  /** PCI range rules. */
  pciRanges: PciRangeRule[];
  /** MMIO endpoint rules. */
  mmioEndpoints: MmioEndpointRule[];
}

/** Converts a parsed VIOT; IOMMU ids are `viot@<node offset>`. */
export function describeViot(viot: Viot): TopologyDescription {
  const id = (offset: number): string => `viot@${offset}`;
  return {
    iommus: viot.iommus.map((iommu) =>
      iommu.kind === "virtio-pci"
        ? { id: id(iommu.offset), pci: { segment: iommu.segment, bdf: iommu.bdf } }
        : { id: id(iommu.offset), mmio: iommu.baseAddress }
    ),
    pciRanges: viot.pciRanges.map((range) => ({
      source: "viot",
      segmentStart: range.segmentStart,
      segmentEnd: range.segmentEnd,
      bdfStart: range.bdfStart,
      bdfEnd: range.bdfEnd,
      mask: 0xffff,
      endpointStart: range.endpointStart,
      iommu: id(range.outputNode),
    })),
    mmioEndpoints: viot.mmioEndpoints.map((node) => ({
      source: "viot",
      address: node.baseAddress,
      endpointId: node.endpoint,
      iommu: id(node.outputNode),
    })),
  };
}

/** Options of {@link describeBuiltin}: the IOMMU the topology was read from. */
export interface DescribeBuiltinOptions {
  /** IOMMU id. Default `builtin`. */
  id?: string;
  /** The IOMMU's own PCI address (hand-off numbering), so it never translates itself. */
  pci?: { segment: number; bdf: number };
  /** The IOMMU's MMIO base when it is a virtio-mmio device. */
  mmio?: bigint;
}

/** Converts a built-in topology read from one virtio-iommu device. */
export function describeBuiltin(
  topology: BuiltinTopology,
  options: DescribeBuiltinOptions = {},
): TopologyDescription {
  const id = options.id ?? "builtin";
  const iommu: TopologyIommu = { id };
  if (options.pci !== undefined) iommu.pci = options.pci;
  if (options.mmio !== undefined) iommu.mmio = options.mmio;
  const out: TopologyDescription = { iommus: [iommu], pciRanges: [], mmioEndpoints: [] };
  for (const item of topology.items) {
    if (item.kind === "pci-range") {
      out.pciRanges.push({
        source: "builtin",
        segmentStart: item.hierarchy,
        segmentEnd: item.hierarchy,
        bdfStart: item.requesterStart,
        bdfEnd: item.requesterEnd,
        mask: 0xffff,
        endpointStart: item.endpointStart,
        iommu: id,
      });
    } else {
      out.mmioEndpoints.push({
        source: "builtin",
        address: item.address,
        endpointId: item.endpoint,
        iommu: id,
      });
    }
  }
  return out;
}

/** Converts a device-tree topology; IOMMU ids are `fdt:<path>`. */
export function describeFdt(topology: FdtTopology): TopologyDescription {
  const paths = new Map(topology.iommus.map((iommu) => [iommu.phandle, `fdt:${iommu.path}`]));
  const out: TopologyDescription = {
    iommus: topology.iommus.map((iommu) => ({ id: `fdt:${iommu.path}` })),
    pciRanges: [],
    mmioEndpoints: [],
  };
  for (const bridge of topology.hostBridges) {
    for (const entry of bridge.map) {
      if (entry.length === 0 || entry.ridBase > 0xffff) continue; // Matches no 16-bit RID.
      const bdfEnd = Math.min(entry.ridBase + entry.length - 1, 0xffff);
      out.pciRanges.push({
        source: "fdt",
        segmentStart: bridge.segment,
        segmentEnd: bridge.segment,
        bdfStart: entry.ridBase,
        bdfEnd,
        mask: bridge.mask & 0xffff,
        endpointStart: entry.iommuBase,
        iommu: paths.get(entry.iommu)!,
      });
    }
  }
  for (const client of topology.clients) {
    if (client.address === null) continue;
    const first = client.iommus.find((ref) => ref.ids.length === 1);
    if (first === undefined) continue;
    out.mmioEndpoints.push({
      source: "fdt",
      address: client.address,
      endpointId: first.ids[0],
      iommu: paths.get(first.iommu)!,
      path: client.path,
    });
  }
  return out;
}

/** Concatenates descriptions; earlier ones take priority (first match wins). */
export function mergeDescriptions(...descriptions: TopologyDescription[]): TopologyDescription {
  return {
    iommus: descriptions.flatMap((d) => d.iommus),
    pciRanges: descriptions.flatMap((d) => d.pciRanges),
    mmioEndpoints: descriptions.flatMap((d) => d.mmioEndpoints),
  };
}
