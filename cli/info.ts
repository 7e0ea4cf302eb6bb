/**
 * `viommu info`: what initialisation negotiated and read (virtio 1.3 §5.13.3, §5.13.4): the
 * transport, the negotiated features by name, the config fields and the queue sizes.
 *
 * @module
 */

import type { IommuInfo } from "../driver/iommu/device.ts";
import { granuleShift } from "../driver/iommu/config.ts";
import { heading, keyValues, type Painter } from "./format.ts";
import { hex } from "../util/hex.ts";

/** The info as JSON fields (64-bit values become `0x…` strings when printed). */
export function infoJson(info: IommuInfo, device: string): Record<string, unknown> {
  const c = info.config;
  return {
    device,
    transport: info.transport,
    features: info.features,
    featureNames: info.featureNames,
    config: {
      pageSizeMask: c.pageSizeMask,
      inputStart: c.inputStart,
      inputEnd: c.inputEnd,
      domainStart: c.domainStart,
      domainEnd: c.domainEnd,
      probeSize: c.probeSize,
      bypass: c.bypass,
    },
    queues: { request: info.requestQueueSize, event: info.eventQueueSize },
  };
}

function size(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = bytes;
  let unit = 0;
  while (n >= 1024n && n % 1024n === 0n && unit < units.length - 1) {
    n /= 1024n;
    unit++;
  }
  return `${n} ${units[unit]}`;
}

/** The info for people. */
export function formatInfo(info: IommuInfo, device: string, painter: Painter): string {
  const c = info.config;
  const granule = 1n << BigInt(granuleShift(c.pageSizeMask));
  let out = heading(painter, `virtio-iommu on ${device}`);
  out += keyValues(painter, [
    ["transport", info.transport === "pci" ? "virtio-pci (modern)" : "virtio-mmio"],
    ["features", `${hex(info.features)}  ${info.featureNames.join(" ")}`],
  ]);
  out += heading(painter, "Config");
  out += keyValues(painter, [
    ["page_size_mask", `${hex(c.pageSizeMask)} (granule ${size(granule)})`],
    ["input_range", `${hex(c.inputStart)}-${hex(c.inputEnd)}`],
    [
      "domain_range",
      `${c.domainStart}-${c.domainEnd} (${hex(c.domainEnd - c.domainStart + 1)} IDs)`,
    ],
    ["probe_size", String(c.probeSize)],
    ["bypass", c.bypass === null ? "n/a (no BYPASS_CONFIG)" : String(c.bypass)],
  ]);
  out += heading(painter, "Queues");
  out += keyValues(painter, [
    ["requestq", `${info.requestQueueSize} entries`],
    ["eventq", `${info.eventQueueSize} entries`],
  ]);
  return out;
}
