/**
 * Raw virtio-iommu requests (virtio 1.3 §5.13.6): the device-readable bytes of each request,
 * with every field the driver would never set otherwise under the caller's control: non-zero
 * reserved fields, unknown flags and types, IDs above 16 bits, misaligned or inverted ranges.
 * Each builder returns a fresh buffer; the device-writable part (the tail, and PROBE's
 * properties) is the sender's business ({@link RawSession.send}).
 *
 * @example An ATTACH with a non-zero reserved field, which the device MUST refuse
 * ```ts
 * import { attachRequest } from "./requests.ts";
 * const bytes = attachRequest({ domain: 1, endpoint: 8, reserved: 0xff });
 * console.log(bytes.length); // 20 readable bytes; the 4-byte tail is writable
 * ```
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
  DETACH_RESERVED,
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
  PROBE_RESERVED,
  PROBE_SIZE,
  UNMAP_DOMAIN,
  UNMAP_RESERVED,
  UNMAP_SIZE,
  UNMAP_VIRT_END,
  UNMAP_VIRT_START,
  VIRTIO_IOMMU_T_ATTACH,
  VIRTIO_IOMMU_T_DETACH,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
  VIRTIO_IOMMU_T_UNMAP,
} from "../spec/iommu.ts";

/** Fields every request has: the head (§5.13.6, `struct virtio_iommu_req_head`). */
export interface HeadFields {
  /** The three `head.reserved` bytes, as one value (byte 1 is the low byte); default 0. */
  headReserved?: number;
}

/** ATTACH fields (§5.13.6.3). */
export interface AttachFields extends HeadFields {
  /** `domain`. */
  domain: number;
  /** `endpoint`. */
  endpoint: number;
  /** `flags` (ATTACH_F_BYPASS is bit 0); default 0. */
  flags?: number;
  /** `reserved[4]` as a le32; default 0. */
  reserved?: number;
}

/** DETACH fields (§5.13.6.4). */
export interface DetachFields extends HeadFields {
  /** `domain`. */
  domain: number;
  /** `endpoint`. */
  endpoint: number;
  /** The value every byte of `reserved[8]` gets; default 0. */
  reservedFill?: number;
}

/** MAP fields (§5.13.6.5); range ends are inclusive. */
export interface MapFields extends HeadFields {
  /** `domain`. */
  domain: number;
  /** `virt_start`. */
  virtStart: bigint;
  /** `virt_end` (inclusive). */
  virtEnd: bigint;
  /** `phys_start`. */
  physStart: bigint;
  /** `flags` (READ 1, WRITE 2, MMIO 4). */
  flags: number;
}

/** UNMAP fields (§5.13.6.6). */
export interface UnmapFields extends HeadFields {
  /** `domain`. */
  domain: number;
  /** `virt_start`. */
  virtStart: bigint;
  /** `virt_end` (inclusive). */
  virtEnd: bigint;
  /** `reserved[4]` as a le32; default 0. */
  reserved?: number;
}

/** PROBE fields (§5.13.6.7). */
export interface ProbeFields extends HeadFields {
  /** `endpoint`. */
  endpoint: number;
  /** The value every byte of `reserved[64]` gets; default 0. */
  reservedFill?: number;
}

/** A readable buffer of `size` bytes whose head has `type` (§5.13.6). */
function request(type: number, size: number, fields: HeadFields): [Uint8Array, DataView] {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  if (size > HEAD_TYPE) bytes[HEAD_TYPE] = type;
  const reserved = fields.headReserved ?? 0;
  for (let i = 1; i < HEAD_SIZE && i < size; i++) bytes[i] = (reserved >>> (8 * (i - 1))) & 0xff;
  return [bytes, view];
}

/** The 20 readable bytes of an ATTACH. */
export function attachRequest(fields: AttachFields): Uint8Array {
  const [bytes, view] = request(VIRTIO_IOMMU_T_ATTACH, ATTACH_SIZE, fields);
  view.setUint32(ATTACH_DOMAIN, fields.domain, true);
  view.setUint32(ATTACH_ENDPOINT, fields.endpoint, true);
  view.setUint32(ATTACH_FLAGS, fields.flags ?? 0, true);
  view.setUint32(ATTACH_RESERVED, fields.reserved ?? 0, true);
  return bytes;
}

/** The 20 readable bytes of a DETACH. */
export function detachRequest(fields: DetachFields): Uint8Array {
  const [bytes, view] = request(VIRTIO_IOMMU_T_DETACH, DETACH_SIZE, fields);
  view.setUint32(DETACH_DOMAIN, fields.domain, true);
  view.setUint32(DETACH_ENDPOINT, fields.endpoint, true);
  bytes.fill(fields.reservedFill ?? 0, DETACH_RESERVED, DETACH_SIZE);
  return bytes;
}

/** The 36 readable bytes of a MAP. */
export function mapRequest(fields: MapFields): Uint8Array {
  const [bytes, view] = request(VIRTIO_IOMMU_T_MAP, MAP_SIZE, fields);
  view.setUint32(MAP_DOMAIN, fields.domain, true);
  view.setBigUint64(MAP_VIRT_START, BigInt.asUintN(64, fields.virtStart), true);
  view.setBigUint64(MAP_VIRT_END, BigInt.asUintN(64, fields.virtEnd), true);
  view.setBigUint64(MAP_PHYS_START, BigInt.asUintN(64, fields.physStart), true);
  view.setUint32(MAP_FLAGS, fields.flags, true);
  return bytes;
}

/** The 28 readable bytes of an UNMAP. */
export function unmapRequest(fields: UnmapFields): Uint8Array {
  const [bytes, view] = request(VIRTIO_IOMMU_T_UNMAP, UNMAP_SIZE, fields);
  view.setUint32(UNMAP_DOMAIN, fields.domain, true);
  view.setBigUint64(UNMAP_VIRT_START, BigInt.asUintN(64, fields.virtStart), true);
  view.setBigUint64(UNMAP_VIRT_END, BigInt.asUintN(64, fields.virtEnd), true);
  view.setUint32(UNMAP_RESERVED, fields.reserved ?? 0, true);
  return bytes;
}

/** The 72 readable bytes of a PROBE; the sender adds `probe_size` + 4 writable bytes. */
export function probeRequest(fields: ProbeFields): Uint8Array {
  const [bytes, view] = request(VIRTIO_IOMMU_T_PROBE, PROBE_SIZE, fields);
  view.setUint32(PROBE_ENDPOINT, fields.endpoint, true);
  bytes.fill(fields.reservedFill ?? 0, PROBE_RESERVED, PROBE_SIZE);
  return bytes;
}

/** A request of any `type` (an unknown one, say) with `size` readable bytes, zero after the head. */
export function typedRequest(type: number, size: number, fields: HeadFields = {}): Uint8Array {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) {
    throw new RangeError(`Request type ${type} is not a u8`);
  }
  if (!Number.isInteger(size) || size < 0) throw new RangeError(`Request size ${size} is invalid`);
  return request(type, size, fields)[0];
}
