/** A q35-like PCI hierarchy, its VIOT and small builders for topology_resolve_*_test.ts. */

import assert from "node:assert/strict";
import { parseBdf, type PciDevice } from "../driver/topology/pci_tree.ts";
import type { resolveTopology } from "../driver/topology/resolve.ts";
import { TopologyError, type TopologyErrorCode } from "../driver/topology/errors.ts";
import { buildViot, viotPciIommu, viotPciRange } from "../tools/topology/viot.ts";

export function assertCode(fn: () => unknown, code: TopologyErrorCode): void {
  assert.throws(fn, (e: unknown) => e instanceof TopologyError && e.code === code);
}

export function dev(bdf: string, type: PciDevice["type"], secondaryBus?: number): PciDevice {
  const d: PciDevice = { ...parseBdf(bdf), type };
  if (secondaryBus !== undefined) d.secondaryBus = secondaryBus;
  return d;
}

/** Secondary bus numbers of the bridges, so the same shape can be numbered twice. */
export interface Numbering {
  rp1: number;
  rp2: number;
  sw: number;
  dp1: number;
  dp2: number;
  rp3: number;
  pcie2pci: number;
  pci2pci: number;
  rp80: number;
}

export const HANDOFF: Numbering = {
  rp1: 1,
  rp2: 2,
  sw: 3,
  dp1: 4,
  dp2: 5,
  rp3: 6,
  pcie2pci: 7,
  pci2pci: 8,
  rp80: 0x81,
};

export function b(bus: number, rest: string): string {
  return `0000:${bus.toString(16).padStart(2, "0")}:${rest}`;
}

/**
 * q35-like hierarchy: host bridge, the virtio-iommu at 00:02.0, a root port with a
 * multifunction device, a root port with a switch (two downstream ports), a root port with a
 * PCIe-to-PCI bridge that has two devices and a conventional PCI bridge behind it, and a second
 * root bus 0x80 (pxb-pcie) with its own root port.
 */
export function hierarchy(n: Numbering): PciDevice[] {
  return [
    dev("0000:00:00.0", "host-bridge"),
    dev("0000:00:02.0", "endpoint"),
    dev("0000:00:05.0", "host-bridge"), // pxb-pcie, which creates root bus 0x80
    dev("0000:00:1c.0", "root-port", n.rp1),
    dev(b(n.rp1, "00.0"), "endpoint"),
    dev(b(n.rp1, "00.1"), "endpoint"),
    dev("0000:00:1d.0", "root-port", n.rp2),
    dev(b(n.rp2, "00.0"), "switch-upstream", n.sw),
    dev(b(n.sw, "00.0"), "switch-downstream", n.dp1),
    dev(b(n.sw, "01.0"), "switch-downstream", n.dp2),
    dev(b(n.dp1, "00.0"), "endpoint"),
    dev(b(n.dp2, "00.0"), "endpoint"),
    dev("0000:00:1e.0", "root-port", n.rp3),
    dev(b(n.rp3, "00.0"), "pcie-to-pci-bridge", n.pcie2pci),
    dev(b(n.pcie2pci, "01.0"), "endpoint"),
    dev(b(n.pcie2pci, "02.0"), "endpoint"),
    dev(b(n.pcie2pci, "03.0"), "pci-bridge", n.pci2pci),
    dev(b(n.pci2pci, "01.0"), "endpoint"),
    dev(b(n.pci2pci, "02.0"), "endpoint"),
    dev("0000:80:00.0", "root-port", n.rp80),
    dev(b(n.rp80, "00.0"), "endpoint"),
  ];
}

/** QEMU-style VIOT (hand-off numbering): IOMMU at 00:02.0, one identity range per root bus. */
export function hierarchyViot(): Uint8Array {
  return buildViot([
    viotPciIommu({ bdf: 0x0010 }),
    viotPciRange({ endpointStart: 0x0000, bdfStart: 0x0000, bdfEnd: 0x08ff, outputNode: 48 }),
    viotPciRange({ endpointStart: 0x8000, bdfStart: 0x8000, bdfEnd: 0x81ff, outputNode: 48 }),
  ]);
}

export function row(
  table: ReturnType<typeof resolveTopology>,
  device: string,
): (typeof table.rows)[number] {
  const found = table.rows.find((r) => r.device === device);
  assert.ok(found, `no row for ${device}`);
  return found;
}
