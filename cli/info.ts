/**
 * `viommu info`: what initialisation found and agreed on (virtio 1.3 §5.13.3, §5.13.4): the
 * transport, the features the device offered and those the driver accepted (the rest are named
 * as declined, so that an offered bit such as RING_RESET does not vanish unseen), the config
 * fields and the queue sizes. Field names are the library's (`IommuInfo`, `IommuConfig`) in
 * the text and in the JSON alike.
 *
 * @module
 */

import type { IommuInfo } from "../driver/iommu/device.ts";
import { granuleShift } from "../driver/iommu/config.ts";
import type { TopologyLayout } from "../driver/topology/builtin.ts";
import { DRAFT_F_TOPOLOGY } from "../driver/topology/builtin.ts";
import { featureNames } from "../spec/features.ts";
import { IOMMU_FEATURE_NAMES } from "../spec/iommu.ts";
import { heading, keyValues, type Painter } from "./format.ts";
import { hex } from "../util/hex.ts";

/** What `info` shows: the driver's {@link IommuInfo} plus what the device offered. */
export interface InfoReport {
  /** Which device, for the heading (`mock (pci)`, `pci:0000:00:02.0`). */
  device: string;
  /** The config layout the driver read. */
  layout: TopologyLayout;
  /** The feature bits the device offered. */
  offeredFeatures: bigint;
  /** What initialisation negotiated and read. */
  info: IommuInfo;
}

/** Feature names for `layout`: in the 2020 draft, bit 6 is F_TOPOLOGY, not BYPASS_CONFIG. */
function namesFor(layout: TopologyLayout): ReadonlyMap<bigint, string> {
  if (layout !== "draft") return IOMMU_FEATURE_NAMES;
  return new Map([...IOMMU_FEATURE_NAMES, [DRAFT_F_TOPOLOGY, "TOPOLOGY"]]);
}

/** The report as JSON fields (64-bit values become `0x…` strings when printed). */
export function infoJson(report: InfoReport): Record<string, unknown> {
  const { info, offeredFeatures } = report;
  const names = namesFor(report.layout);
  return {
    device: report.device,
    layout: report.layout,
    transport: info.transport,
    offeredFeatures,
    offeredFeatureNames: featureNames(offeredFeatures, names),
    features: info.features,
    featureNames: info.featureNames,
    declinedFeatureNames: featureNames(offeredFeatures & ~info.features, names),
    config: { ...info.config },
    requestQueueSize: info.requestQueueSize,
    eventQueueSize: info.eventQueueSize,
    interrupts: info.interrupts,
    ring: info.ring,
    queueReset: info.queueReset,
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

/** The report for people: the same names as the JSON, IDs in decimal, the rest in hex. */
export function formatInfo(report: InfoReport, painter: Painter): string {
  const json = infoJson(report);
  const { info } = report;
  const c = info.config;
  const granule = 1n << BigInt(granuleShift(c.pageSizeMask));
  const list = (names: unknown): string => (names as string[]).join(" ") || "none";
  let out = heading(painter, `virtio-iommu on ${report.device}`);
  out += keyValues(painter, [
    ["transport", info.transport === "pci" ? "pci (virtio-pci modern)" : "mmio (virtio-mmio)"],
    ["offeredFeatures", `${hex(report.offeredFeatures)}  ${list(json.offeredFeatureNames)}`],
    ["features", `${hex(info.features)}  ${list(json.featureNames)}  (negotiated)`],
    ["declinedFeatures", `${list(json.declinedFeatureNames)}  (offered, not accepted)`],
  ]);
  out += heading(painter, "config (virtio 1.3 §5.13.4)");
  out += keyValues(painter, [
    ["pageSizeMask", `${hex(c.pageSizeMask)}  (granule ${size(granule)})`],
    ["inputStart", hex(c.inputStart)],
    ["inputEnd", hex(c.inputEnd)],
    ["domainStart", String(c.domainStart)],
    ["domainEnd", `${c.domainEnd}  (${BigInt(c.domainEnd) - BigInt(c.domainStart) + 1n} IDs)`],
    ["probeSize", String(c.probeSize)],
    ["bypass", c.bypass === null ? "null  (no BYPASS_CONFIG)" : String(c.bypass)],
  ]);
  out += heading(painter, "queues");
  out += keyValues(painter, [
    ["ring", info.ring === "packed" ? "packed  (virtio 1.3 §2.8)" : "split  (virtio 1.3 §2.7)"],
    ["requestQueueSize", String(info.requestQueueSize)],
    ["eventQueueSize", String(info.eventQueueSize)],
    [
      "interrupts",
      info.interrupts.mode === "off"
        ? `off, polling  (${info.interrupts.reason})`
        : info.interrupts.mode,
    ],
    ["queueReset", info.queueReset ? "true  (RING_RESET, §2.6.1)" : "false"],
  ]);
  return out;
}
