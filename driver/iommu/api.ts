/**
 * The public shapes of {@link VirtioIommu}: MAP flags, the features the driver understands,
 * its options and the records it reports.
 *
 * @module
 */

import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
} from "../../spec/features.ts";
import type { RingLayout } from "../virtio/virtqueue.ts";
import {
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
} from "../../spec/iommu.ts";
import type { IommuConfig } from "./config.ts";
import type { InterruptChoice, InterruptInfo } from "../virtio/interrupt_setup.ts";

/** Endpoints may read through the mapping. */
export const MAP_READ: number = VIRTIO_IOMMU_MAP_F_READ;
/** Endpoints may write through the mapping. */
export const MAP_WRITE: number = VIRTIO_IOMMU_MAP_F_WRITE;
/** The mapping targets device memory (needs F_MMIO). */
export const MAP_MMIO: number = VIRTIO_IOMMU_MAP_F_MMIO;

/**
 * Feature bits this driver understands (virtio 1.3 §5.13.3, §6; never the legacy F_BYPASS).
 * RING_PACKED is accepted unless {@link VirtioIommuOptions.ring} asks for the split ring.
 */
export const SUPPORTED_FEATURES: bigint = featureBit(VIRTIO_F_VERSION_1) |
  featureBit(VIRTIO_F_INDIRECT_DESC) |
  featureBit(VIRTIO_F_EVENT_IDX) |
  featureBit(VIRTIO_F_RING_PACKED) |
  featureBit(VIRTIO_F_RING_RESET) |
  featureBit(VIRTIO_IOMMU_F_INPUT_RANGE) |
  featureBit(VIRTIO_IOMMU_F_DOMAIN_RANGE) |
  featureBit(VIRTIO_IOMMU_F_MAP_UNMAP) |
  featureBit(VIRTIO_IOMMU_F_PROBE) |
  featureBit(VIRTIO_IOMMU_F_MMIO) |
  featureBit(VIRTIO_IOMMU_F_BYPASS_CONFIG);

/** Options for {@link VirtioIommu.create}. */
export interface VirtioIommuOptions {
  /** Restrict the features the driver accepts (ANDed with what it supports). */
  features?: bigint;
  /** Time a request may take before it rejects with RequestTimeoutError, in ms (default 2000). */
  timeoutMs?: number;
  /**
   * How long to busy-poll for answers after each notification before sleeping (on the
   * interrupt, or on timers when polling), in ms (default 2; 0 never spins).
   */
  spinMs?: number;
  /**
   * `"auto"` (default): sleep on the transport's interrupt source when it has one (answers and
   * fault reports are then picked up as they arrive, configuration changes re-read), else
   * poll; `"off"`: always poll. Why the driver polls is in `info.interrupts.reason`.
   */
  interrupts?: InterruptChoice;
  /** Largest queue size to use; the device's maximum is used when smaller (default 256). */
  maxQueueSize?: number;
  /** Allow IDENTITY reserved regions next to endpoints without one (seed 004 N + I). */
  allowIdentity?: boolean;
  /** RESV_MEM subtype read as IDENTITY (the draft subtype of seed 004; default none). */
  identitySubtype?: number;
  /**
   * Which ring layout to use: `"auto"` (default) the packed ring when the device offers
   * VIRTIO_F_RING_PACKED (§2.8), else the split ring (§2.7); `"split"` never accepts
   * RING_PACKED; `"packed"` requires it (initialisation fails on a device without it).
   */
  ring?: RingLayout | "auto";
}

/** Options for {@link VirtioIommu.attach}. */
export interface AttachOptions {
  /** Create or join a bypass (identity) domain: ATTACH_F_BYPASS (needs BYPASS_CONFIG). */
  bypass?: boolean;
  /**
   * What to do when the endpoint shares an isolation group (see
   * {@link VirtioIommu.setIsolationGroups}) with other endpoints: `"attach"` (default) attaches
   * the whole group, `"refuse"` throws an IommuError naming the group.
   */
  group?: "attach" | "refuse";
}

/** Options for {@link VirtioIommu.map}. */
export interface MapOptions {
  /**
   * Split the range into the largest page sizes page_size_mask allows, one MAP each, instead of
   * one MAP for the whole range.
   */
  split?: boolean;
}

/** One mapping of a domain, as the driver remembers it. */
export interface MappingInfo {
  /** First IOVA. */
  iova: bigint;
  /** Last IOVA (inclusive). */
  last: bigint;
  /** Physical address of `iova`. */
  phys: bigint;
  /** MAP flags. */
  flags: number;
}

/** A domain as the driver remembers it. */
export interface DomainInfo {
  /** Domain ID. */
  id: number;
  /** A bypass domain. */
  bypass: boolean;
  /** Attached endpoints, sorted. */
  endpoints: number[];
  /** Number of mappings. */
  mappings: number;
}

/** What {@link VirtioIommu.create} negotiated and read. */
export interface IommuInfo {
  /** Transport kind. */
  transport: string;
  /** Negotiated feature bits. */
  features: bigint;
  /** Names of the negotiated features. */
  featureNames: string[];
  /** Device configuration. */
  config: IommuConfig;
  /** Request queue size. */
  requestQueueSize: number;
  /** Event queue size. */
  eventQueueSize: number;
  /** Whether and how the driver takes interrupts (mode "off": it polls, and why). */
  interrupts: InterruptInfo;
  /** The ring layout both queues use: packed when VIRTIO_F_RING_PACKED was negotiated. */
  ring: RingLayout;
  /** Whether a queue can be reset alone (VIRTIO_F_RING_RESET negotiated). */
  queueReset: boolean;
}
