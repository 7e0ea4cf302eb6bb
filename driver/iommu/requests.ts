/**
 * Request encoders (virtio 1.3 §5.13.6): each writes every byte of the device-readable part of
 * one request at `offset` — reserved fields as zero, as the driver SHOULD — so a slot never
 * needs clearing first. Allocation-free; 64-bit fields as u32 halves, low first.
 *
 * @module
 */

import {
  ATTACH_DOMAIN,
  ATTACH_ENDPOINT,
  ATTACH_FLAGS,
  ATTACH_RESERVED,
  DETACH_DOMAIN,
  DETACH_ENDPOINT,
  DETACH_RESERVED,
  HEAD_TYPE,
  MAP_DOMAIN,
  MAP_FLAGS,
  MAP_PHYS_START,
  MAP_VIRT_END,
  MAP_VIRT_START,
  PROBE_ENDPOINT,
  PROBE_RESERVED,
  PROBE_SIZE,
  UNMAP_DOMAIN,
  UNMAP_RESERVED,
  UNMAP_VIRT_END,
  UNMAP_VIRT_START,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
} from "../../spec/iommu.ts";

/** Encodes ATTACH (§5.13.6.3); `reserved` stays zero as the driver SHOULD. */
export function encodeAttach(
  v: DataView,
  o: number,
  domain: number,
  endpoint: number,
  flags: number,
): void {
  head(v, o, VIRTIO_IOMMU_T_ATTACH);
  v.setUint32(o + ATTACH_DOMAIN, domain, true);
  v.setUint32(o + ATTACH_ENDPOINT, endpoint, true);
  v.setUint32(o + ATTACH_FLAGS, flags, true);
  v.setUint32(o + ATTACH_RESERVED, 0, true);
}

/** Encodes DETACH (§5.13.6.4). */
export function encodeDetach(v: DataView, o: number, domain: number, endpoint: number): void {
  head(v, o, VIRTIO_IOMMU_T_DETACH);
  v.setUint32(o + DETACH_DOMAIN, domain, true);
  v.setUint32(o + DETACH_ENDPOINT, endpoint, true);
  v.setUint32(o + DETACH_RESERVED, 0, true);
  v.setUint32(o + DETACH_RESERVED + 4, 0, true);
}

/** Encodes MAP of [start, end] (inclusive) to phys (§5.13.6.5). */
export function encodeMap(
  v: DataView,
  o: number,
  domain: number,
  sLo: number,
  sHi: number,
  eLo: number,
  eHi: number,
  pLo: number,
  pHi: number,
  flags: number,
): void {
  head(v, o, VIRTIO_IOMMU_T_MAP);
  v.setUint32(o + MAP_DOMAIN, domain, true);
  v.setUint32(o + MAP_VIRT_START, sLo, true);
  v.setUint32(o + MAP_VIRT_START + 4, sHi, true);
  v.setUint32(o + MAP_VIRT_END, eLo, true);
  v.setUint32(o + MAP_VIRT_END + 4, eHi, true);
  v.setUint32(o + MAP_PHYS_START, pLo, true);
  v.setUint32(o + MAP_PHYS_START + 4, pHi, true);
  v.setUint32(o + MAP_FLAGS, flags, true);
}

/** Encodes UNMAP of [start, end] (inclusive) (§5.13.6.6). */
export function encodeUnmap(
  v: DataView,
  o: number,
  domain: number,
  sLo: number,
  sHi: number,
  eLo: number,
  eHi: number,
): void {
  head(v, o, VIRTIO_IOMMU_T_UNMAP);
  v.setUint32(o + UNMAP_DOMAIN, domain, true);
  v.setUint32(o + UNMAP_VIRT_START, sLo, true);
  v.setUint32(o + UNMAP_VIRT_START + 4, sHi, true);
  v.setUint32(o + UNMAP_VIRT_END, eLo, true);
  v.setUint32(o + UNMAP_VIRT_END + 4, eHi, true);
  v.setUint32(o + UNMAP_RESERVED, 0, true);
}

/** Encodes PROBE (§5.13.6.7) with `reserved[64]` zero. */
export function encodeProbe(v: DataView, o: number, endpoint: number): void {
  head(v, o, VIRTIO_IOMMU_T_PROBE);
  v.setUint32(o + PROBE_ENDPOINT, endpoint, true);
  for (let i = 0; i < PROBE_SIZE - PROBE_RESERVED; i += 4) {
    v.setUint32(o + PROBE_RESERVED + i, 0, true);
  }
}

/** Writes `struct virtio_iommu_req_head`: `type`, then `reserved[3]` as zero, in one word. */
function head(v: DataView, o: number, type: number): void {
  v.setUint32(o + HEAD_TYPE, type, true);
}
