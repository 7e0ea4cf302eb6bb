/** parseBdf(), PciTree (parents, DMA aliases, refusals) and pciDeviceFromConfig(). */

import assert from "node:assert/strict";
import { formatBdf, parseBdf, pciDeviceFromConfig, PciTree } from "../driver/topology/pci_tree.ts";
import { assertCode, dev, HANDOFF, hierarchy } from "./_topology_resolve.ts";

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
