/** The viommu command line's main() with captured output: info, probe, shell and topology. */

import assert from "node:assert/strict";
import { parseCommandLine } from "../cli/args.ts";
import { deviceSpecFromFlags } from "../cli/device.ts";
import { jsonLines, run } from "./_cli_io.ts";
import { q35Viot } from "../mock/q35_viot.ts";
import { readTopology } from "../cli/topology.ts";
import { parseViot } from "../driver/topology/viot.ts";

// ------------------------------------------------------------------ main()

Deno.test("main() info --json reports QEMU q35's negotiated features and config", async () => {
  const { code, out } = await run(["info", "--json"]);
  assert.equal(code, 0);
  const [info] = jsonLines(out.stdout);
  assert.equal(info.cmd, "info");
  assert.equal(info.ok, true);
  assert.equal(info.transport, "pci");
  // QEMU 7.2 offers RING_RESET (bit 40); the driver takes it (one queue can be reset alone).
  assert.equal(info.offeredFeatures, "0x10130000077");
  assert.equal(info.features, "0x10130000077");
  assert.deepEqual(info.declinedFeatureNames, []);
  assert.equal((info.offeredFeatureNames as string[]).at(-1), "RING_RESET");
  assert.deepEqual(info.featureNames, [
    "INPUT_RANGE",
    "DOMAIN_RANGE",
    "MAP_UNMAP",
    "PROBE",
    "MMIO",
    "BYPASS_CONFIG",
    "INDIRECT_DESC",
    "EVENT_IDX",
    "VERSION_1",
    "RING_RESET",
  ]);
  assert.equal(info.ring, "split", "QEMU's default: packed=off");
  assert.equal(info.queueReset, true);
  assert.deepEqual(info.config, {
    pageSizeMask: "0xfffffffffffff000",
    inputStart: "0x0",
    inputEnd: "0xffffffffffffffff",
    domainStart: 0,
    domainEnd: 0xffff_ffff,
    probeSize: 512,
    bypass: 1,
  });
  assert.equal(info.requestQueueSize, 256);
  assert.equal(info.eventQueueSize, 256);
});

Deno.test("main() info --packed uses the packed ring unless --ring split asks otherwise", async () => {
  const packed = await run(["info", "--packed", "--json"]);
  assert.equal(packed.code, 0);
  const [p] = jsonLines(packed.out.stdout);
  assert.equal(p.ring, "packed");
  assert.ok((p.featureNames as string[]).includes("RING_PACKED"));
  const split = await run(["info", "--packed", "--ring", "split", "--json"]);
  const [s] = jsonLines(split.out.stdout);
  assert.equal(s.ring, "split");
  assert.ok(!(s.featureNames as string[]).includes("RING_PACKED"));
  // --ring packed on a device without it: the device is refused (exit 1), named in the message.
  const refused = await run(["info", "--ring", "packed"]);
  assert.equal(refused.code, 1);
  assert.match(refused.out.stderr + refused.out.stdout, /0x400000000/);
  const people = await run(["info", "--packed"]);
  assert.match(people.out.stdout, /ring\s+packed {2}\(virtio 1\.3 §2\.8\)/);
  const bad = await run(["info", "--ring", "round"]);
  assert.equal(bad.code, 2);
  assert.match(bad.out.stderr, /Invalid --ring "round"/);
});

Deno.test("main() info prints features by name for people", async () => {
  const { code, out } = await run(["info", "--transport", "mmio", "--probe-size", "0"]);
  assert.equal(code, 0);
  assert.match(out.stdout, /transport\s+mmio \(virtio-mmio\)/);
  assert.match(out.stdout, /offeredFeatures\s+0x10130000077 .*RING_RESET\n/);
  assert.match(out.stdout, /\n {2}features\s+0x10130000077 .*MAP_UNMAP.*\(negotiated\)\n/);
  assert.match(out.stdout, /declinedFeatures\s+none/);
  assert.match(out.stdout, /ring\s+split {2}\(virtio 1\.3 §2\.7\)/);
  assert.match(out.stdout, /probeSize\s+0\n/);
  assert.ok(!out.stdout.includes("\x1b["), "no colour when not on a terminal");
});

Deno.test("main() probe exits 0 with the regions, 1 with NOENT for an unknown endpoint", async () => {
  const ok = await run(["probe", "0x08", "--json"]);
  assert.equal(ok.code, 0);
  assert.deepEqual(jsonLines(ok.out.stdout)[0].regions, [
    { kind: "msi", start: "0xfee00000", end: "0xfeefffff" },
  ]);
  const missing = await run(["probe", "0x20", "--json"]);
  assert.equal(missing.code, 1);
  const [line] = jsonLines(missing.out.stdout);
  assert.equal(line.ok, false);
  assert.equal(line.status, "NOENT");
  const text = await run(["probe", "8"]);
  assert.match(text.out.stdout, /msi\s+0xfee00000-0xfeefffff/);
});

Deno.test("main() exits 2 on usage errors and 0 on --help for every subcommand", async () => {
  for (const args of [["probe"], ["probe", "x"], ["info", "extra"], ["nope"], ["--bogus"], []]) {
    const { code } = await run(args);
    assert.equal(code, 2, args.join(" "));
  }
  const json = await run(["probe", "--json"]);
  assert.equal(jsonLines(json.out.stdout)[0].status, "USAGE");
  for (const command of ["info", "topology", "probe", "shell"]) {
    const { code, out } = await run([command, "--help"]);
    assert.equal(code, 0);
    assert.match(out.stdout, new RegExp(`usage: viommu ${command}`));
  }
  const top = await run(["--help"]);
  assert.equal(top.code, 0);
  assert.match(top.out.stdout, /exit codes: 0 ok, 1 request failed, 2 usage error/);
});

Deno.test("main() shell --json prints one object per line and exits 1 after a failed request", async () => {
  const { code, out } = await run(
    ["shell", "--json"],
    "attach 1 8\n\nmap 1 0x10000 0x20000 0x1000 rw\nmap 1 0x10000 0x30000 0x1000 rw\n",
  );
  const lines = jsonLines(out.stdout);
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => l.ok), [true, true, false]);
  // The driver remembers the first mapping and will not send an overlapping MAP.
  assert.equal(lines[2].status, "DRIVER");
  assert.equal(code, 1);
});

Deno.test("main() shell exits 2 when a line was malformed and runs the lines after it", async () => {
  const { code, out } = await run(["shell"], "map\nattach 1 8\nquit\nattach 2 0x10\n");
  assert.equal(code, 2);
  assert.match(out.stdout, /✗ map: USAGE/);
  assert.match(out.stdout, /✓ attached endpoint 0x8 to domain 1/);
  assert.doesNotMatch(out.stdout, /domain 2/, "quit ends the shell");
});

// ------------------------------------------------------------------ topology

Deno.test("q35Viot() parses as QEMU's 88-byte table: endpoint ID = BDF, IOMMU at 00:02.0", () => {
  const table = q35Viot();
  assert.equal(table.length, 88);
  const viot = parseViot(table);
  assert.equal(viot.iommus.length, 1);
  assert.equal(viot.pciRanges[0].bdfEnd, 0xff);
  assert.equal(viot.pciRanges[0].endpointStart, 0);
});

Deno.test("readTopology() resolves the mock q35 tree through the VIOT and the draft topology", async () => {
  for (const layout of ["spec", "draft"]) {
    const spec = await deviceSpecFromFlags(
      parseCommandLine(["topology", "--topology-layout", layout]).flags,
    );
    const report = await readTopology(spec);
    assert.equal(report.source, layout === "spec" ? "viot" : "builtin");
    assert.deepEqual(
      report.table.rows.map((r) => [r.device, r.endpointId]),
      [["0000:00:00.0", 0], ["0000:00:01.0", 8], ["0000:00:02.0", null], ["0000:00:03.0", 0x18]],
    );
    assert.equal(report.groups.length, 3);
  }
});

Deno.test("main() topology --json lists device, requester ID, alias, endpoint ID and group", async () => {
  const { code, out } = await run(["topology", "--json", "--endpoints", "8,0x18"]);
  assert.equal(code, 0);
  const [report] = jsonLines(out.stdout);
  const devices = report.devices as Record<string, unknown>[];
  assert.deepEqual(devices.map((d) => d.device), [
    "0000:00:01.0",
    "0000:00:02.0",
    "0000:00:03.0",
  ]);
  assert.deepEqual(devices[2], {
    device: "0000:00:03.0",
    type: "endpoint",
    requesterId: 0x18,
    alias: 0x18,
    endpointId: 0x18,
    iommu: "viot@48",
    group: 1,
  });
  const text = await run(["topology"]);
  assert.match(text.out.stdout, /0000:00:02\.0\s+0x10\s+0x10\s+-\s+-\s+the IOMMU itself/);
});

Deno.test("main() info --topology-layout draft does not negotiate bit 6 as BYPASS_CONFIG", async () => {
  const { code, out } = await run(["info", "--json", "--topology-layout", "draft"]);
  assert.equal(code, 0);
  const [info] = jsonLines(out.stdout);
  assert.ok(!(info.featureNames as string[]).includes("BYPASS_CONFIG"));
  assert.equal((info.config as { bypass: unknown }).bypass, null);
});
