/**
 * What the `viommu` command line shows: one name per concept (the library's field names in the
 * text and the JSON), one number format per kind of value, the `--tree` drawing, `--version`,
 * and the mock options it refuses on purpose.
 *
 * @module
 */

import assert from "node:assert/strict";
import { VERSION } from "../cli/main.ts";
import { run } from "./_cli_io.ts";
import { Painter } from "../cli/format.ts";
import { checkPageSizeMask, checkQueueSize, mockConfigFromJson } from "../cli/mock_config.ts";
import { formatTopology, type TopologyReport } from "../cli/topology.ts";
import { formatTopologyTree, topologyTreeJson } from "../cli/topology_tree.ts";
import { describeViot } from "../driver/topology/description.ts";
import { PciTree } from "../driver/topology/pci_tree.ts";
import { isolationGroups, resolveTopology } from "../driver/topology/resolve.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { q35Viot } from "../mock/q35_viot.ts";
import { MmioTransport, VirtioIommu } from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

async function json(args: string[]): Promise<Record<string, unknown>> {
  const { code, out } = await run([...args, "--json"]);
  assert.equal(code, 0, out.stdout + out.stderr);
  return JSON.parse(out.stdout);
}

const plain = new Painter(false);

Deno.test("main() --version prints the version of deno.json, as text and as JSON", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, config.version);
  const text = await run(["--version"]);
  assert.equal(text.code, 0);
  assert.equal(text.out.stdout, `viommu ${config.version} (Deno ${Deno.version.deno})\n`);
  assert.equal((await json(["-V"])).version, config.version);
});

Deno.test("main() probe --json names region fields as the library's ReservedRegion", async () => {
  const memory = new SimulatedMemory();
  const iommu = await VirtioIommu.create(
    MmioTransport.create(new MmioDevice(new MockIommuDevice(), memory)),
    memory,
  );
  const library = await iommu.probe(0x08);
  await iommu.close();
  const cli = await json(["probe", "0x08"]);
  const regions = cli.regions as Record<string, unknown>[];
  assert.deepEqual(Object.keys(regions[0]), Object.keys(library.regions[0]));
  assert.equal(regions[0].kind, library.regions[0].kind);
  assert.deepEqual(
    Object.keys(cli).filter((k) => k !== "cmd" && k !== "ok"),
    Object.keys(library),
  );
});

Deno.test("main() info --json uses IommuInfo's and IommuConfig's names, and the text too", async () => {
  const memory = new SimulatedMemory();
  const iommu = await VirtioIommu.create(
    MmioTransport.create(new MmioDevice(new MockIommuDevice(), memory)),
    memory,
  );
  const info = iommu.info;
  await iommu.close();
  const cli = await json(["info"]);
  for (const key of Object.keys(info)) assert.ok(key in cli, `info --json has ${key}`);
  assert.deepEqual(Object.keys(cli.config as object), Object.keys(info.config));
  const text = (await run(["info"])).out.stdout;
  for (const key of [...Object.keys(info.config), "requestQueueSize", "eventQueueSize"]) {
    assert.match(text, new RegExp(`\\n {2}${key} `), `the text names ${key} as the JSON does`);
  }
  assert.doesNotMatch(text, /page_size_mask|requestq /, "no second name for the same field");
});

Deno.test("main() topology prints IDs as 0x… in text and the same values as numbers in JSON", async () => {
  const report = await json(["topology"]);
  const devices = report.devices as Record<string, number | string | null>[];
  const text = (await run(["topology"])).out.stdout.split("\n");
  const header = text[1].split(/\s+/);
  assert.deepEqual(header, ["device", "requesterId", "alias", "endpointId", "group", "note"]);
  for (const name of header) assert.ok(name in devices[0] || name === "note", name);
  for (const device of devices) {
    const row = text.find((line) => line.startsWith(String(device.device)))!.split(/\s+/);
    assert.equal(row[1], "0x" + (device.requesterId as number).toString(16));
    // The alias is always printed, never "-" for "same as the requester ID".
    assert.equal(row[2], "0x" + (device.alias as number).toString(16));
    assert.equal(typeof device.alias, "number");
    assert.equal(
      row[3],
      device.endpointId === null ? "-" : "0x" + (device.endpointId as number).toString(16),
    );
  }
});

/** A q35-like tree with a PCIe root port, a PCIe-to-PCI bridge and two functions behind it. */
function bridgedReport(): TopologyReport {
  const tree = new PciTree([
    { segment: 0, bus: 0, devfn: 0x00, type: "host-bridge" },
    { segment: 0, bus: 0, devfn: 0x10, type: "endpoint" },
    { segment: 0, bus: 0, devfn: 0xe0, type: "root-port", secondaryBus: 1, isPcie: true },
    { segment: 0, bus: 1, devfn: 0x00, type: "pcie-to-pci-bridge", secondaryBus: 2 },
    { segment: 0, bus: 2, devfn: 0x08, type: "endpoint" },
    { segment: 0, bus: 2, devfn: 0x10, type: "endpoint" },
    { segment: 0, bus: 0, devfn: 0xfb, type: "endpoint" },
  ]);
  const table = resolveTopology(tree, describeViot(parseViot(q35Viot({ bdfEnd: 0xffff }))));
  return { source: "viot", tree, table, groups: isolationGroups(table) };
}

Deno.test("formatTopologyTree() draws the hierarchy as lspci -t does, with IDs and groups", () => {
  const tree = formatTopologyTree(bridgedReport(), plain);
  const lines = tree.trimEnd().split("\n");
  assert.match(lines[0], /^-\[0000:00\]-\+-00\.0 {2}host-bridge {2}endpointId 0x0 /);
  assert.match(lines[1], /^ {11}\+-02\.0 {2}endpoint {2}endpointId - {2}alias 0x10 {2}group -/);
  assert.match(lines[2], /^ {11}\+-1c\.0-\[01\] {2}root-port/);
  assert.match(lines[3], /^ {11}\| {9}\\-00\.0-\[02\] {2}pcie-to-pci-bridge/);
  // Behind the PCIe-to-PCI bridge both functions carry the alias (bus 2, devfn 0): one group.
  assert.match(lines[4], /^ {11}\| {19}\+-01\.0 {2}endpoint {2}endpointId 0x200 {2}alias 0x200/);
  assert.match(lines[5], /^ {11}\| {19}\\-02\.0 {2}endpoint {2}endpointId 0x200 {2}alias 0x200/);
  assert.match(lines[6], /^ {11}\\-1f\.3 {2}endpoint {2}endpointId 0xfb {2}alias 0xfb/);
  const group = (line: string): string => line.match(/group (\S+)/)![1];
  assert.equal(group(lines[4]), group(lines[5]));
  assert.notEqual(group(lines[4]), group(lines[6]));
  assert.equal(lines.length, 7);
  // The table and the tree agree on every alias.
  const table = formatTopology(bridgedReport(), plain);
  assert.match(table, /0000:02:01\.0\s+0x208\s+0x200\s+0x200/);
});

Deno.test("topologyTreeJson() nests the hierarchy the drawing shows, with the same fields", () => {
  const roots = topologyTreeJson(bridgedReport());
  assert.deepEqual(roots.map((n) => n.device), [
    "0000:00:00.0",
    "0000:00:02.0",
    "0000:00:1c.0",
    "0000:00:1f.3",
  ]);
  const port = roots[2];
  assert.equal(port.type, "root-port");
  assert.equal(port.secondaryBus, 1);
  const bridge = port.children[0];
  assert.equal(bridge.device, "0000:01:00.0");
  assert.equal(bridge.secondaryBus, 2);
  assert.deepEqual(
    bridge.children.map((n) => [n.device, n.endpointId, n.alias]),
    [["0000:02:01.0", 0x200, 0x200], ["0000:02:02.0", 0x200, 0x200]],
  );
  assert.equal(bridge.children[0].group, bridge.children[1].group);
  assert.equal(roots[1].endpointId, null); // the function outside every VIOT range
  assert.equal(roots[3].endpointId, 0xfb);
});

Deno.test("main() topology --tree --json adds the nested tree to the JSON", async () => {
  const { code, out } = await run(["topology", "--tree", "--json"]);
  assert.equal(code, 0);
  const line = JSON.parse(out.stdout);
  assert.ok(Array.isArray(line.devices), "the table's fields stay");
  assert.equal(line.tree.length, line.devices.length, "the mock's functions all sit on bus 0");
  assert.equal(line.tree.at(-1).endpointId, 0x18);
  const plain = JSON.parse((await run(["topology", "--json"])).out.stdout);
  assert.equal(plain.tree, undefined);
});

Deno.test("main() topology --tree runs on the mock; --tree on another command is a usage error", async () => {
  const { code, out } = await run(["topology", "--tree"]);
  assert.equal(code, 0);
  assert.match(out.stdout, /^-\[0000:00\]-\+-00\.0 /);
  assert.match(out.stdout, /\\-03\.0 {2}endpoint {2}endpointId 0x18 {2}alias 0x18 {2}group 2\n$/);
  const wrong = await run(["info", "--tree"]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.out.stderr, /--tree applies to topology only/);
});

Deno.test("checkQueueSize() and checkPageSizeMask() refuse what no spec device presents", () => {
  for (const size of [1, 2, 256, 32768]) assert.equal(checkQueueSize(size, "--queue-size"), size);
  for (const size of [0, 3, 100, 65536]) {
    assert.throws(() => checkQueueSize(size, "--queue-size"), /power of 2 from 1 to 32768/);
  }
  assert.equal(checkPageSizeMask(0xfffffffffffff000n, "m"), 0xfffffffffffff000n);
  assert.equal(checkPageSizeMask(0x40201000n, "m"), 0x40201000n, "4K|2M|1G, as VT-d has");
  assert.throws(() => checkPageSizeMask(0n, "m"), /at least one bit \(virtio 1\.3 §5\.13\.4\)/);
  assert.throws(() => checkPageSizeMask(0x1001n, "m"), /granule \(lowest set bit\) is 1 B/);
  assert.throws(
    () => mockConfigFromJson({ queueSizes: [256, 3] }),
    /Invalid queueSizes\[1\] 3: a split virtqueue's size is a power of 2/,
  );
  assert.throws(() => mockConfigFromJson({ pageSizeMask: "0x800" }), /Invalid pageSizeMask 0x800/);
});

Deno.test("main() refuses --queue-size 3, --page-size-mask 0x1001 and --timeout 0 with exit 2", async () => {
  for (
    const [args, message] of [
      [["--queue-size", "3"], /Invalid --queue-size 3/],
      [["--page-size-mask", "0x1001"], /Invalid --page-size-mask 0x1001/],
      [["--timeout", "0"], /Invalid --timeout "0"/],
      [["--domain-range", "5-1"], /ends before it starts/],
    ] as const
  ) {
    const { code, out } = await run(["info", ...args]);
    assert.equal(code, 2, args.join(" "));
    assert.match(out.stderr, message);
  }
});
