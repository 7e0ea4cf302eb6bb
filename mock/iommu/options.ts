/**
 * Options of the mock virtio-iommu device and their resolution into the fixed numbers the
 * model works with (u32 halves for every 64-bit value, so request handling needs no BigInt).
 * Defaults reproduce QEMU 7.2's virtio-iommu-pci on a q35 machine (reference §2).
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { U64_MAX } from "../../util/u64.ts";
import {
  RESV_MEM_SIZE,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
} from "../../spec/iommu.ts";

/** A reserved memory region of an endpoint, reported by PROBE as a RESV_MEM property. */
export interface ReservedRegionConfig {
  /** First address of the region. */
  start: bigint;
  /** Last address of the region (inclusive). */
  end: bigint;
  /** RESV_MEM subtype: "reserved" (0), "msi" (1) or any raw u8 value. */
  subtype: "reserved" | "msi" | number;
}

/** An endpoint the mock IOMMU manages. */
export interface EndpointConfig {
  /** Endpoint ID (for PCI, the requester ID `(bus << 8) | devfn`). */
  id: number;
  /** Reserved regions reported by PROBE and enforced on MAP and on translation. */
  reservedRegions?: ReservedRegionConfig[];
}

/** An inclusive 64-bit address range. */
export interface AddressRange {
  /** First address. */
  start: bigint;
  /** Last address (inclusive). */
  end: bigint;
}

/** An inclusive range of domain IDs. */
export interface DomainRange {
  /** First valid domain ID. */
  start: number;
  /** Last valid domain ID (inclusive). */
  end: number;
}

/** Options of {@link MockIommuDevice}; every field has a QEMU-like default. */
export interface MockIommuOptions {
  /**
   * Feature bits offered. Default QEMU 7.2's: INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE,
   * MMIO, BYPASS_CONFIG, INDIRECT_DESC, EVENT_IDX, VERSION_1, RING_RESET.
   */
  features?: bigint;
  /**
   * Also offer VIRTIO_F_RING_PACKED (bit 34, the packed ring of virtio 1.3 §2.8), as QEMU does
   * with `packed=on`. Default false, as QEMU's `packed` property.
   */
  packed?: boolean;
  /** `page_size_mask`; default 0xfffffffffffff000 (4 KiB granule). */
  pageSizeMask?: bigint;
  /** `input_range`; default the whole 64-bit space. */
  inputRange?: AddressRange;
  /** `domain_range`; default 0..0xffffffff. */
  domainRange?: DomainRange;
  /** `probe_size`; default 512. */
  probeSize?: number;
  /** Initial (boot) value of the `bypass` config field; default true. */
  bypass?: boolean;
  /** Queue sizes [requestq, eventq]; default [256, 256]. */
  queueSizes?: number[];
  /**
   * Endpoints and their reserved regions; default QEMU q35's 0x00, 0x08, 0x10 and 0x18, each
   * with the MSI region 0xfee00000-0xfeefffff.
   */
  endpoints?: EndpointConfig[];
  /**
   * Answer to an unknown request type: "spec" returns the buffers with used length 0 and
   * nothing written (virtio 1.3 §5.13.6.2 SHOULD); "qemu" writes a tail with S_UNSUPP.
   * Default "spec", or "qemu" when {@link MockIommuOptions.qemuCompat} is set.
   */
  unknownRequest?: "spec" | "qemu";
  /**
   * What to do with a fault when the event queue has no buffer: "drop" it and count it (as
   * QEMU does), or "wait" for the driver to add one (up to 1024 pending faults, then drop).
   * Default "drop".
   */
  eventOverflow?: "drop" | "wait";
  /**
   * Reproduce QEMU 7.2's documented deviations from the spec (reference §2, and the README's
   * conformance table): no reserved-field check on ATTACH, implicit detach before the
   * bypass-mismatch check, no alignment, input-range or reserved-region checks on MAP,
   * non-atomic UNMAP, S_UNSUPP for an unknown type, S_INVAL for a short request, NEEDS_RESET on
   * a bad `bypass` write; endpoint IDs of ATTACH and PROBE read as 16 bits; a request without
   * head or tail kept unanswered with NEEDS_RESET; requests answered before DRIVER_OK; faults
   * of an endpoint not attached since reset reported as R_UNKNOWN. Default false.
   */
  qemuCompat?: boolean;
}

/** QEMU 7.2's offered features: bits 0, 1, 2, 4, 5, 6, 28, 29, 32, 40. */
export const QEMU_IOMMU_FEATURES = 0x0000010130000077n;
/** VIRTIO_F_RING_PACKED (bit 34), offered with {@link MockIommuOptions.packed}. */
const RING_PACKED = 1n << 34n;

/** QEMU's x86 MSI doorbell region, reported to every endpoint (reference §2). */
export const QEMU_X86_MSI_REGION: ReservedRegionConfig = {
  start: 0xfee00000n,
  end: 0xfeefffffn,
  subtype: "msi",
};

/** A reserved region resolved to u32 halves. */
export interface ResolvedRegion {
  /** Low half of the first address. */
  startLo: number;
  /** High half of the first address. */
  startHi: number;
  /** Low half of the last address. */
  endLo: number;
  /** High half of the last address. */
  endHi: number;
  /** RESV_MEM subtype value. */
  subtype: number;
}

/** The options after defaults and validation, 64-bit values split into halves. */
export interface ResolvedIommuOptions {
  /** Offered features. */
  features: bigint;
  /** `page_size_mask`. */
  pageSizeMask: bigint;
  /** Low half of granule − 1 (the alignment mask), as an int32. */
  alignLo: number;
  /** High half of granule − 1, as an int32. */
  alignHi: number;
  /** Whether the granule is one byte. */
  byteGranule: boolean;
  /** `input_range` start/end as halves. */
  inputStartLo: number;
  /** High half of the input range start. */
  inputStartHi: number;
  /** Low half of the input range end. */
  inputEndLo: number;
  /** High half of the input range end. */
  inputEndHi: number;
  /** `input_range` as given. */
  inputRange: AddressRange;
  /** `domain_range`. */
  domainRange: DomainRange;
  /** `probe_size`. */
  probeSize: number;
  /** Boot value of `bypass`. */
  bypass: boolean;
  /** Queue sizes. */
  queueSizes: number[];
  /** Endpoint ID → its reserved regions. */
  endpoints: Map<number, ResolvedRegion[]>;
  /** Unknown-request behaviour. */
  unknownRequest: "spec" | "qemu";
  /** Event overflow behaviour. */
  eventOverflow: "drop" | "wait";
  /** QEMU compatibility mode. */
  qemuCompat: boolean;
}

function checkU64(name: string, value: bigint): void {
  if (value < 0n || value > U64_MAX) {
    throw new RangeError(`${name} ${hex(value)} is not a 64-bit value`);
  }
}

function subtypeValue(subtype: "reserved" | "msi" | number): number {
  if (subtype === "reserved") return VIRTIO_IOMMU_RESV_MEM_T_RESERVED;
  if (subtype === "msi") return VIRTIO_IOMMU_RESV_MEM_T_MSI;
  if (!Number.isInteger(subtype) || subtype < 0 || subtype > 0xff) {
    throw new RangeError(`Reserved region subtype ${subtype} is not a u8`);
  }
  return subtype;
}

/** Applies defaults to `options` and checks them; throws RangeError on a bad value. */
export function resolveIommuOptions(options: MockIommuOptions = {}): ResolvedIommuOptions {
  const features = (options.features ?? QEMU_IOMMU_FEATURES) |
    (options.packed === true ? RING_PACKED : 0n);
  const pageSizeMask = options.pageSizeMask ?? 0xfffffffffffff000n;
  checkU64("page_size_mask", pageSizeMask);
  // virtio 1.3 §5.13.4: the device MUST set at least one bit of page_size_mask. A zero mask is
  // still allowed here so that tests can present a broken device; the granule is then 1.
  const granule = pageSizeMask === 0n ? 1n : pageSizeMask & -pageSizeMask;
  const alignMask = granule - 1n;
  const inputRange = options.inputRange ?? { start: 0n, end: U64_MAX };
  checkU64("input_range.start", inputRange.start);
  checkU64("input_range.end", inputRange.end);
  const domainRange = options.domainRange ?? { start: 0, end: 0xffff_ffff };
  for (const v of [domainRange.start, domainRange.end]) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      throw new RangeError(`Domain range bound ${v} is not a u32`);
    }
  }
  const probeSize = options.probeSize ?? 512;
  if (!Number.isInteger(probeSize) || probeSize < 0 || probeSize > 0x10000) {
    throw new RangeError(`probe_size ${probeSize} is out of range (0..65536)`);
  }
  const queueSizes = options.queueSizes ?? [256, 256];
  const endpointList = options.endpoints ?? [0x00, 0x08, 0x10, 0x18].map(qemuEndpoint);
  const endpoints = new Map<number, ResolvedRegion[]>();
  for (const ep of endpointList) {
    if (!Number.isInteger(ep.id) || ep.id < 0 || ep.id > 0xffff_ffff) {
      throw new RangeError(`Endpoint ID ${ep.id} is not a u32`);
    }
    if (endpoints.has(ep.id)) throw new RangeError(`Endpoint ${ep.id} is listed twice`);
    const regions: ResolvedRegion[] = [];
    for (const r of ep.reservedRegions ?? []) {
      checkU64("Reserved region start", r.start);
      checkU64("Reserved region end", r.end);
      if (r.end < r.start) {
        throw new RangeError(`Reserved region ${hex(r.start)} ends before it starts`);
      }
      regions.push({
        startLo: Number(r.start & 0xffff_ffffn),
        startHi: Number(r.start >> 32n),
        endLo: Number(r.end & 0xffff_ffffn),
        endHi: Number(r.end >> 32n),
        subtype: subtypeValue(r.subtype),
      });
    }
    if (regions.length * RESV_MEM_SIZE > probeSize && probeSize > 0) {
      throw new RangeError(
        `Endpoint ${ep.id} has ${regions.length} reserved regions: they do not fit in probe_size ${probeSize}`,
      );
    }
    endpoints.set(ep.id, regions);
  }
  const qemuCompat = options.qemuCompat ?? false;
  return {
    features,
    pageSizeMask,
    // Stored as int32 so that they compare equal to the (signed) result of `x & alignLo`.
    alignLo: Number(alignMask & 0xffff_ffffn) | 0,
    alignHi: Number(alignMask >> 32n) | 0,
    byteGranule: granule === 1n,
    inputStartLo: Number(inputRange.start & 0xffff_ffffn),
    inputStartHi: Number(inputRange.start >> 32n),
    inputEndLo: Number(inputRange.end & 0xffff_ffffn),
    inputEndHi: Number(inputRange.end >> 32n),
    inputRange: { start: inputRange.start, end: inputRange.end },
    domainRange: { start: domainRange.start, end: domainRange.end },
    probeSize,
    bypass: options.bypass ?? true,
    queueSizes: [...queueSizes],
    endpoints,
    unknownRequest: options.unknownRequest ?? (qemuCompat ? "qemu" : "spec"),
    eventOverflow: options.eventOverflow ?? "drop",
    qemuCompat,
  };
}

function qemuEndpoint(id: number): EndpointConfig {
  return { id, reservedRegions: [QEMU_X86_MSI_REGION] };
}
