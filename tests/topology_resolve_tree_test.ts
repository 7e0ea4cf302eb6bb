/** resolveTopology() over q35-like hierarchies: endpoint IDs, groups, renumbering, sources. */

import assert from "node:assert/strict";
import { PciTree } from "../driver/topology/pci_tree.ts";
import { groupOf, isolationGroups, resolveTopology } from "../driver/topology/resolve.ts";
import {
  describeBuiltin,
  describeFdt,
  describeViot,
  mergeDescriptions,
} from "../driver/topology/description.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { fdtTopology } from "../driver/topology/fdt.ts";
import { readBuiltinTopology } from "../driver/topology/builtin.ts";
import { buildViot, qemuQ35Viot, viotPciIommu, viotPciRange } from "../tools/topology/viot.ts";
import { virtLikeFdt } from "../tools/topology/fdt.ts";
import { ConfigSpace } from "../tools/topology/builtin.ts";
import {
  dev,
  HANDOFF,
  hierarchy,
  hierarchyViot,
  type Numbering,
  row,
} from "./_topology_resolve.ts";

const RENUMBERED: Numbering = {
  rp1: 0x10,
  rp2: 0x20,
  sw: 0x21,
  dp1: 0x22,
  dp2: 0x23,
  rp3: 0x30,
  pcie2pci: 0x31,
  pci2pci: 0x32,
  rp80: 0x90,
};

Deno.test("resolveTopology() on QEMU's q35 VIOT: endpoint ID = BDF, the IOMMU excluded", () => {
  const tree = new PciTree([
    dev("00:00.0", "host-bridge"),
    dev("00:01.0", "endpoint"),
    dev("00:02.0", "endpoint"),
    dev("00:03.0", "endpoint"),
    dev("00:1f.0", "endpoint"),
  ]);
  const table = resolveTopology(tree, describeViot(parseViot(qemuQ35Viot())));
  assert.equal(row(table, "0000:00:03.0").endpointId, 0x18);
  assert.equal(row(table, "0000:00:03.0").iommu, "viot@48");
  assert.equal(row(table, "0000:00:03.0").source, "viot");
  assert.equal(row(table, "0000:00:1f.0").endpointId, 0xf8);
  const iommu = row(table, "0000:00:02.0");
  assert.equal(iommu.endpointId, null);
  assert.equal(iommu.group, null);
  assert.match(iommu.note!, /IOMMU itself/);
  assert.equal(isolationGroups(table).length, 4);
});

Deno.test("resolveTopology() groups devices behind a PCIe-to-PCI bridge with the bridge, others alone", () => {
  const tree = new PciTree(hierarchy(HANDOFF));
  const table = resolveTopology(tree, describeViot(parseViot(hierarchyViot())));
  const legacy = groupOf(table, "0000:08:01.0")!;
  assert.deepEqual(legacy.devices, [
    "0000:06:00.0",
    "0000:07:01.0",
    "0000:07:02.0",
    "0000:07:03.0",
    "0000:08:01.0",
    "0000:08:02.0",
  ]);
  assert.deepEqual(legacy.endpointIds, [0x0600, 0x0700]);
  assert.equal(row(table, "0000:08:02.0").endpointId, 0x0700);
  assert.equal(row(table, "0000:08:02.0").requesterId, 0x0810);
  assert.equal(row(table, "0000:08:02.0").aliasDevice, "0000:07:00.0");
  // Functions behind a root port and a switch are isolated from each other (no ACS modelled).
  assert.notEqual(row(table, "0000:01:00.0").group, row(table, "0000:01:00.1").group);
  assert.deepEqual(groupOf(table, "0000:04:00.0")!.devices, ["0000:04:00.0"]);
  // The second root bus is covered by its own range.
  assert.equal(row(table, "0000:81:00.0").endpointId, 0x8100);
  // Groups are numbered densely in address order and every translated row has one.
  const groups = isolationGroups(table);
  assert.deepEqual(groups.map((g) => g.id), groups.map((_, i) => i));
  assert.ok(table.rows.every((r) => (r.endpointId === null) === (r.group === null)));
});

Deno.test("resolveTopology() matches a renumbered tree through root bus + devfn paths (seed 000)", () => {
  const handoff = new PciTree(hierarchy(HANDOFF));
  const current = new PciTree(hierarchy(RENUMBERED));
  const description = describeViot(parseViot(hierarchyViot()));

  // Without the hand-off tree, the current numbers fall outside the firmware's ranges.
  const naive = resolveTopology(current, description);
  assert.equal(row(naive, "0000:31:01.0").endpointId, null);

  const table = resolveTopology(current, description, { handoff });
  const legacy = row(table, "0000:32:02.0");
  assert.equal(legacy.handoffAlias, 0x0700);
  assert.equal(legacy.alias, 0x3100);
  assert.equal(legacy.endpointId, 0x3100, "ATTACH uses the current requester ID");
  assert.equal(row(table, "0000:22:00.0").endpointId, 0x2200);
  assert.equal(row(table, "0000:90:00.0").endpointId, 0x9000);
  assert.equal(row(table, "0000:90:00.0").handoffAlias, 0x8100);
  assert.equal(row(table, "0000:00:02.0").endpointId, null);
  // Same groups as before renumbering.
  const before = isolationGroups(resolveTopology(handoff, description));
  const after = isolationGroups(table);
  assert.deepEqual(after.map((g) => g.devices.length), before.map((g) => g.devices.length));

  const literal = resolveTopology(current, description, { handoff, numbering: "handoff" });
  assert.equal(row(literal, "0000:32:02.0").endpointId, 0x0700);
});

Deno.test("resolveTopology() reports an endpoint ID pushed below zero by renumbering instead of inventing one", () => {
  const handoff = new PciTree([dev("00:1c.0", "root-port", 0x40), dev("40:00.0", "endpoint")]);
  const current = new PciTree([dev("00:1c.0", "root-port", 0x01), dev("01:00.0", "endpoint")]);
  const viot = parseViot(buildViot([
    viotPciIommu({ bdf: 0x10 }),
    viotPciRange({ endpointStart: 0, bdfStart: 0x4000, bdfEnd: 0x40ff, outputNode: 48 }),
  ]));
  const r = row(resolveTopology(current, describeViot(viot), { handoff }), "0000:01:00.0");
  assert.equal(r.endpointId, null);
  assert.match(r.note!, /outside 32 bits/);
});

Deno.test("resolveTopology() through the built-in topology and the device tree, first source wins", () => {
  const tree = new PciTree([
    dev("00:01.0", "endpoint"),
    dev("00:02.0", "endpoint"),
    dev("00:03.0", "endpoint"),
  ]);
  const config = new ConfigSpace().topo(0x40, 2, 12)
    .pciRange(0x40, { start: 0x08, end: 0x0f, endpointStart: 0x100 })
    .pciRange(0x4c, { start: 0x00, end: 0xff, endpointStart: 0x1000 });
  const builtin = describeBuiltin(readBuiltinTopology((o) => config.read32(o), "draft")!, {
    pci: { segment: 0, bdf: 0x10 },
  });
  const b1 = resolveTopology(tree, builtin);
  assert.equal(row(b1, "0000:00:01.0").endpointId, 0x100);
  assert.equal(row(b1, "0000:00:03.0").endpointId, 0x1018);
  assert.equal(row(b1, "0000:00:02.0").endpointId, null);

  const fdt = describeFdt(fdtTopology(virtLikeFdt()));
  const f = resolveTopology(tree, fdt);
  assert.equal(row(f, "0000:00:03.0").endpointId, 0x18);
  assert.equal(row(f, "0000:00:03.0").iommu, "fdt:/virtio_mmio@a000000");
  assert.equal(row(f, "0000:00:01.0").endpointId, null, "RID 8 is outside the iommu-map");
  assert.deepEqual(f.mmio, [{
    address: 0x9000000n,
    endpointId: 0x20,
    iommu: "fdt:/virtio_mmio@a000000",
    source: "fdt",
    path: "/ethernet@9000000",
  }]);

  const both = resolveTopology(tree, mergeDescriptions(fdt, builtin));
  assert.equal(row(both, "0000:00:03.0").source, "fdt");
  assert.equal(row(both, "0000:00:01.0").source, "builtin");
});
