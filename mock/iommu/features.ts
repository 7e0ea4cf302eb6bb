/**
 * The virtio-iommu feature bits (virtio 1.3 §5.13.3) a mock device has negotiated, as booleans
 * the request handlers read on every request without BigInt; recomputed only when the
 * negotiated set changes.
 *
 * @module
 */

import {
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
} from "../../spec/iommu.ts";
import { hasFeature } from "../../spec/features.ts";

/** The negotiated virtio-iommu features, one boolean each. */
export class NegotiatedFeatures {
  #seen = -1n;
  #bypassConfig = false;
  #domainRange = false;
  #inputRange = false;
  #mapUnmap = false;
  #mmio = false;
  #probe = false;

  /** Takes the negotiated feature set; cheap when it has not changed since the last call. */
  refresh(negotiated: bigint): void {
    const n = negotiated;
    if (n === this.#seen) return;
    this.#seen = n;
    this.#bypassConfig = hasFeature(n, VIRTIO_IOMMU_F_BYPASS_CONFIG);
    this.#domainRange = hasFeature(n, VIRTIO_IOMMU_F_DOMAIN_RANGE);
    this.#inputRange = hasFeature(n, VIRTIO_IOMMU_F_INPUT_RANGE);
    this.#mapUnmap = hasFeature(n, VIRTIO_IOMMU_F_MAP_UNMAP);
    this.#mmio = hasFeature(n, VIRTIO_IOMMU_F_MMIO);
    this.#probe = hasFeature(n, VIRTIO_IOMMU_F_PROBE);
  }

  /** VIRTIO_IOMMU_F_BYPASS_CONFIG. */
  get bypassConfig(): boolean {
    return this.#bypassConfig;
  }
  /** VIRTIO_IOMMU_F_DOMAIN_RANGE. */
  get domainRange(): boolean {
    return this.#domainRange;
  }
  /** VIRTIO_IOMMU_F_INPUT_RANGE. */
  get inputRange(): boolean {
    return this.#inputRange;
  }
  /** VIRTIO_IOMMU_F_MAP_UNMAP. */
  get mapUnmap(): boolean {
    return this.#mapUnmap;
  }
  /** VIRTIO_IOMMU_F_MMIO. */
  get mmio(): boolean {
    return this.#mmio;
  }
  /** VIRTIO_IOMMU_F_PROBE. */
  get probe(): boolean {
    return this.#probe;
  }
}
