/**
 * Request-queue processing of the mock virtio-iommu: framing (virtio 1.3 §5.13.6.2) and the
 * ATTACH, DETACH and PROBE rules (§5.13.6.3, §5.13.6.4, §5.13.6.7; MAP and UNMAP are in
 * `mapping_requests.ts`), spec-strict by default or with QEMU 7.2's documented deviations
 * (reference §2). Every field is read at its `spec/iommu.ts` offset from a scratch copy of the
 * readable part; no BigInt, and no allocation on the MAP/UNMAP path.
 *
 * Choices where the spec gives no status (documented, asserted by tests; MAP's and UNMAP's
 * are listed in `mapping_requests.ts`):
 * - a readable part shorter than the request: used length 0 (QEMU: S_INVAL);
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
  MAP_SIZE,
  PROBE_ENDPOINT,
  PROBE_SIZE,
  PROP_HEADER_SIZE,
  RESV_MEM_END,
  RESV_MEM_SIZE,
  RESV_MEM_START,
  RESV_MEM_SUBTYPE,
  TAIL_SIZE,
  UNMAP_SIZE,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
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
import type { IommuDomains } from "./domains.ts";
import type { ResolvedIommuOptions } from "./options.ts";
import { NegotiatedFeatures } from "./features.ts";
import { type MappingHooks, MappingRequests } from "./mapping_requests.ts";

/** What the request handler needs from the device around it (and `violation` from MappingHooks). */
export interface RequestHooks extends MappingHooks {
  /** Features negotiated so far. */
  negotiated(): bigint;
}

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
  #features = new NegotiatedFeatures();
  #mapping: MappingRequests;
  /** Status written by the last request, or -1 when it was answered with used length 0. */
  lastStatus = -1;

  /** Creates a handler over the device's options and domain state. */
  constructor(options: ResolvedIommuOptions, domains: IommuDomains, hooks: RequestHooks) {
    this.#options = options;
    this.#domains = domains;
    this.#hooks = hooks;
    this.#mapping = new MappingRequests(options, domains, hooks, this.#features);
  }

  /** Handles one request chain and returns the used length to report (bytes written). */
  handle(memory: SimulatedMemory, chain: Chain): number {
    this.#features.refresh(this.#hooks.negotiated());
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
        if (!this.#features.mapUnmap) {
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
          status = this.#mapping.map(this.#view);
        } else {
          if (!this.#longEnough(chain, UNMAP_SIZE, "UNMAP", "§5.13.6.6")) {
            return this.#short(memory, chain);
          }
          status = this.#mapping.unmap(this.#view);
        }
        break;
      }
      case VIRTIO_IOMMU_T_PROBE:
        if (!this.#features.probe) {
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
    if (bypass && !this.#features.bypassConfig) {
      this.#hooks.violation(
        "virtio 1.3 §5.13.6.3: ATTACH_F_BYPASS used without VIRTIO_IOMMU_F_BYPASS_CONFIG negotiated",
      );
      if (!qemu) return VIRTIO_IOMMU_S_INVAL;
    }
    // QEMU 7.2 finds the endpoint by bus (bits 8-15) and devfn (bits 0-7) only.
    const endpoint = this.#domains.endpoint(qemu ? endpointId & 0xffff : endpointId);
    if (endpoint === undefined) return VIRTIO_IOMMU_S_NOENT;
    if (!qemu && this.#features.domainRange && !this.#domainInRange(domainId)) {
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
