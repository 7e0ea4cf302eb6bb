/**
 * Request encoders (virtio 1.3 §5.13.6): each writes the device-readable part of one request
 * at `offset` of a zeroed slot. Allocation-free; 64-bit fields as u32 halves, low first.
 *
 * @module
 */

import {
  ATTACH_DOMAIN,
  ATTACH_ENDPOINT,
  ATTACH_FLAGS,
  DETACH_DOMAIN,
  DETACH_ENDPOINT,
  HEAD_TYPE,
  MAP_DOMAIN,
  MAP_FLAGS,
  MAP_PHYS_START,
  MAP_VIRT_END,
  MAP_VIRT_START,
  PROBE_ENDPOINT,
  UNMAP_DOMAIN,
  UNMAP_VIRT_END,
  UNMAP_VIRT_START,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
} from "./wire.ts";

/** Encodes ATTACH (§5.13.6.3); `reserved` stays zero as the driver SHOULD. */
export function encodeAttach(
  v: DataView,
  o: number,
  domain: number,
  endpoint: number,
  flags: number,
): void {
  v.setUint8(o + HEAD_TYPE, VIRTIO_IOMMU_T_ATTACH);
  v.setUint32(o + ATTACH_DOMAIN, domain, true);
  v.setUint32(o + ATTACH_ENDPOINT, endpoint, true);
  v.setUint32(o + ATTACH_FLAGS, flags, true);
}

/** Encodes DETACH (§5.13.6.4). */
export function encodeDetach(v: DataView, o: number, domain: number, endpoint: number): void {
  v.setUint8(o + HEAD_TYPE, VIRTIO_IOMMU_T_DETACH);
  v.setUint32(o + DETACH_DOMAIN, domain, true);
  v.setUint32(o + DETACH_ENDPOINT, endpoint, true);
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
  v.setUint8(o + HEAD_TYPE, VIRTIO_IOMMU_T_MAP);
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
  v.setUint8(o + HEAD_TYPE, VIRTIO_IOMMU_T_UNMAP);
  v.setUint32(o + UNMAP_DOMAIN, domain, true);
  v.setUint32(o + UNMAP_VIRT_START, sLo, true);
  v.setUint32(o + UNMAP_VIRT_START + 4, sHi, true);
  v.setUint32(o + UNMAP_VIRT_END, eLo, true);
  v.setUint32(o + UNMAP_VIRT_END + 4, eHi, true);
}

/** Encodes the head of PROBE (§5.13.6.7); `reserved[64]` stays zero. */
export function encodeProbe(v: DataView, o: number, endpoint: number): void {
  v.setUint8(o + HEAD_TYPE, VIRTIO_IOMMU_T_PROBE);
  v.setUint32(o + PROBE_ENDPOINT, endpoint, true);
}

/** Zeroes the `length` bytes (a multiple of 4) of a slot before encoding: reserved fields are 0. */
export function zeroSlot(v: DataView, o: number, length: number): void {
  for (let i = 0; i < length; i += 4) v.setUint32(o + i, 0, true);
}
