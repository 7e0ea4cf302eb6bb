import assert from "node:assert/strict";
import {
  formatBdf,
  parseBdf,
  type PciDevice,
  pciDeviceFromConfig,
  PciTree,
} from "../driver/topology/pci_tree.ts";
import {
  groupOf,
  isolationGroups,
  resolveDevice,
  resolveTopology,
} from "../driver/topology/resolve.ts";
import {
  describeBuiltin,
  describeFdt,
  describeViot,
  mergeDescriptions,
} from "../driver/topology/description.ts";
import { EndpointRegistry } from "../driver/topology/deferral.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { fdtTopology } from "../driver/topology/fdt.ts";
import { readBuiltinTopology } from "../driver/topology/builtin.ts";
import { TopologyError, type TopologyErrorCode } from "../driver/topology/errors.ts";
import { buildViot, qemuQ35Viot, viotPciIommu, viotPciRange } from "./_topology_viot.ts";
import { virtLikeFdt } from "./_topology_fdt.ts";
import { ConfigSpace } from "./_topology_builtin.ts";

function assertCode(fn: () => unknown, code: TopologyErrorCode): void {
  assert.throws(fn, (e: unknown) => e instanceof TopologyError && e.code === code);
}

function dev(bdf: string, type: PciDevice["type"], secondaryBus?: number): PciDevice {
  const d: PciDevice = { ...parseBdf(bdf), type };
  if (secondaryBus !== undefined) d.secondaryBus = secondaryBus;
  return d;
}

/** Secondary bus numbers of the bridges, so the same shape can be numbered twice. */
interface Numbering {
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

const HANDOFF: Numbering = {
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

function b(bus: number, rest: string): string {
  return `0000:${bus.toString(16).padStart(2, "0")}:${rest}`;
}

/**
 * q35-like hierarchy: host bridge, the virtio-iommu at 00:02.0, a root port with a
 * multifunction device, a root port with a switch (two downstream ports), a root port with a
 * PCIe-to-PCI bridge that has two devices and a conventional PCI bridge behind it, and a second
 * root bus 0x80 (pxb-pcie) with its own root port.
 */
function hierarchy(n: Numbering): PciDevice[] {
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
function hierarchyViot(): Uint8Array {
  return buildViot([
    viotPciIommu({ bdf: 0x0010 }),
    viotPciRange({ endpointStart: 0x0000, bdfStart: 0x0000, bdfEnd: 0x08ff, outputNode: 48 }),
    viotPciRange({ endpointStart: 0x8000, bdfStart: 0x8000, bdfEnd: 0x81ff, outputNode: 48 }),
  ]);
}

function row(
  table: ReturnType<typeof resolveTopology>,
  device: string,
): (typeof table.rows)[number] {
  const found = table.rows.find((r) => r.device === device);
  assert.ok(found, `no row for ${device}`);
  return found;
}

Deno.test("parseBdf() and formatBdf() round-trip and reject malformed addresses", () => {
  assert.deepEqual(parseBdf("0001:1f:1d.7"), { segment: 1, bus: 0x1f, devfn: (0x1d << 3) | 7 });
  assert.deepEqual(parseBdf("02:00.1"), { segment: 0, bus: 2, devfn: 1 });
  assert.equal(formatBdf(1, 0x1f, (0x1d << 3) | 7), "0001:1f:1d.7");
  assert.throws(() => parseBdf("00:20.0"), TypeError);
  assert.throws(() => parseBdf("0000:00:02"), TypeError);
});

Deno.test("PciTree finds parents, root buses and devfn paths, including a second root bus", () => {
  const tree = new PciTree(hierarchy(HANDOFF));
  const behindBridge = tree.get("0000:08:02.0")!;
  assert.equal(behindBridge.parent!.bdf, "0000:07:03.0");
  assert.equal(behindBridge.rootBus, 0);
  assert.equal(tree.pathKey(behindBridge), "0000:00/1e.0/00.0/03.0/02.0");
  const second = tree.get("0000:81:00.0")!;
  assert.equal(second.rootBus, 0x80);
  assert.equal(tree.pathKey(second), "0000:80/00.0/00.0");
  assert.equal(tree.get("0000:00:02.0")!.parent, null);
});

Deno.test("PciTree.dmaAlias() follows seed 002: PCIe-to-PCI gives (secondary, 0), PCI bridge its own devfn", () => {
  const tree = new PciTree(hierarchy(HANDOFF));
  const alias = (bdf: string): string => {
    const a = tree.dmaAlias(tree.get(bdf)!);
    return formatBdf(0, a.bus, a.devfn);
  };
  assert.equal(alias("0000:01:00.1"), "0000:01:00.1", "root port: no alias");
  assert.equal(alias("0000:04:00.0"), "0000:04:00.0", "switch: no alias");
  assert.equal(alias("0000:07:01.0"), "0000:07:00.0", "behind PCIe-to-PCI: (secondary bus, 0)");
  assert.equal(alias("0000:07:03.0"), "0000:07:00.0", "the conventional bridge itself");
  assert.equal(alias("0000:08:02.0"), "0000:07:00.0", "conventional bridge, then PCIe-to-PCI");
  assert.deepEqual(tree.dmaAlias(tree.get("0000:08:02.0")!).via.map((n) => n.bdf), [
    "0000:07:03.0",
    "0000:06:00.0",
  ]);
});

Deno.test("PciTree.dmaAlias() behind a conventional bridge on a PCIe bus is the bridge's own ID", () => {
  const tree = new PciTree([
    dev("0000:00:1c.0", "root-port", 1),
    dev("0000:01:00.0", "pci-bridge", 2),
    dev("0000:02:04.0", "endpoint"),
  ]);
  const a = tree.dmaAlias(tree.get("0000:02:04.0")!);
  assert.equal(a.rid, 0x0100);
});

Deno.test("PciTree rejects duplicates, missing or shared secondary buses, bad numbers and loops", () => {
  assertCode(
    () => new PciTree([dev("00:01.0", "endpoint"), dev("00:01.0", "endpoint")]),
    "duplicate",
  );
  assertCode(() => new PciTree([dev("00:01.0", "root-port")]), "invalid-range");
  assertCode(
    () => new PciTree([dev("00:01.0", "root-port", 1), dev("00:02.0", "root-port", 1)]),
    "duplicate",
  );
  assertCode(
    () => new PciTree([{ segment: 0, bus: 256, devfn: 0, type: "endpoint" }]),
    "invalid-range",
  );
  assertCode(
    () => new PciTree([{ segment: -1, bus: 0, devfn: 0, type: "endpoint" }]),
    "invalid-range",
  );
  assertCode(
    () =>
      new PciTree([
        dev("01:00.0", "pci-bridge", 2),
        dev("02:00.0", "pci-bridge", 1),
        dev("02:01.0", "endpoint"),
      ]),
    "loop",
  );
  assertCode(() => new PciTree([dev("01:00.0", "pci-bridge", 1)]), "loop");
});

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

/** Config bytes: vendor, header type, class, and optionally a PCIe capability of `portType`. */
function config(
  headerType: number,
  classCode: number,
  portType: number | null,
  size = 256,
): Uint8Array {
  const c = new Uint8Array(size);
  const v = new DataView(c.buffer);
  v.setUint16(0, 0x1b36, true);
  v.setUint16(0x0a, classCode, true);
  c[0x0e] = headerType;
  if (headerType === 1) c[0x19] = 5;
  if (portType !== null) {
    c[0x06] = 0x10;
    c[0x34] = 0x40;
    c[0x40] = 0x05; // MSI first
    c[0x41] = 0x60;
    c[0x60] = 0x10; // PCI Express
    c[0x62] = (portType << 4) | 2;
  }
  return c;
}

Deno.test("pciDeviceFromConfig() classifies functions from config space", () => {
  const at = { segment: 0, bus: 0, devfn: 8 };
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, 4)).type, "root-port");
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, 4)).secondaryBus, 5);
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, 5)).type, "switch-upstream");
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, 6)).type, "switch-downstream");
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, 7)).type, "pcie-to-pci-bridge");
  assert.equal(pciDeviceFromConfig(at, config(1, 0x0604, null)).type, "pci-bridge");
  assert.equal(
    pciDeviceFromConfig(at, config(1, 0x0604, 7, 64)).type,
    "pci-bridge",
    "caps not visible",
  );
  assert.equal(pciDeviceFromConfig(at, config(0, 0x0600, null)).type, "host-bridge");
  const ep = pciDeviceFromConfig(at, config(0, 0x0200, 0));
  assert.deepEqual([ep.type, ep.isPcie], ["endpoint", true]);
});

Deno.test("pciDeviceFromConfig() rejects short config, absent functions and capability loops", () => {
  const at = { segment: 0, bus: 0, devfn: 8 };
  assertCode(() => pciDeviceFromConfig(at, new Uint8Array(32)), "truncated");
  assertCode(() => pciDeviceFromConfig(at, new Uint8Array(64).fill(0xff)), "not-found");
  const loop = config(0, 0x0200, 0);
  loop[0x61] = 0x40; // PCIe → MSI → PCIe … never reaches the end
  loop[0x60] = 0x05;
  assertCode(() => pciDeviceFromConfig(at, loop), "loop");
  const bad = config(0, 0x0200, 0);
  bad[0x34] = 0x20;
  assertCode(() => pciDeviceFromConfig(at, bad), "overrun");
});
