/**
 * Reading `struct virtio_iommu_config` (virtio 1.3 §5.13.4): each optional field is read only
 * when its feature was negotiated, with the spec's default otherwise, and the whole read runs
 * inside the config-generation loop.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { hasFeature } from "../../spec/features.ts";
import { readConfigStable } from "../virtio/init.ts";
import type { Transport } from "../../transport/transport.ts";
import {
  CONFIG_BYPASS,
  CONFIG_DOMAIN_END,
  CONFIG_DOMAIN_START,
  CONFIG_INPUT_END,
  CONFIG_INPUT_START,
  CONFIG_PAGE_SIZE_MASK,
  CONFIG_PROBE_SIZE,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_PROBE,
} from "../../spec/iommu.ts";

/** The device's configuration as the driver uses it. Ranges are inclusive. */
export interface IommuConfig {
  /** Page sizes the device supports; the lowest set bit is the granule. */
  pageSizeMask: bigint;
  /** First IOVA the device can translate (0 without INPUT_RANGE). */
  inputStart: bigint;
  /** Last IOVA the device can translate (2^64 - 1 without INPUT_RANGE). */
  inputEnd: bigint;
  /** First valid domain ID (0 without DOMAIN_RANGE). */
  domainStart: number;
  /** Last valid domain ID (0xffffffff without DOMAIN_RANGE). */
  domainEnd: number;
  /** Bytes of the PROBE properties area; 0 when PROBE is not negotiated. */
  probeSize: number;
  /** The `bypass` field (0 or 1), or null without BYPASS_CONFIG. */
  bypass: number | null;
}

/** Largest probe_size the driver accepts; a bigger one is a misbehaving device. */
export const MAX_PROBE_SIZE = 64 * 1024;

/** Thrown when the device's configuration is unusable (page_size_mask 0, …). */
export class IommuConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "IommuConfigError";
  }
}

/** Reads a le64 config field as two aligned 32-bit reads, low half first (virtio 1.3 §4.1.3.1). */
export function readConfig64(t: Transport, offset: number): bigint {
  const lo = t.readConfig32(offset);
  const hi = t.readConfig32(offset + 4);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Reads and validates the config for the `negotiated` features. Throws {@link IommuConfigError}
 * for a page_size_mask of 0, an empty or inverted range, or an absurd probe_size.
 */
export function readIommuConfig(transport: Transport, negotiated: bigint): IommuConfig {
  const config = readConfigStable(transport, () => ({
    pageSizeMask: readConfig64(transport, CONFIG_PAGE_SIZE_MASK),
    inputStart: hasFeature(negotiated, VIRTIO_IOMMU_F_INPUT_RANGE)
      ? readConfig64(transport, CONFIG_INPUT_START)
      : 0n,
    inputEnd: hasFeature(negotiated, VIRTIO_IOMMU_F_INPUT_RANGE)
      ? readConfig64(transport, CONFIG_INPUT_END)
      : (1n << 64n) - 1n,
    domainStart: hasFeature(negotiated, VIRTIO_IOMMU_F_DOMAIN_RANGE)
      ? transport.readConfig32(CONFIG_DOMAIN_START)
      : 0,
    domainEnd: hasFeature(negotiated, VIRTIO_IOMMU_F_DOMAIN_RANGE)
      ? transport.readConfig32(CONFIG_DOMAIN_END)
      : 0xffff_ffff,
    probeSize: hasFeature(negotiated, VIRTIO_IOMMU_F_PROBE)
      ? transport.readConfig32(CONFIG_PROBE_SIZE)
      : 0,
    // The driver SHOULD ignore bits 1-7 of bypass (§5.13.4.1).
    bypass: hasFeature(negotiated, VIRTIO_IOMMU_F_BYPASS_CONFIG)
      ? transport.readConfig8(CONFIG_BYPASS) & 1
      : null,
  }));
  if (config.pageSizeMask === 0n) {
    // §5.13.4.2: the device MUST set at least one bit; Linux fails the probe with -EINVAL.
    throw new IommuConfigError("Device reports page_size_mask 0: no page size is supported");
  }
  if (config.inputStart > config.inputEnd) {
    throw new IommuConfigError(
      `Device input_range is empty: ${hex(config.inputStart)}-${hex(config.inputEnd)}`,
    );
  }
  if (config.domainStart > config.domainEnd) {
    throw new IommuConfigError(
      `Device domain_range is empty: ${config.domainStart}-${config.domainEnd}`,
    );
  }
  if (config.probeSize > MAX_PROBE_SIZE) {
    throw new IommuConfigError(`Device reports an unusable probe_size ${config.probeSize}`);
  }
  return config;
}

/** The granule: index of the lowest set bit of page_size_mask (§5.13.4: "the granule"). */
export function granuleShift(pageSizeMask: bigint): number {
  let shift = 0;
  while (((pageSizeMask >> BigInt(shift)) & 1n) === 0n) shift++;
  return shift;
}
