/** resolveDevice() for hot-added devices and EndpointRegistry's deferral until the IOMMU is up. */

import assert from "node:assert/strict";
import { PciTree } from "../driver/topology/pci_tree.ts";
import { resolveDevice, resolveTopology } from "../driver/topology/resolve.ts";
import { describeViot } from "../driver/topology/description.ts";
import { EndpointRegistry } from "../driver/topology/deferral.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { assertCode, dev, HANDOFF, hierarchy, hierarchyViot, row } from "./_topology_resolve.ts";

Deno.test("resolveDevice() resolves a hot-added device and rejects an unknown one", () => {
  const description = describeViot(parseViot(hierarchyViot()));
  const tree = new PciTree([...hierarchy(HANDOFF), dev("0000:05:00.1", "endpoint")]);
  const hot = resolveDevice(tree, description, { device: "0000:05:00.1" });
  assert.equal(hot.endpointId, 0x0501);
  assert.equal(hot.group, null);
  assertCode(() => resolveDevice(tree, description, { device: "0000:09:00.0" }), "not-found");
});

Deno.test("EndpointRegistry defers devices until their IOMMU is ready, then hands them out in order", () => {
  const tree = new PciTree(hierarchy(HANDOFF));
  const table = resolveTopology(tree, describeViot(parseViot(hierarchyViot())));
  const attached: string[] = [];
  const registry = new EndpointRegistry((d) => attached.push(d.device));
  assert.equal(registry.add(row(table, "0000:04:00.0")), "deferred");
  assert.equal(registry.add(row(table, "0000:01:00.0")), "deferred");
  assert.equal(registry.add(row(table, "0000:00:02.0")), "untranslated");
  assert.deepEqual(attached, []);
  assert.equal(registry.pending("viot@48").length, 2);
  assert.deepEqual(registry.iommuReady("viot@48").map((d) => d.device), [
    "0000:04:00.0",
    "0000:01:00.0",
  ]);
  assert.deepEqual(attached, ["0000:04:00.0", "0000:01:00.0"]);
  // Hot-added after the IOMMU is up: attached at once.
  assert.equal(registry.add(row(table, "0000:81:00.0")), "attached");
  assert.equal(attached.at(-1), "0000:81:00.0");
  assert.equal(registry.pending().length, 0);
});

Deno.test("EndpointRegistry keeps a device whose attach failed and re-queues on IOMMU removal", () => {
  const tree = new PciTree(hierarchy(HANDOFF));
  const table = resolveTopology(tree, describeViot(parseViot(hierarchyViot())));
  let fail = true;
  const attached: string[] = [];
  const registry = new EndpointRegistry((d) => {
    if (fail && d.device === "0000:01:00.0") throw new Error("attach failed");
    attached.push(d.device);
  });
  registry.add(row(table, "0000:01:00.0"));
  registry.add(row(table, "0000:04:00.0"));
  assert.throws(() => registry.iommuReady("viot@48"), /attach failed/);
  assert.deepEqual(attached, ["0000:04:00.0"]);
  assert.deepEqual(registry.pending().map((d) => d.device), ["0000:01:00.0"]);
  fail = false;
  registry.iommuGone("viot@48");
  assert.equal(registry.pending().length, 2);
  assert.equal(registry.isReady("viot@48"), false);
  registry.iommuReady("viot@48");
  assert.equal(registry.pending().length, 0);
  assert.equal(registry.attached().length, 2);
  assert.equal(registry.remove("0000:04:00.0"), true);
  assert.equal(registry.remove("0000:04:00.0"), false);
});
