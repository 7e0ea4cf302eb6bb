/**
 * Isolation groups enforced by the driver (issue 4; seeds 002 and 001): endpoints behind a
 * PCIe-to-PCI bridge share one requester-ID alias, so attaching one attaches the group, or is
 * refused naming it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { IommuError, isolationGroups, PciTree, resolveTopology } from "../mod.ts";
import type { TopologyDescription } from "../mod.ts";
import { setup } from "./_fixtures.ts";

/** Root bus 0: a PCIe-to-PCI bridge at 00:03.0 (bus 1) with two conventional endpoints. */
function bridgedTable() {
  const tree = new PciTree([
    { segment: 0, bus: 0, devfn: 0x08, type: "endpoint", isPcie: true },
    { segment: 0, bus: 0, devfn: 0x18, type: "pcie-to-pci-bridge", isPcie: true, secondaryBus: 1 },
    { segment: 0, bus: 1, devfn: 0x08, type: "endpoint" },
    { segment: 0, bus: 1, devfn: 0x10, type: "endpoint" },
  ]);
  // Endpoint ID = BDF for every requester ID, as QEMU's VIOT says on q35.
  const description: TopologyDescription = {
    iommus: [{ id: "viommu", pci: { segment: 0, bdf: 0x10 } }],
    pciRanges: [{
      source: "viot",
      segmentStart: 0,
      segmentEnd: 0,
      bdfStart: 0,
      bdfEnd: 0xffff,
      mask: 0xffff,
      endpointStart: 0,
      iommu: "viommu",
    }],
    mmioEndpoints: [],
  };
  return resolveTopology(tree, description);
}

const ENDPOINTS = [{ id: 0x08 }, { id: 0x18 }, { id: 0x100 }, { id: 0x108 }, { id: 0x110 }];

Deno.test("VirtioIommu.attach() attaches the whole isolation group behind a PCIe-to-PCI bridge", async () => {
  const table = bridgedTable();
  const groups = isolationGroups(table);
  const bridged = groups.find((g) => g.devices.includes("0000:01:01.0"));
  assert.ok(bridged, "the bridged endpoints form a group");
  assert.ok(bridged.endpointIds.includes(0x100), "the alias (01:00.0) is the group's endpoint");
  assert.ok(bridged.devices.includes("0000:00:03.0"), "the bridge that took over the RID joins");
  const { iommu, device } = await setup("mmio", { endpoints: ENDPOINTS });
  iommu.setIsolationGroups(groups);
  await iommu.attach(5, 0x100);
  for (const ep of bridged.endpointIds) assert.equal(device.endpointDomain(ep), 5);
  assert.equal(device.endpointDomain(0x08), null, "a device outside the group stays unattached");
  await iommu.close();
});

Deno.test("VirtioIommu.attach() with group 'refuse' names the group and sends nothing", async () => {
  const groups = isolationGroups(bridgedTable());
  const { iommu, device } = await setup("pci", { endpoints: ENDPOINTS });
  iommu.setIsolationGroups(groups);
  const handled = device.requestsHandled;
  await assert.rejects(iommu.attach(5, 0x100, { group: "refuse" }), (e: unknown) => {
    assert.ok(e instanceof IommuError);
    assert.equal(e.status, "DRIVER");
    assert.match(e.message, /isolation group \d+ \(.*0000:01:01\.0/);
    return true;
  });
  assert.equal(device.requestsHandled, handled);
  // A single-member group attaches normally either way.
  await iommu.attach(6, 0x08, { group: "refuse" });
  assert.equal(device.endpointDomain(0x08), 6);
  await iommu.close();
});

Deno.test("VirtioIommu.attach() refuses an endpoint whose reserved region the domain already maps", async () => {
  const { iommu, device } = await setup("mmio", {
    endpoints: [
      { id: 0x08, reservedRegions: [] },
      { id: 0x10, reservedRegions: [{ start: 0xfee0_0000n, end: 0xfeef_ffffn, subtype: "msi" }] },
    ],
  });
  await iommu.attach(1, 0x08);
  // 0x08 has no reserved region, so the MSI window can be mapped for it...
  await iommu.map(1, 0xfee0_0000, 0x1000, 0x1000, 1);
  // ...but 0x10 reserves it (QEMU's x86 MSI region): joining would expose the doorbell.
  await iommu.probe(0x10);
  await assert.rejects(iommu.attach(1, 0x10), (e: unknown) => {
    assert.ok(e instanceof IommuError && e.status === "DRIVER");
    assert.match(e.message, /msi region 0xfee00000-0xfeefffff/);
    return true;
  });
  assert.equal(device.endpointDomain(0x10), null, "nothing was sent");
  await iommu.unmap(1, 0xfee0_0000, 0x1000);
  await iommu.attach(1, 0x10);
  assert.equal(device.endpointDomain(0x10), 1);
  await iommu.close();
});
