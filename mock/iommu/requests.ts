/**
 * Request-queue processing of the mock virtio-iommu: framing (virtio 1.3 §5.13.6.2) and the
 * ATTACH, DETACH, MAP, UNMAP and PROBE rules (§5.13.6.3-§5.13.6.7), spec-strict by default
 * or with QEMU 7.2's documented deviations (reference §2). Every field is read at its
 * `spec/iommu.ts` offset from a scratch copy of the readable part; no BigInt, and no
 * allocation on the MAP/UNMAP path.
 *
 * Choices where the spec gives no status (documented, asserted by tests):
 * - a readable part shorter than the request: used length 0 (QEMU: S_INVAL);
 * - MAP overlapping a reserved region of an endpoint attached to the domain: S_INVAL;
 * - MAP outside `input_range`: S_RANGE (enforced whether or not INPUT_RANGE was negotiated);
 * - MAP with `virt_end == virt_start`: accepted only when the granule is one byte;
 * - UNMAP with `virt_end < virt_start`: S_INVAL;
 * - ATTACH_F_BYPASS without BYPASS_CONFIG negotiated: S_INVAL (the flag is unknown then);
 * - MAP/UNMAP without MAP_UNMAP, PROBE without PROBE negotiated: treated as unknown requests.
 *
 * @module
 */

import {
  ATTACH_DOMAIN,
  ATTACH_ENDPOINT,
  ATTACH_FLAGS,
  ATTACH_RESERVED,
  ATTACH_SIZE,
  DETACH_DOMAIN,
  DETACH_ENDPOINT,
  DETACH_SIZE,
  HEAD_SIZE,
  HEAD_TYPE,
  MAP_DOMAIN,
  MAP_FLAGS,
  MAP_PHYS_START,
  MAP_SIZE,
  MAP_VIRT_END,
  MAP_VIRT_START,
  PROBE_ENDPOINT,
  PROBE_SIZE,
  PROP_HEADER_SIZE,
  RESV_MEM_END,
  RESV_MEM_SIZE,
  RESV_MEM_START,
  RESV_MEM_SUBTYPE,
  TAIL_SIZE,
  UNMAP_DOMAIN,
  UNMAP_RESERVED,
  UNMAP_SIZE,
  UNMAP_VIRT_END,
  UNMAP_VIRT_START,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_MAP_UNMAP,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_MMIO,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_PROBE_T_RESV_MEM,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_RANGE,
  VIRTIO_IOMMU_S_UNSUPP,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
} from "../../spec/iommu.ts";
import type { SimulatedMemory } from "../../transport/memory.ts";
import type { Chain } from "../device.ts";
import { gatherReadable, scatterWritable, zeroWritable } from "../chain.ts";
import type { IommuDomains, MockDomain } from "./domains.ts";
import type { ResolvedIommuOptions } from "./options.ts";
import { lessThan64, rangesOverlap } from "../../util/u64.ts";

/** What the request handler needs from the device around it. */
export interface RequestHooks {
  /** Features negotiated so far. */
  negotiated(): bigint;
  /** Records a driver rule break; `rule` cites the spec section. */
  violation(rule: string): void;
}

const KNOWN_MAP_FLAGS = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE |
  VIRTIO_IOMMU_MAP_F_MMIO;

/** Decodes and executes requests popped from the request queue. */
export class IommuRequestHandler {
  #options: ResolvedIommuOptions;
  #domains: IommuDomains;
  #hooks: RequestHooks;
  #buf = new Uint8Array(PROBE_SIZE);
  #view = new DataView(this.#buf.buffer);
  #tail = new Uint8Array(TAIL_SIZE);
  #prop = new Uint8Array(RESV_MEM_SIZE);
  #propView = new DataView(this.#prop.buffer);
  #negotiatedSeen = -1n;
  #fBypassConfig = false;
  #fDomainRange = false;
  #fInputRange = false;
  #fMapUnmap = false;
  #fMmio = false;
  #fProbe = false;
  /** Status written by the last request, or -1 when it was answered with used length 0. */
  lastStatus = -1;

  /** Creates a handler over the device's options and domain state. */
  constructor(options: ResolvedIommuOptions, domains: IommuDomains, hooks: RequestHooks) {
    this.#options = options;
    this.#domains = domains;
    this.#hooks = hooks;
  }

  /** Handles one request chain and returns the used length to report (bytes written). */
  handle(memory: SimulatedMemory, chain: Chain): number {
    this.#refreshFeatures();
    this.lastStatus = -1;
    // QEMU 7.2 keeps such a chain unanswered and sets DEVICE_NEEDS_RESET (-1, see device.ts).
    const unparsable = this.#options.qemuCompat ? -1 : 0;
    if (chain.readableLength < HEAD_SIZE) {
      this.#hooks.violation(
        `virtio 1.3 §5.13.6: request without a 4-byte readable head (${chain.readableLength} bytes)`,
      );
      return unparsable;
    }
    if (chain.writableLength < TAIL_SIZE) {
      this.#hooks.violation(
        `virtio 1.3 §5.13.6: request without a 4-byte writable tail (${chain.writableLength} bytes)`,
      );
      return unparsable;
    }
    gatherReadable(memory, chain, this.#buf, PROBE_SIZE);
    const type = this.#buf[HEAD_TYPE];
    const qemu = this.#options.qemuCompat;
    let status: number;
    switch (type) {
      case VIRTIO_IOMMU_T_ATTACH:
        if (!this.#longEnough(chain, ATTACH_SIZE, "ATTACH", "§5.13.6.3")) {
          return this.#short(memory, chain);
        }
        status = this.#attach();
        break;
      case VIRTIO_IOMMU_T_DETACH:
        if (!this.#longEnough(chain, DETACH_SIZE, "DETACH", "§5.13.6.4")) {
          return this.#short(memory, chain);
        }
        status = this.#detach();
        break;
      case VIRTIO_IOMMU_T_MAP:
      case VIRTIO_IOMMU_T_UNMAP: {
        const isMap = type === VIRTIO_IOMMU_T_MAP;
        if (!this.#fMapUnmap) {
          this.#hooks.violation(
            `virtio 1.3 §5.13.3: ${
              isMap ? "MAP" : "UNMAP"
            } sent without VIRTIO_IOMMU_F_MAP_UNMAP negotiated`,
          );
          if (!qemu) return this.#unknown(memory, chain);
        }
        if (isMap) {
          if (!this.#longEnough(chain, MAP_SIZE, "MAP", "§5.13.6.5")) {
            return this.#short(memory, chain);
          }
          status = this.#map();
        } else {
          if (!this.#longEnough(chain, UNMAP_SIZE, "UNMAP", "§5.13.6.6")) {
            return this.#short(memory, chain);
          }
          status = this.#unmap();
        }
        break;
      }
      case VIRTIO_IOMMU_T_PROBE:
        if (!this.#fProbe) {
          this.#hooks.violation(
            "virtio 1.3 §5.13.6.7: PROBE sent without VIRTIO_IOMMU_F_PROBE negotiated",
          );
          if (!qemu) return this.#unknown(memory, chain);
        }
        if (!this.#longEnough(chain, PROBE_SIZE, "PROBE", "§5.13.6.7")) {
          return this.#shortProbe(memory, chain);
        }
        return this.#probe(memory, chain);
      default:
        return this.#unknown(memory, chain);
    }
    return this.#answer(memory, chain, 0, status);
  }

  #refreshFeatures(): void {
    const n = this.#hooks.negotiated();
    if (n === this.#negotiatedSeen) return;
    this.#negotiatedSeen = n;
    this.#fBypassConfig = ((n >> VIRTIO_IOMMU_F_BYPASS_CONFIG) & 1n) === 1n;
    this.#fDomainRange = ((n >> VIRTIO_IOMMU_F_DOMAIN_RANGE) & 1n) === 1n;
    this.#fInputRange = ((n >> VIRTIO_IOMMU_F_INPUT_RANGE) & 1n) === 1n;
    this.#fMapUnmap = ((n >> VIRTIO_IOMMU_F_MAP_UNMAP) & 1n) === 1n;
    this.#fMmio = ((n >> VIRTIO_IOMMU_F_MMIO) & 1n) === 1n;
    this.#fProbe = ((n >> VIRTIO_IOMMU_F_PROBE) & 1n) === 1n;
  }

  #longEnough(chain: Chain, size: number, name: string, section: string): boolean {
    if (chain.readableLength >= size) return true;
    this.#hooks.violation(
      `virtio 1.3 ${section}: ${name} readable part is ${chain.readableLength} bytes, the request needs ${size}`,
    );
    return false;
  }

  /** A request too short to parse: spec returns it unwritten (§5.13.6.2); QEMU says S_INVAL. */
  #short(memory: SimulatedMemory, chain: Chain): number {
    if (!this.#options.qemuCompat) return 0;
    return this.#answer(memory, chain, 0, VIRTIO_IOMMU_S_INVAL);
  }

  /** A short PROBE: QEMU zero-fills probe_size bytes and puts S_INVAL in the tail after them. */
  #shortProbe(memory: SimulatedMemory, chain: Chain): number {
    if (!this.#options.qemuCompat) return 0;
    const area = Math.max(0, chain.writableLength - TAIL_SIZE);
    zeroWritable(memory, chain, 0, area);
    return this.#answer(memory, chain, area, VIRTIO_IOMMU_S_INVAL);
  }

  /** An unknown or unavailable request type (§5.13.6.2: SHOULD NOT write, used length 0). */
  #unknown(memory: SimulatedMemory, chain: Chain): number {
    if (this.#options.unknownRequest === "spec") return 0;
    return this.#answer(memory, chain, 0, VIRTIO_IOMMU_S_UNSUPP);
  }

  /** Writes the tail at byte `offset` of the writable part; returns the used length. */
  #answer(memory: SimulatedMemory, chain: Chain, offset: number, status: number): number {
    this.#tail[0] = status;
    // §5.13.6.2: the device SHOULD zero tail.reserved.
    this.#tail[1] = 0;
    this.#tail[2] = 0;
    this.#tail[3] = 0;
    scatterWritable(memory, chain, offset, this.#tail, TAIL_SIZE);
    this.lastStatus = status;
    return offset + TAIL_SIZE;
  }

  // ATTACH (§5.13.6.3).
  #attach(): number {
    const v = this.#view;
    const domainId = v.getUint32(ATTACH_DOMAIN, true);
    const endpointId = v.getUint32(ATTACH_ENDPOINT, true);
    const flags = v.getUint32(ATTACH_FLAGS, true);
    const reserved = v.getUint32(ATTACH_RESERVED, true);
    const qemu = this.#options.qemuCompat;
    // The device MUST reject a non-zero reserved field (QEMU does not check it).
    if (!qemu && reserved !== 0) return VIRTIO_IOMMU_S_INVAL;
    if ((flags & ~VIRTIO_IOMMU_ATTACH_F_BYPASS) !== 0) return VIRTIO_IOMMU_S_INVAL;
    const bypass = (flags & VIRTIO_IOMMU_ATTACH_F_BYPASS) !== 0;
    if (bypass && !this.#fBypassConfig) {
      this.#hooks.violation(
        "virtio 1.3 §5.13.6.3: ATTACH_F_BYPASS used without VIRTIO_IOMMU_F_BYPASS_CONFIG negotiated",
      );
      if (!qemu) return VIRTIO_IOMMU_S_INVAL;
    }
    // QEMU 7.2 finds the endpoint by bus (bits 8-15) and devfn (bits 0-7) only.
    const endpoint = this.#domains.endpoint(qemu ? endpointId & 0xffff : endpointId);
    if (endpoint === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (!qemu && this.#fDomainRange && !this.#domainInRange(domainId)) {
      this.#hooks.violation(
        `virtio 1.3 §5.13.6.3: ATTACH to domain ${domainId} outside domain_range`,
      );
      return VIRTIO_IOMMU_S_RANGE;
    }
    if (qemu) {
      // QEMU detaches first, even from the same domain, and destroys the domain if it empties;
      // a bypass mismatch found afterwards leaves the endpoint detached.
      this.#domains.detach(endpoint);
    }
    const existing = this.#domains.domain(domainId);
    // A bypass-flag mismatch SHOULD be rejected with S_INVAL, with no side effect.
    if (existing !== undefined && existing.bypass !== bypass) return VIRTIO_IOMMU_S_INVAL;
    this.#domains.attach(endpoint, domainId, bypass);
    return VIRTIO_IOMMU_S_OK;
  }

  #domainInRange(id: number): boolean {
    return id >= this.#options.domainRange.start && id <= this.#options.domainRange.end;
  }

  // DETACH (§5.13.6.4): reserved is ignored.
  #detach(): number {
    const v = this.#view;
    const domainId = v.getUint32(DETACH_DOMAIN, true);
    const endpoint = this.#domains.endpoint(v.getUint32(DETACH_ENDPOINT, true));
    if (endpoint === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (endpoint.domain === null || endpoint.domain.id !== domainId) return VIRTIO_IOMMU_S_INVAL;
    this.#domains.detach(endpoint);
    return VIRTIO_IOMMU_S_OK;
  }

  // MAP (§5.13.6.5).
  #map(): number {
    const v = this.#view;
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
    if ((flags & VIRTIO_IOMMU_MAP_F_MMIO) !== 0 && !this.#fMmio) {
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
        if (this.#fInputRange) {
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

  // UNMAP (§5.13.6.6).
  #unmap(): number {
    const v = this.#view;
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

  // PROBE (§5.13.6.7): reserved[64] is ignored.
  #probe(memory: SimulatedMemory, chain: Chain): number {
    const probeSize = this.#options.probeSize;
    const area = chain.writableLength - TAIL_SIZE;
    if (area !== probeSize) {
      this.#hooks.violation(
        `virtio 1.3 §5.13.6.7: PROBE properties area is ${area} bytes, probe_size is ${probeSize}`,
      );
    }
    // The whole area is zero-filled (unused bytes SHOULD be zero), then the tail goes last.
    zeroWritable(memory, chain, 0, area);
    if (area < probeSize) return this.#answer(memory, chain, area, VIRTIO_IOMMU_S_INVAL);
    const id = this.#view.getUint32(PROBE_ENDPOINT, true);
    const endpoint = this.#domains.endpoint(this.#options.qemuCompat ? id & 0xffff : id);
    if (endpoint === undefined) return this.#answer(memory, chain, area, VIRTIO_IOMMU_S_NOENT);
    let offset = 0;
    const p = this.#propView;
    for (const r of endpoint.regions) {
      this.#prop.fill(0);
      // Property header: le16 type at 0, le16 length (excluding the header) at 2.
      p.setUint16(0, VIRTIO_IOMMU_PROBE_T_RESV_MEM, true);
      p.setUint16(2, RESV_MEM_SIZE - PROP_HEADER_SIZE, true);
      p.setUint8(RESV_MEM_SUBTYPE, r.subtype);
      p.setUint32(RESV_MEM_START, r.startLo, true);
      p.setUint32(RESV_MEM_START + 4, r.startHi, true);
      p.setUint32(RESV_MEM_END, r.endLo, true);
      p.setUint32(RESV_MEM_END + 4, r.endHi, true);
      scatterWritable(memory, chain, offset, this.#prop, RESV_MEM_SIZE);
      offset += RESV_MEM_SIZE;
    }
    return this.#answer(memory, chain, area, VIRTIO_IOMMU_S_OK);
  }
}
