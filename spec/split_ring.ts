/**
 * Split virtqueue wire layout (virtio 1.3 §2.7), shared by the driver's queue and the mock
 * device's queue so both read the same named offsets. All fields are little-endian.
 *
 * @module
 */

/** Size of one descriptor: addr le64, len le32, flags le16, next le16 (§2.7.5). */
export const DESC_SIZE = 16;
/** Offset of `addr` (le64) in a descriptor. */
export const DESC_ADDR = 0;
/** Offset of `len` (le32) in a descriptor. */
export const DESC_LEN = 8;
/** Offset of `flags` (le16) in a descriptor. */
export const DESC_FLAGS = 12;
/** Offset of `next` (le16) in a descriptor. */
export const DESC_NEXT = 14;

/** Descriptor flag: the chain continues at `next` (§2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1;
/** Descriptor flag: the buffer is device-writable (§2.7.5). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Descriptor flag: the buffer holds an indirect descriptor table (§2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** Offset of `flags` (le16) in the avail ring (§2.7.6). */
export const AVAIL_FLAGS = 0;
/** Offset of `idx` (le16) in the avail ring. */
export const AVAIL_IDX = 2;
/** Offset of `ring[0]` (le16 each) in the avail ring. */
export const AVAIL_RING = 4;
/** Avail flag: the driver does not want used-buffer notifications (§2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

/** Offset of `flags` (le16) in the used ring (§2.7.8). */
export const USED_FLAGS = 0;
/** Offset of `idx` (le16) in the used ring. */
export const USED_IDX = 2;
/** Offset of `ring[0]` in the used ring; each element is id le32, len le32. */
export const USED_RING = 4;
/** Size of one used element. */
export const USED_ELEM_SIZE = 8;
/** Used flag: the device does not want available-buffer notifications (§2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Alignment of the descriptor table (§2.7, table "Virtqueue Part Alignment"). */
export const DESC_ALIGN = 16;
/** Alignment of the avail ring. */
export const AVAIL_ALIGN = 2;
/** Alignment of the used ring. */
export const USED_ALIGN = 4;
/** Largest split queue size (§2.7: "Queue Size ... maximum 32768"). */
export const MAX_QUEUE_SIZE = 32768;

/** Bytes of the descriptor table for `n` entries: 16·n. */
export function descTableSize(n: number): number {
  return DESC_SIZE * n;
}
/** Bytes of the avail ring for `n` entries: 6 + 2·n (flags, idx, ring, used_event). */
export function availRingSize(n: number): number {
  return 6 + 2 * n;
}
/** Bytes of the used ring for `n` entries: 6 + 8·n (flags, idx, ring, avail_event). */
export function usedRingSize(n: number): number {
  return 6 + 8 * n;
}
/** Offset of `used_event` (le16) in the avail ring: 4 + 2·n (§2.7.10, EVENT_IDX). */
export function usedEventOffset(n: number): number {
  return 4 + 2 * n;
}
/** Offset of `avail_event` (le16) in the used ring: 4 + 8·n (§2.7.10, EVENT_IDX). */
export function availEventOffset(n: number): number {
  return 4 + 8 * n;
}

/**
 * Whether a notification is needed, given the other side's event index `event`, the new index
 * `next` and the index `old` at the last notification (§2.7.10, `vring_need_event`):
 * `(u16)(next − event − 1) < (u16)(next − old)`.
 */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}
