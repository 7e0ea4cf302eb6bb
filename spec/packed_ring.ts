/**
 * Packed virtqueue wire layout (virtio 1.3 §2.8), shared by the driver's queue and the mock
 * device's queue so both read the same named offsets. All fields are little-endian.
 *
 * A packed queue has three parts (§2.8, §2.8.10.1): the descriptor ring (16-byte descriptors,
 * 16-byte aligned), the driver event suppression structure (the Driver Area: written by the
 * driver, read by the device) and the device event suppression structure (the Device Area:
 * written by the device, read by the driver), 4 bytes each, 4-byte aligned.
 *
 * @module
 */

/** Size of one descriptor: addr le64, len le32, id le16, flags le16 (§2.8.13). */
export const PACKED_DESC_SIZE = 16;
/** Offset of `addr` (le64) in a descriptor. */
export const PACKED_DESC_ADDR = 0;
/** Offset of `len` (le32) in a descriptor. */
export const PACKED_DESC_LEN = 8;
/** Offset of the buffer `id` (le16) in a descriptor. */
export const PACKED_DESC_ID = 12;
/** Offset of `flags` (le16) in a descriptor. */
export const PACKED_DESC_FLAGS = 14;

/** Descriptor flag: the buffer continues in the next ring descriptor (§2.8.6). */
export const VIRTQ_DESC_F_NEXT = 1;
/** Descriptor flag: the element is device-writable; in a used descriptor, data was written (§2.8.3). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Descriptor flag: the element holds an indirect descriptor table (§2.8.7). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Bit number of VIRTQ_DESC_F_AVAIL in `flags` (§2.8.1). */
export const VIRTQ_DESC_F_AVAIL_BIT = 7;
/** Bit number of VIRTQ_DESC_F_USED in `flags` (§2.8.1). */
export const VIRTQ_DESC_F_USED_BIT = 15;
/** Descriptor flag VIRTQ_DESC_F_AVAIL, `1 << 7` (§2.8.1). */
export const VIRTQ_DESC_F_AVAIL = 1 << VIRTQ_DESC_F_AVAIL_BIT;
/** Descriptor flag VIRTQ_DESC_F_USED, `1 << 15` (§2.8.1). */
export const VIRTQ_DESC_F_USED = 1 << VIRTQ_DESC_F_USED_BIT;
/** Both ring-state bits: AVAIL and USED differ in an available descriptor, match in a used one. */
export const PACKED_STATE_MASK = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;

/** Offset of the `desc` word (desc_event_off : 15, desc_event_wrap : 1) in an event suppression structure (§2.8.14). */
export const EVENT_OFF_WRAP = 0;
/** Offset of the `flags` word (desc_event_flags : 2, reserved : 14) in an event suppression structure. */
export const EVENT_FLAGS = 2;
/** Size of one event suppression structure (§2.8.10.1). */
export const EVENT_SUPPRESS_SIZE = 4;
/** Bit number of `desc_event_wrap` in the `desc` word. */
export const EVENT_WRAP_BIT = 15;
/** Mask of `desc_event_off` in the `desc` word. */
export const EVENT_OFF_MASK = 0x7fff;
/** Mask of `desc_event_flags` in the `flags` word; the other 14 bits are reserved, 0. */
export const EVENT_FLAGS_MASK = 0x3;

/** Event flags: notifications enabled (§2.8.10). */
export const RING_EVENT_FLAGS_ENABLE = 0x0;
/** Event flags: notifications disabled. */
export const RING_EVENT_FLAGS_DISABLE = 0x1;
/** Event flags: notify only for the descriptor at desc_event_off/wrap (needs EVENT_IDX). */
export const RING_EVENT_FLAGS_DESC = 0x2;

/** Alignment of the descriptor ring (§2.8.10.1). */
export const PACKED_DESC_ALIGN = 16;
/** Alignment of each event suppression structure (§2.8.10.1). */
export const EVENT_SUPPRESS_ALIGN = 4;
/** Largest packed queue size: 2^15 (§2.8: "Packed virtqueues support up to 2^15 entries"). */
export const MAX_PACKED_QUEUE_SIZE = 32768;

/** Bytes of the descriptor ring for `n` entries: 16·n (§2.8.10.1). */
export function descRingSize(n: number): number {
  return PACKED_DESC_SIZE * n;
}

/**
 * The ring-state bits of a descriptor made available while the driver's wrap counter is `wrap`
 * (§2.8.1): AVAIL equal to the counter, USED its inverse.
 */
export function availState(wrap: number): number {
  return wrap !== 0 ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
}

/** The ring-state bits of a descriptor marked used while the device's wrap counter is `wrap`: both equal to it. */
export function usedState(wrap: number): number {
  return wrap !== 0 ? PACKED_STATE_MASK : 0;
}

/** The `desc` word of an event suppression structure: offset `off` and wrap counter `wrap` (§2.8.14). */
export function eventOffWrap(off: number, wrap: number): number {
  return (off & EVENT_OFF_MASK) | ((wrap & 1) << EVENT_WRAP_BIT);
}

/**
 * Whether the side that moved its ring position from `old` to `next` (positions 0..size−1 in
 * the current lap, `old` possibly one lap back) passed the other side's event descriptor
 * `offWrap` (§2.8.10 RING_EVENT_FLAGS_DESC, EVENT_IDX). `wrap` is the mover's wrap counter now;
 * an event whose wrap counter differs lies one lap back. The comparison is `vring_need_event`
 * in 16-bit arithmetic, exact for sizes up to 2^15.
 */
export function passedEvent(
  offWrap: number,
  wrap: number,
  old: number,
  next: number,
  size: number,
): boolean {
  let event = offWrap & EVENT_OFF_MASK;
  if ((offWrap >>> EVENT_WRAP_BIT) !== wrap) event -= size;
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}
