/**
 * `viommu topology`: which endpoint ID each PCI function gets, through which topology source,
 * and its isolation group. For the mock, the PCI tree of QEMU's q35 guest (one function per
 * endpoint ID, endpoint = BDF, the IOMMU at 00:02.0) with QEMU's VIOT, or with the draft's
 * built-in topology read from the device (`--topology-layout draft`). For a real device, the
 * sysfs PCI tree with `/sys/firmware/acpi/tables/VIOT`. Field names are the library's
 * (`ResolvedDevice`, `ResolvedMmio`, `IsolationGroup`) in the table, the tree and the JSON;
 * IDs print as `0x…` in text and as numbers in JSON, and `null` (text `-`) means "none".
 *
 * @module
 */

import { probeBuiltinTopology } from "../driver/topology/builtin.ts";
import {
  describeBuiltin,
  describeViot,
  type TopologyDescription,
} from "../driver/topology/description.ts";
import { parseBdf, type PciDevice, PciTree } from "../driver/topology/pci_tree.ts";
import {
  type IsolationGroup,
  isolationGroups,
  type ResolvedMmio,
  resolveTopology,
  type TopologyTable,
} from "../driver/topology/resolve.ts";
import { parseViot } from "../driver/topology/viot.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import {
  type DeviceSpec,
  mockBdfEnd,
  mockEndpointIds,
  openHostPci,
  plugMock,
  Q35_IOMMU_BDF,
} from "./device.ts";
import { heading, type Painter, table } from "./format.ts";
import { requireHostPermissions } from "./permissions.ts";
import { hex } from "../util/hex.ts";
import { q35Viot } from "../mock/q35_viot.ts";

/** Where the kernel exposes the firmware's VIOT. */
export const SYSFS_VIOT = "/sys/firmware/acpi/tables/VIOT";

/** The resolved topology and where it came from. */
export interface TopologyReport {
  /** `viot` or `builtin`. */
  source: "viot" | "builtin";
  /** The PCI hierarchy the table was resolved on. */
  tree: PciTree;
  /** The resolved table. */
  table: TopologyTable;
  /** Isolation groups. */
  groups: IsolationGroup[];
}

/**
 * The mock's PCI tree: one function on segment 0 per endpoint ID (bus = id >> 8, devfn = id &
 * 0xff), plus the IOMMU at 00:02.0; 00:00.0 is q35's host bridge.
 */
export function mockPciTree(options: MockIommuOptions): PciTree {
  const ids = new Set(mockEndpointIds(options).filter((id) => id <= 0xffff));
  ids.add(Q35_IOMMU_BDF);
  const devices: PciDevice[] = [...ids].sort((a, b) => a - b).map((id) => ({
    segment: 0,
    bus: id >> 8,
    devfn: id & 0xff,
    type: id === 0 ? "host-bridge" : "endpoint",
    isPcie: false,
  }));
  return new PciTree(devices);
}

/** Reads and resolves the topology of the device `spec` names. */
export async function readTopology(spec: DeviceSpec): Promise<TopologyReport> {
  let tree: PciTree;
  let description: TopologyDescription;
  if (spec.kind === "mock") {
    tree = mockPciTree(spec.options);
    if (spec.layout === "draft") {
      const plugged = plugMock(spec);
      const builtin = probeBuiltinTopology(plugged.transport, { layout: "draft" });
      description = describeBuiltin(builtin ?? { items: [], skipped: 0 }, {
        pci: { segment: 0, bdf: Q35_IOMMU_BDF },
      });
    } else {
      description = describeViot(parseViot(q35Viot({ bdfEnd: mockBdfEnd(spec.options) })));
    }
  } else {
    requireHostPermissions(`pci:${spec.bdf}`);
    // The sysfs readers are loaded on demand: the mock path reads no file.
    const sysfs = await import("../host/sysfs_topology.ts");
    tree = await sysfs.readSysfsPciTree();
    if (spec.layout === "draft") {
      const host = await openHostPci(spec.bdf);
      try {
        const builtin = probeBuiltinTopology(host.transport, { layout: "draft" });
        const self = parseBdf(spec.bdf);
        description = describeBuiltin(builtin ?? { items: [], skipped: 0 }, {
          pci: { segment: self.segment, bdf: (self.bus << 8) | self.devfn },
        });
      } finally {
        host.close();
      }
    } else {
      const viot = await sysfs.readSysfsViot();
      if (viot === null) {
        throw new Error(`This machine has no ACPI VIOT (${SYSFS_VIOT}): no topology to resolve`);
      }
      description = describeViot(viot);
    }
  }
  const resolved = resolveTopology(tree, description);
  return {
    source: spec.layout === "draft" ? "builtin" : "viot",
    tree,
    table: resolved,
    groups: isolationGroups(resolved),
  };
}

/** The report as a JSON object (the CLI adds `cmd` and `ok`). */
export function topologyJson(report: TopologyReport): Record<string, unknown> {
  return {
    source: report.source,
    devices: report.table.rows.map((row) => ({
      device: row.device,
      type: row.type,
      requesterId: row.requesterId,
      alias: row.alias,
      endpointId: row.endpointId,
      iommu: row.iommu,
      group: row.group,
      note: row.note,
    })),
    mmio: report.table.mmio.map((m) => ({
      address: m.address,
      endpointId: m.endpointId,
      iommu: m.iommu,
    })),
    groups: report.groups.map((g) => ({
      id: g.id,
      iommu: g.iommu,
      devices: g.devices,
      endpointIds: g.endpointIds,
    })),
  };
}

/** An ID for people: `0x…`, or `-` for none (`null` in the JSON). */
export function idText(value: number | null): string {
  return value === null ? "-" : hex(value);
}

/** The report as a table for people, one row per PCI function, columns named as in the JSON. */
export function formatTopology(report: TopologyReport, painter: Painter): string {
  const rows = report.table.rows.map((row) => [
    row.device,
    hex(row.requesterId),
    hex(row.alias),
    idText(row.endpointId),
    row.group === null ? "-" : String(row.group),
    row.note ?? "",
  ]);
  let out = heading(painter, `topology (${report.source === "viot" ? "ACPI VIOT" : "built-in"})`);
  out += table(
    painter,
    ["device", "requesterId", "alias", "endpointId", "group", "note"],
    rows,
  );
  for (const m of report.table.mmio) out += mmioLine(m) + "\n";
  return out;
}

/** One MMIO endpoint for people. */
export function mmioLine(m: ResolvedMmio): string {
  return `mmio ${hex(m.address)}  endpointId ${hex(m.endpointId)}  iommu ${m.iommu}`;
}
