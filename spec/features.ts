/**
 * Device-independent feature bits (virtio 1.3 §6 "Reserved Feature Bits") and helpers.
 * Features are `bigint` here: they are read once at initialisation, never on a hot path.
 *
 * @module
 */

/** The driver can use descriptors with VIRTQ_DESC_F_INDIRECT (§2.7.5.3). */
export const VIRTIO_F_INDIRECT_DESC = 28n;
/** The used_event and avail_event fields are in use (§2.7.10). */
export const VIRTIO_F_EVENT_IDX = 29n;
/** Compliance with virtio 1.x; a modern driver requires it (§6). */
export const VIRTIO_F_VERSION_1 = 32n;
/** The device is behind a platform IOMMU (§6). */
export const VIRTIO_F_ACCESS_PLATFORM = 33n;
/** Packed virtqueue layout (§2.8); this driver uses split rings only. */
export const VIRTIO_F_RING_PACKED = 34n;
/** Buffers are used in the order they are made available (§6). */
export const VIRTIO_F_IN_ORDER = 35n;
/** Platform-strength memory barriers are needed (§6). */
export const VIRTIO_F_ORDER_PLATFORM = 36n;
/** Single-root I/O virtualisation (PCI only). */
export const VIRTIO_F_SR_IOV = 37n;
/** Extra data in available-buffer notifications (§6). */
export const VIRTIO_F_NOTIFICATION_DATA = 38n;
/** Device-supplied notification data (§6). */
export const VIRTIO_F_NOTIF_CONFIG_DATA = 39n;
/** Individual queue reset (§2.6.1). */
export const VIRTIO_F_RING_RESET = 40n;

/** The bit mask of feature number `bit`. */
export function featureBit(bit: bigint): bigint {
  return 1n << bit;
}

/** Whether feature number `bit` is set in `features`. */
export function hasFeature(features: bigint, bit: bigint): boolean {
  return ((features >> bit) & 1n) === 1n;
}

/** Names of the transport feature bits, by number. Device types add their own. */
export const TRANSPORT_FEATURE_NAMES: ReadonlyMap<bigint, string> = new Map([
  [VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"],
  [VIRTIO_F_EVENT_IDX, "EVENT_IDX"],
  [VIRTIO_F_VERSION_1, "VERSION_1"],
  [VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"],
  [VIRTIO_F_RING_PACKED, "RING_PACKED"],
  [VIRTIO_F_IN_ORDER, "IN_ORDER"],
  [VIRTIO_F_ORDER_PLATFORM, "ORDER_PLATFORM"],
  [VIRTIO_F_SR_IOV, "SR_IOV"],
  [VIRTIO_F_NOTIFICATION_DATA, "NOTIFICATION_DATA"],
  [VIRTIO_F_NOTIF_CONFIG_DATA, "NOTIF_CONFIG_DATA"],
  [VIRTIO_F_RING_RESET, "RING_RESET"],
]);

/**
 * Names the bits set in `features` using `names` (then the transport names); unknown bits
 * appear as `bit N`.
 */
export function featureNames(
  features: bigint,
  names: ReadonlyMap<bigint, string> = new Map(),
): string[] {
  const out: string[] = [];
  for (let bit = 0n; features >> bit !== 0n; bit++) {
    if (!hasFeature(features, bit)) continue;
    out.push(names.get(bit) ?? TRANSPORT_FEATURE_NAMES.get(bit) ?? `bit ${bit}`);
  }
  return out;
}
