/**
 * What the benchmarks' hand-written request loops share, split ({@link Baseline}) and packed
 * ({@link PackedBaseline}): the features they negotiate, the request bytes they send, their
 * options and their modes.
 *
 * @module
 */

import {
  featureBit,
  SUPPORTED_FEATURES,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
} from "../mod.ts";

/** The driver's feature set for like-for-like comparison: no indirect descriptors. */
export const DIRECT_FEATURES: bigint = SUPPORTED_FEATURES & ~featureBit(VIRTIO_F_INDIRECT_DESC);
/** The limit's features: direct chains, plain flags for notification suppression. */
export const BASELINE_FEATURES: bigint = DIRECT_FEATURES &
  ~featureBit(VIRTIO_F_EVENT_IDX) & ~featureBit(VIRTIO_F_RING_PACKED);

/** What both limits (split and packed) offer: the same requests, the same modes. */
export interface Limit {
  /** One MAP then one UNMAP of page `i`, each notified and awaited on its own. */
  pairOneAtATime(i: number): void;
  /** `n` requests, one notification per ring-full. */
  batch(n: number): void;
  /** `n` MAPs then one range UNMAP, in one notification. */
  batchRange(n: number): void;
  /** Resets the device and frees the rings. */
  close(): Promise<void>;
}

/** Options for {@link Baseline.over}. */
export interface BaselineOptions {
  /** Request queue size (default 256; at most the device's maximum). */
  size?: number;
  /** The endpoint attached to domain 1 (default 8). */
  endpoint?: number;
  /** First IOVA the loop maps (default 0x100000). */
  iovaBase?: number;
}

/**
 * Encodes request `r` of a batch of requests whose first `half` are MAPs (of page r) and the
 * rest UNMAPs (of page r − half) into slot `s` (64 bytes each) of `v`; returns its length.
 */
export function encodeBaselineRequest(
  v: DataView,
  s: number,
  r: number,
  half: number,
  iovaBase: number,
): number {
  const o = s * 64;
  const map = r < half;
  const iova = iovaBase + (map ? r : r - half) * 0x1000;
  v.setUint32(o, map ? 3 : 4, true);
  v.setUint32(o + 4, 1, true);
  v.setUint32(o + 8, iova, true);
  v.setUint32(o + 12, 0, true);
  v.setUint32(o + 16, iova + 0xfff, true);
  v.setUint32(o + 20, 0, true);
  if (!map) {
    v.setUint32(o + 24, 0, true);
    return 28;
  }
  v.setUint32(o + 24, 0x1000, true);
  v.setUint32(o + 28, 0, true);
  v.setUint32(o + 32, 3, true);
  return 36;
}

/** Encodes an ATTACH of `endpoint` to domain 1 in slot 0 of `v`; returns its length. */
export function encodeBaselineAttach(v: DataView, endpoint: number): number {
  v.setUint32(0, 1, true); // ATTACH
  v.setUint32(4, 1, true); // domain
  v.setUint32(8, endpoint, true);
  v.setUint32(12, 0, true); // flags
  return 20;
}

/** Encodes, in slot `s` of `v`, one UNMAP of the `n` pages from `iovaBase`; returns its length. */
export function encodeBaselineRangeUnmap(
  v: DataView,
  s: number,
  iovaBase: number,
  n: number,
): number {
  const o = s * 64;
  v.setUint32(o, 4, true); // UNMAP
  v.setUint32(o + 4, 1, true);
  v.setUint32(o + 8, iovaBase, true);
  v.setUint32(o + 12, 0, true);
  v.setUint32(o + 16, iovaBase + n * 0x1000 - 1, true);
  v.setUint32(o + 20, 0, true);
  v.setUint32(o + 24, 0, true);
  return 28;
}
