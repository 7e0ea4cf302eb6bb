/**
 * Topology: which endpoint ID does each PCI function use in ATTACH? On x86 the firmware says
 * so in the ACPI VIOT table (ACPI 6.4 §5.2.30). Here: QEMU q35's table (endpoint ID = BDF, the
 * IOMMU itself at 00:02.0), a PCIe-to-PCI bridge whose devices all DMA with the bridge's
 * requester ID, and the isolation groups that follow (devices that must share a domain).
 *
 * Run: `deno run examples/topology.ts`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { describeViot, isolationGroups, parseViot, PciTree, resolveTopology } from "../mod.ts";
import { q35Viot } from "../testing.ts";

// The VIOT covers buses 0-2 here (QEMU's covers what the machine has).
const viot = parseViot(q35Viot({ bdfEnd: 0x02ff }));
const tree = new PciTree([
  { segment: 0, bus: 0, devfn: 0x00, type: "host-bridge" },
  { segment: 0, bus: 0, devfn: 0x08, type: "endpoint", isPcie: true },
  { segment: 0, bus: 0, devfn: 0x10, type: "endpoint" }, // the virtio-iommu
  { segment: 0, bus: 0, devfn: 0x18, type: "root-port", secondaryBus: 1, isPcie: true },
  { segment: 0, bus: 1, devfn: 0x00, type: "pcie-to-pci-bridge", secondaryBus: 2, isPcie: true },
  { segment: 0, bus: 2, devfn: 0x08, type: "endpoint" }, // conventional PCI behind the bridge
  { segment: 0, bus: 2, devfn: 0x10, type: "endpoint" },
]);
const table = resolveTopology(tree, describeViot(viot));

console.log("device        rid     alias   endpoint  group");
for (const row of table.rows) {
  const ep = row.endpointId === null ? "-" : hex(row.endpointId);
  console.log(
    `${row.device}  ${(hex(row.requesterId)).padEnd(6)}  ${(hex(row.alias)).padEnd(6)}  ${
      ep.padEnd(8)
    }  ${row.group ?? "-"}${row.note ? "  (" + row.note + ")" : ""}`,
  );
}
for (const group of isolationGroups(table)) {
  if (group.devices.length > 1) {
    console.log(`group ${group.id} must share one domain: ${group.devices.join(", ")}`);
  }
}
