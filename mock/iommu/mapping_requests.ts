/**
 * MAP and UNMAP in the mock virtio-iommu (virtio 1.3 §5.13.6.5, §5.13.6.6): the checks on a
 * mapping request, spec-strict by default or with QEMU 7.2's documented deviations, and the
 * change to the domain's interval map. No BigInt and no allocation: this is the path a
 * benchmark's MAP/UNMAP stream takes. Framing and the other requests are in `requests.ts`.
 *
 * Choices where the spec gives no status (documented, asserted by tests):
 * - MAP overlapping a reserved region of an endpoint attached to the domain: S_INVAL;
 * - MAP outside `input_range`: S_RANGE (enforced whether or not INPUT_RANGE was negotiated);
 * - MAP with `virt_end == virt_start`: accepted only when the granule is one byte;
 * - UNMAP with `virt_end < virt_start`: S_INVAL.
 *
 * @module
 */

import {
  MAP_DOMAIN,
  MAP_FLAGS,
  MAP_PHYS_START,
  MAP_VIRT_END,
  MAP_VIRT_START,
  UNMAP_DOMAIN,
  UNMAP_RESERVED,
  UNMAP_VIRT_END,
  UNMAP_VIRT_START,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_RANGE,
} from "../../spec/iommu.ts";
import { lessThan64, rangesOverlap } from "../../util/u64.ts";
import type { IommuDomains, MockDomain } from "./domains.ts";
import type { NegotiatedFeatures } from "./features.ts";
import type { ResolvedIommuOptions } from "./options.ts";

const KNOWN_MAP_FLAGS = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE |
  VIRTIO_IOMMU_MAP_F_MMIO;

/** What MAP and UNMAP need from the device around them. */
export interface MappingHooks {
  /** Records a driver rule break; `rule` cites the spec section. */
  violation(rule: string): void;
}

/** Executes MAP and UNMAP requests against the device's domains. */
export class MappingRequests {
  #options: ResolvedIommuOptions;
  #domains: IommuDomains;
  #hooks: MappingHooks;
  #features: NegotiatedFeatures;

  /** Handles mapping requests over the device's options, domains and negotiated features. */
  constructor(
    options: ResolvedIommuOptions,
    domains: IommuDomains,
    hooks: MappingHooks,
    features: NegotiatedFeatures,
  ) {
    this.#options = options;
    this.#domains = domains;
    this.#hooks = hooks;
    this.#features = features;
  }

  /** MAP (§5.13.6.5): executes the request read into `v`; returns its status. */
  map(v: DataView): number {
    const o = this.#options;
    const domainId = v.getUint32(MAP_DOMAIN, true);
    const sLo = v.getUint32(MAP_VIRT_START, true);
    const sHi = v.getUint32(MAP_VIRT_START + 4, true);
    const eLo = v.getUint32(MAP_VIRT_END, true);
    const eHi = v.getUint32(MAP_VIRT_END + 4, true);
    const pLo = v.getUint32(MAP_PHYS_START, true);
    const pHi = v.getUint32(MAP_PHYS_START + 4, true);
    const flags = v.getUint32(MAP_FLAGS, true);
    const qemu = o.qemuCompat;
    if ((flags & ~KNOWN_MAP_FLAGS) !== 0) return VIRTIO_IOMMU_S_INVAL;
    if ((flags & VIRTIO_IOMMU_MAP_F_MMIO) !== 0 && !this.#features.mmio) {
      this.#hooks.violation(
        "virtio 1.3 §5.13.6.5: MAP_F_MMIO used without VIRTIO_IOMMU_F_MMIO negotiated",
      );
      if (!qemu) return VIRTIO_IOMMU_S_INVAL;
    }
    const domain = this.#domains.domain(domainId);
    if (domain === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (domain.bypass || domain.mappings === null) return VIRTIO_IOMMU_S_INVAL;
    if (lessThan64(eLo, eHi, sLo, sHi)) {
      this.#hooks.violation("virtio 1.3 §5.13.6.5: MAP with virt_end before virt_start");
      return VIRTIO_IOMMU_S_INVAL;
    }
    if (!qemu) {
      // virt_end == virt_start is only meaningful with a one-byte granule (reference §1.4).
      if (eLo === sLo && eHi === sHi && !o.byteGranule) return VIRTIO_IOMMU_S_INVAL;
      // virt_start, phys_start and virt_end + 1 granule-aligned, else SHOULD be S_RANGE;
      // "virt_end + 1 aligned" is tested as "the low bits of virt_end all ones", which also
      // holds for virt_end = 2^64 - 1 without overflowing.
      if (
        (sLo & o.alignLo) !== 0 || (sHi & o.alignHi) !== 0 ||
        (pLo & o.alignLo) !== 0 || (pHi & o.alignHi) !== 0 ||
        (eLo & o.alignLo) !== o.alignLo || (eHi & o.alignHi) !== o.alignHi
      ) {
        return VIRTIO_IOMMU_S_RANGE;
      }
      if (
        lessThan64(sLo, sHi, o.inputStartLo, o.inputStartHi) ||
        lessThan64(o.inputEndLo, o.inputEndHi, eLo, eHi)
      ) {
        if (this.#features.inputRange) {
          this.#hooks.violation("virtio 1.3 §5.13.6.5: MAP outside input_range");
        }
        return VIRTIO_IOMMU_S_RANGE;
      }
      if (this.#overlapsReserved(domain, sLo, sHi, eLo, eHi)) return VIRTIO_IOMMU_S_INVAL;
    }
    const slot = domain.mappings.insert(sLo, sHi, eLo, eHi, pLo, pHi, flags);
    return slot < 0 ? VIRTIO_IOMMU_S_INVAL : VIRTIO_IOMMU_S_OK;
  }

  /** Whether [s, e] touches a RESV_MEM region of any endpoint in `domain` (§5.13.6.7.1). */
  #overlapsReserved(
    domain: MockDomain,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
  ): boolean {
    for (const id of domain.endpoints) {
      const ep = this.#domains.endpoint(id);
      if (ep === undefined) continue;
      for (const r of ep.regions) {
        if (rangesOverlap(sLo, sHi, eLo, eHi, r.startLo, r.startHi, r.endLo, r.endHi)) return true;
      }
    }
    return false;
  }

  /** UNMAP (§5.13.6.6): executes the request read into `v`; returns its status. */
  unmap(v: DataView): number {
    const domainId = v.getUint32(UNMAP_DOMAIN, true);
    const sLo = v.getUint32(UNMAP_VIRT_START, true);
    const sHi = v.getUint32(UNMAP_VIRT_START + 4, true);
    const eLo = v.getUint32(UNMAP_VIRT_END, true);
    const eHi = v.getUint32(UNMAP_VIRT_END + 4, true);
    const reserved = v.getUint32(UNMAP_RESERVED, true);
    const domain = this.#domains.domain(domainId);
    if (domain === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (domain.bypass || domain.mappings === null) return VIRTIO_IOMMU_S_INVAL;
    const qemu = this.#options.qemuCompat;
    // The device MAY reject a non-zero reserved field; this one does, before unmapping.
    if (!qemu && reserved !== 0) return VIRTIO_IOMMU_S_INVAL;
    if (lessThan64(eLo, eHi, sLo, sHi)) return VIRTIO_IOMMU_S_INVAL;
    if (qemu) return this.#unmapNonAtomic(domain, sLo, sHi, eLo, eHi);
    // Atomic: a mapping that would be split → S_RANGE and nothing removed.
    const removed = domain.mappings.removeRange(sLo, sHi, eLo, eHi);
    return removed < 0 ? VIRTIO_IOMMU_S_RANGE : VIRTIO_IOMMU_S_OK;
  }

  /**
   * QEMU 7.2's UNMAP: removes fully covered mappings in address order until the first
   * partially covered one, which answers S_RANGE with the earlier removals kept.
   */
  #unmapNonAtomic(domain: MockDomain, sLo: number, sHi: number, eLo: number, eHi: number): number {
    const map = domain.mappings;
    if (map === null) return VIRTIO_IOMMU_S_INVAL;
    let slot = map.find(sLo, sHi);
    if (slot < 0) slot = map.firstAtOrAfter(sLo, sHi);
    while (slot >= 0 && !lessThan64(eLo, eHi, map.startLo(slot), map.startHi(slot))) {
      const covered = !lessThan64(map.startLo(slot), map.startHi(slot), sLo, sHi) &&
        !lessThan64(eLo, eHi, map.endLo(slot), map.endHi(slot));
      if (!covered) return VIRTIO_IOMMU_S_RANGE;
      const next = map.next(slot);
      map.remove(slot);
      slot = next;
    }
    return VIRTIO_IOMMU_S_OK;
  }
}
