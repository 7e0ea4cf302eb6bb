/**
 * A device model that presents another model's config with the 2020 draft's built-in topology
 * after it (seed 001): `topo_config {offset, num_items, item_length}` at config offset 36, where
 * the published spec later put `bypass` (virtio 1.3 §5.13.4), and the items from offset 48. The
 * draft's F_TOPOLOGY is feature bit 6, which the spec gave to BYPASS_CONFIG, so a driver of a
 * draft device must not negotiate bit 6 as BYPASS_CONFIG. Used by `--topology-layout draft`.
 *
 * @module
 */

import type { DeviceContext, DeviceModel } from "../mock/device.ts";
import {
  DRAFT_CONFIG_SIZE,
  DRAFT_F_TOPOLOGY,
  DRAFT_TOPO_ITEM_LENGTH,
  DRAFT_TOPO_NUM_ITEMS,
  DRAFT_TOPO_OFFSET,
  TOPO_PCI_RANGE,
  TOPO_PCI_RANGE_SIZE,
} from "../driver/topology/builtin.ts";

/** One PCI_RANGE item of the draft topology. */
export interface DraftPciRange {
  /** PCI domain (segment). */
  hierarchy: number;
  /** First requester ID. */
  requesterStart: number;
  /** Last requester ID (inclusive). */
  requesterEnd: number;
  /** Endpoint ID of `requesterStart`. */
  endpointStart: number;
}

/** Wraps `inner`, replacing config bytes 36.. with the draft topology. */
export class DraftTopologyModel implements DeviceModel {
  /** The wrapped model's device ID. */
  readonly deviceId: number;
  /** The wrapped model's features, with bit 6 (draft F_TOPOLOGY) set. */
  readonly features: bigint;
  /** The wrapped model's queue sizes. */
  readonly queueSizes: readonly number[];
  /** 48 bytes of config plus the items. */
  readonly configSize: number;
  #inner: DeviceModel;
  #tail: DataView;

  /** Creates the wrapper presenting `ranges` as PCI_RANGE items. */
  constructor(inner: DeviceModel, ranges: readonly DraftPciRange[]) {
    this.#inner = inner;
    this.deviceId = inner.deviceId;
    this.features = inner.features | (1n << DRAFT_F_TOPOLOGY);
    this.queueSizes = inner.queueSizes;
    this.configSize = DRAFT_CONFIG_SIZE + ranges.length * TOPO_PCI_RANGE_SIZE;
    const bytes = new Uint8Array(this.configSize - DRAFT_TOPO_OFFSET);
    const view = new DataView(bytes.buffer);
    const at = (offset: number): number => offset - DRAFT_TOPO_OFFSET;
    view.setUint32(at(DRAFT_TOPO_OFFSET), ranges.length > 0 ? DRAFT_CONFIG_SIZE : 0, true);
    view.setUint32(at(DRAFT_TOPO_NUM_ITEMS), ranges.length, true);
    view.setUint32(at(DRAFT_TOPO_ITEM_LENGTH), TOPO_PCI_RANGE_SIZE, true);
    ranges.forEach((range, i) => {
      // PCI_RANGE: le16 type, le16 hierarchy, le16 requester_start, le16 requester_end,
      // le32 endpoint_start.
      const base = at(DRAFT_CONFIG_SIZE + i * TOPO_PCI_RANGE_SIZE);
      view.setUint16(base, TOPO_PCI_RANGE, true);
      view.setUint16(base + 2, range.hierarchy, true);
      view.setUint16(base + 4, range.requesterStart, true);
      view.setUint16(base + 6, range.requesterEnd, true);
      view.setUint32(base + 8, range.endpointStart, true);
    });
    this.#tail = view;
  }

  /** Plugs the wrapped model. */
  attach(context: DeviceContext): void {
    this.#inner.attach(context);
  }

  /** Reads the wrapped config below offset 36 and the topology from there on. */
  readConfig(offset: number, width: number): number {
    if (offset + width <= DRAFT_TOPO_OFFSET) return this.#inner.readConfig(offset, width);
    if (offset < DRAFT_TOPO_OFFSET) return 0;
    const at = offset - DRAFT_TOPO_OFFSET;
    if (width === 1) return this.#tail.getUint8(at);
    if (width === 2) return this.#tail.getUint16(at, true);
    return this.#tail.getUint32(at, true);
  }

  /** Forwards writes below offset 36; the topology is read-only. */
  writeConfig(offset: number, width: number, value: number): void {
    if (offset + width <= DRAFT_TOPO_OFFSET) this.#inner.writeConfig(offset, width, value);
  }

  /** Forwards the notification. */
  notify(index: number): void {
    this.#inner.notify(index);
  }

  /** Forwards the reset. */
  reset(): void {
    this.#inner.reset();
  }
}
