/**
 * Runs INSIDE the QEMU guest (see tests/real_device_test.ts): drives the real virtio-iommu-pci
 * at 0000:00:02.0 through the sysfs backend and prints one JSON report line prefixed with
 * `REPORT ` for the host-side test to assert on.
 *
 * @module
 */

import { openSysfsPci } from "../../transport/host/sysfs_pci.ts";
import type { RegisterSpace } from "../../transport/registers.ts";

/** The virtio-iommu's address in the default q35 guest. */
const IOMMU_BDF = "0000:00:02.0";

/** One vendor-specific (virtio) capability. */
interface VirtioCap {
  cfgType: number;
  bar: number;
  offset: number;
  length: number;
}

/** Walks the capability list and returns the virtio vendor capabilities (virtio 1.3 §4.1.4). */
function virtioCaps(config: RegisterSpace): VirtioCap[] {
  const caps: VirtioCap[] = [];
  let at = config.read8(0x34) & 0xfc;
  for (let guard = 0; at !== 0 && guard < 48; guard++) {
    if (config.read8(at) === 0x09) {
      caps.push({
        cfgType: config.read8(at + 3),
        bar: config.read8(at + 4),
        offset: config.read32(at + 8),
        length: config.read32(at + 12),
      });
    }
    at = config.read8(at + 1) & 0xfc;
  }
  return caps;
}

/** Collects the report. */
function main(): Record<string, unknown> {
  const report: Record<string, unknown> = {};
  const sysfs = `/sys/bus/pci/devices/${IOMMU_BDF}`;
  let driver: string | null = null;
  try {
    driver = Deno.readLinkSync(`${sysfs}/driver`);
  } catch {
    driver = null;
  }
  report.driverBefore = driver;
  report.virtioPciLoaded = Deno.readTextFileSync("/proc/modules").includes("virtio_pci");
  const dev = openSysfsPci(IOMMU_BDF);
  try {
    report.vendor = dev.config.read16(0);
    report.device = dev.config.read16(2);
    report.command = dev.config.read16(4);
    const caps = virtioCaps(dev.config);
    report.caps = caps;
    const common = caps.find((c) => c.cfgType === 1);
    if (common) {
      const bar = dev.bar(common.bar);
      if (bar) {
        bar.write32(common.offset + 0x00, 0);
        const lo = bar.read32(common.offset + 0x04);
        bar.write32(common.offset + 0x00, 1);
        const hi = bar.read32(common.offset + 0x04);
        report.deviceFeatures = "0x" +
          ((BigInt(hi) << 32n) | BigInt(lo)).toString(16).padStart(16, "0");
        report.numQueues = bar.read16(common.offset + 0x12);
      }
    }
  } finally {
    dev.close();
  }
  return report;
}

console.log("REPORT " + JSON.stringify(main()));
