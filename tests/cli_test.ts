/**
 * The `viommu` command line: argument parsing, shell lines run in-process through
 * runShellLine(), main() with captured output, the line editor on a scripted terminal, and
 * the real entry point as a subprocess fed on standard input.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../cli/args.ts";
import { parseU32, parseU32List, parseU64 } from "../cli/numbers.ts";
import { deviceSpecFromFlags, openDevice } from "../cli/device.ts";
import { mockConfigFromJson } from "../cli/mock_config.ts";
import { jsonLines, run } from "./_cli_io.ts";
import { LineEditor, type Terminal } from "../cli/line_editor.ts";
import { q35Viot } from "../mock/q35_viot.ts";
import { formatMapFlags, parseMapFlags, runShellLine, type ShellContext } from "../cli/shell.ts";
import { readTopology } from "../cli/topology.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { MAP_MMIO, MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";

async function shell(args: string[] = []): Promise<ShellContext & { close(): Promise<void> }> {
  const parsed = parseCommandLine(["shell", ...args]);
  const session = await openDevice(await deviceSpecFromFlags(parsed.flags));
  return { session, close: () => session.close() };
}

// ------------------------------------------------------------------ arguments

Deno.test("parseU64() accepts decimal, 0x hex and underscores, and rejects the rest", () => {
  assert.equal(parseU64("4096", "size"), 4096n);
  assert.equal(parseU64("0x1000", "size"), 0x1000n);
  assert.equal(parseU64("0xffff_ffff_ffff_ffff", "iova"), 0xffff_ffff_ffff_ffffn);
  assert.throws(() => parseU64("0x1_0000_0000_0000_0000", "iova"), UsageError);
  assert.throws(() => parseU64("-1", "iova"), /Invalid iova "-1": must not be negative/);
  assert.throws(() => parseU64("-0x10", "iova"), /must not be negative/);
  assert.throws(() => parseU64("12k", "size"), UsageError);
  assert.throws(() => parseU64("", "size"), UsageError);
});

Deno.test("parseU32() and parseU32List() stay within 32 bits", () => {
  assert.equal(parseU32("0xffffffff", "domain"), 0xffff_ffff);
  assert.throws(() => parseU32("0x100000000", "domain"), /larger than 32 bits/);
  assert.deepEqual(parseU32List("0,8,0x10", "--endpoints"), [0, 8, 16]);
  assert.throws(() => parseU32List(",", "--endpoints"), /empty/);
});

Deno.test("parseCommandLine() takes flags before or after the subcommand", () => {
  const a = parseCommandLine(["--json", "probe", "8", "--endpoints", "8"]);
  assert.equal(a.command, "probe");
  assert.deepEqual(a.positionals, ["8"]);
  assert.equal(a.flags.json, true);
  assert.equal(a.flags.endpoints, "8");
  assert.equal(a.flags.device, "mock");
  // `deno task cli -- probe 8 --json` passes the `--` through.
  const task = parseCommandLine(["--", "probe", "8", "--json"]);
  assert.equal(task.command, "probe");
  assert.deepEqual(task.positionals, ["8"]);
  assert.equal(task.flags.json, true);
  const help = parseCommandLine(["help", "shell"]);
  assert.equal(help.command, "shell");
  assert.equal(help.flags.help, true);
  assert.throws(() => parseCommandLine(["frobnicate"]), /Unknown command "frobnicate"/);
  assert.throws(() => parseCommandLine(["info", "--nope"]), UsageError);
});

Deno.test("parseCommandLine() words every mistake itself, naming the option", () => {
  // parseArgs would call "-1" an unknown option; it is a (refused) number for the caller.
  assert.deepEqual(parseCommandLine(["probe", "-1"]).positionals, ["-1"]);
  assert.deepEqual(parseCommandLine(["probe", "-0x8"]).positionals, ["-0x8"]);
  assert.equal(parseCommandLine(["--timeout=-5", "info"]).flags.timeout, "-5");
  assert.throws(() => parseCommandLine(["info", "--endpionts", "8"]), /did you mean --endpoints\?/);
  assert.throws(() => parseCommandLine(["inof"]), /Unknown command "inof" \(did you mean info\?\)/);
  assert.throws(() => parseCommandLine(["info", "--device"]), /Option --device needs a value/);
  assert.throws(() => parseCommandLine(["info", "--device", "--json"]), /--device needs a value/);
  assert.throws(() => parseCommandLine(["info", "--json=yes"]), /Option --json takes no value/);
  assert.throws(() => parseCommandLine(["info", "-x"]), /Unknown option "-x"/);
  assert.equal(parseCommandLine(["-hV"]).flags.version, true);
  assert.equal(
    parseCommandLine(["info", "--", "--json"]).flags.json,
    false,
    "after --, positional",
  );
  for (const args of [["probe", "-1"], ["info", "--endpionts", "8"], ["info", "--device"]]) {
    try {
      parseCommandLine(args);
    } catch (error) {
      assert.doesNotMatch((error as Error).message, /parseArgs|positional argument starting/);
    }
  }
});

Deno.test("parseU32() refuses negative and octal-looking numbers with the reason", () => {
  assert.throws(() => parseU32("-1", "endpoint"), /Invalid endpoint "-1": must not be negative/);
  assert.throws(
    () => parseU32("010", "endpoint"),
    /"010": a leading 0 is ambiguous; write 10 for decimal or 0x8 for octal 010/,
  );
  assert.throws(() => parseU32("09", "domain"), /write 9 for decimal$/);
  assert.equal(parseU32("0", "domain"), 0);
  assert.equal(parseU32("0x010", "endpoint"), 0x10, "hex may have leading zeros");
  assert.equal(parseU32("1_000", "domain"), 1000);
  assert.throws(() => parseU32("1__0", "domain"), /expected a decimal or 0x hex number/);
  assert.throws(() => parseU32("0o10", "domain"), /expected a decimal or 0x hex number/);
});

Deno.test("parseMapFlags() reads r, w, rw and mmio combinations", () => {
  assert.equal(parseMapFlags("r"), MAP_READ);
  assert.equal(parseMapFlags("rw"), MAP_READ | MAP_WRITE);
  assert.equal(parseMapFlags("wr"), MAP_READ | MAP_WRITE);
  assert.equal(parseMapFlags("r,mmio"), MAP_READ | MAP_MMIO);
  assert.equal(parseMapFlags("RW,MMIO"), MAP_READ | MAP_WRITE | MAP_MMIO);
  assert.throws(() => parseMapFlags("rr"), UsageError);
  assert.throws(() => parseMapFlags("x"), UsageError);
  assert.equal(formatMapFlags(MAP_WRITE | MAP_MMIO), "w,mmio");
  assert.equal(formatMapFlags(0), "none");
});

Deno.test("deviceSpecFromFlags() builds mock options from flags and refuses bad ones", async () => {
  const spec = await deviceSpecFromFlags(
    parseCommandLine([
      "info",
      "--endpoints",
      "1,2",
      "--probe-size",
      "0x100",
      "--no-bypass",
      "--domain-range",
      "1-10",
      "--transport",
      "mmio",
    ]).flags,
  );
  assert.equal(spec.kind, "mock");
  if (spec.kind !== "mock") return;
  assert.deepEqual(spec.options.endpoints?.map((e) => e.id), [1, 2]);
  assert.equal(spec.options.endpoints?.[0].reservedRegions?.[0].start, 0xfee00000n);
  assert.equal(spec.options.probeSize, 256);
  assert.equal(spec.options.bypass, false);
  assert.deepEqual(spec.options.domainRange, { start: 1, end: 10 });
  assert.equal(spec.transport, "mmio");
  await assert.rejects(
    deviceSpecFromFlags(parseCommandLine(["info", "--endpoints", "1,1"]).flags),
    /listed twice/,
  );
  await assert.rejects(
    deviceSpecFromFlags(parseCommandLine(["info", "--device", "floppy"]).flags),
    /Unknown device "floppy"/,
  );
  await assert.rejects(
    deviceSpecFromFlags(parseCommandLine(["info", "--device", "pci:00:02.0", "--no-bypass"]).flags),
    /--no-bypass applies to --device mock only/,
  );
  await assert.rejects(
    deviceSpecFromFlags(parseCommandLine(["info", "--device", "pci:00:02.0", "--packed"]).flags),
    /--packed applies to --device mock only/,
  );
  const pci = await deviceSpecFromFlags(
    parseCommandLine(["info", "--device", "pci:00:02.0", "--ring", "split"]).flags,
  );
  assert.deepEqual(pci, {
    kind: "pci",
    bdf: "0000:00:02.0",
    layout: "spec",
    timeoutMs: undefined,
    ring: "split",
  });
});

Deno.test("mockConfigFromJson() reads hex strings, endpoint objects and rejects unknown keys", () => {
  const config = mockConfigFromJson({
    pageSizeMask: "0xfffffffffffff000",
    endpoints: [8, { id: "0x10", reservedRegions: [{ start: 0, end: "0xfff" }] }],
    transport: "mmio",
    topologyLayout: "draft",
  });
  assert.equal(config.options?.pageSizeMask, 0xfffffffffffff000n);
  assert.equal(config.options?.endpoints?.[1].id, 0x10);
  assert.deepEqual(config.options?.endpoints?.[1].reservedRegions, [
    { start: 0n, end: 0xfffn, subtype: "reserved" },
  ]);
  assert.equal(config.transport, "mmio");
  assert.equal(config.layout, "draft");
  assert.throws(() => mockConfigFromJson({ endpionts: [] }), /Unknown mock config key "endpionts"/);
  assert.throws(() => mockConfigFromJson([]), /must be a JSON object/);
});

// ------------------------------------------------------------------ shell lines

Deno.test("runShellLine() attaches, maps, translates, unmaps and reports the fault", async () => {
  const ctx = await shell();
  try {
    assert.deepEqual(await runShellLine(ctx, "attach 1 8"), {
      cmd: "attach",
      ok: true,
      domain: 1,
      endpoint: 8,
      bypass: false,
    });
    const map = await runShellLine(ctx, "map 1 0x10000 0x20000 0x1000 rw");
    assert.deepEqual(map, {
      cmd: "map",
      ok: true,
      domain: 1,
      iova: 0x10000n,
      phys: 0x20000n,
      size: 0x1000n,
      flags: "rw",
    });
    const hit = await runShellLine(ctx, "translate 8 0x10010 w");
    assert.equal(hit?.ok, true);
    assert.equal(hit?.address, 0x20010n);
    assert.equal((await runShellLine(ctx, "unmap 1 0x10000 0x1000"))?.ok, true);
    const miss = await runShellLine(ctx, "translate 0x8 0x10010 r");
    assert.deepEqual(miss?.fault, {
      reason: "MAPPING",
      endpoint: 8,
      address: 0x10010n,
      read: true,
      write: false,
    });
    const events = await runShellLine(ctx, "events");
    assert.deepEqual(events?.events, [
      { reason: "MAPPING", endpoint: 8, address: 0x10010n, read: true, write: false },
    ]);
    assert.deepEqual((await runShellLine(ctx, "events"))?.events, []);
    assert.deepEqual(ctx.session.violations(), []);
  } finally {
    await ctx.close();
  }
});

Deno.test("runShellLine() gives device refusals their status and driver refusals DRIVER", async () => {
  const ctx = await shell();
  try {
    const noent = await runShellLine(ctx, "attach 1 0x99");
    assert.equal(noent?.ok, false);
    assert.equal(noent?.status, "NOENT");
    assert.equal(typeof noent?.message, "string");
    await runShellLine(ctx, "attach 2 8");
    const unaligned = await runShellLine(ctx, "map 2 0x10001 0x20000 0x1000 rw");
    assert.equal(unaligned?.status, "DRIVER");
    assert.match(String(unaligned?.message), /not aligned/);
    // The MSI doorbell is a reserved region: the device refuses a MAP over it.
    const msi = await runShellLine(ctx, "map 2 0xfee00000 0 0x1000 rw");
    assert.equal(msi?.ok, false);
    assert.equal(msi?.status, "INVAL");
  } finally {
    await ctx.close();
  }
});

Deno.test("runShellLine() turns a malformed line into a USAGE result and skips blanks", async () => {
  const ctx = await shell();
  try {
    assert.equal(await runShellLine(ctx, "   "), null);
    assert.equal(await runShellLine(ctx, "# a comment"), null);
    for (
      const line of [
        "frobnicate",
        "map 1 2",
        "map 1 0x1000 0x2000 0x1000 x",
        "attach one 8",
        "attach 1 8 sideways",
        "translate 8 0x1000 x",
        "unmap 1 0x1000 -5",
        "events now",
      ]
    ) {
      const result = await runShellLine(ctx, line);
      assert.equal(result?.ok, false, line);
      assert.equal(result?.status, "USAGE", line);
    }
    // The shell goes on: the device is still usable.
    assert.equal((await runShellLine(ctx, "attach 1 8"))?.ok, true);
  } finally {
    await ctx.close();
  }
});

Deno.test("runShellLine() probe lists the MSI region; reset keeps attachments", async () => {
  const ctx = await shell();
  try {
    const probe = await runShellLine(ctx, "probe 0x18");
    assert.deepEqual(probe?.regions, [{ kind: "msi", start: "0xfee00000", end: "0xfeefffff" }]);
    await runShellLine(ctx, "attach 3 0x18");
    await runShellLine(ctx, "map 3 0x40000 0x80000 0x2000 r");
    assert.deepEqual(await runShellLine(ctx, "reset"), { cmd: "reset", ok: true, domains: 1 });
    // Reset replays the domain: the mapping still translates on the device.
    const t = await runShellLine(ctx, "translate 0x18 0x41000 r");
    assert.equal(t?.address, 0x81000n);
  } finally {
    await ctx.close();
  }
});

Deno.test("runShellLine() attach bypass makes DMA pass through untranslated", async () => {
  const ctx = await shell(["--no-bypass"]);
  try {
    const before = await runShellLine(ctx, "translate 8 0x5000 r");
    assert.equal((before?.fault as { reason: string }).reason, "DOMAIN");
    assert.equal((await runShellLine(ctx, "attach 9 8 bypass"))?.bypass, true);
    const after = await runShellLine(ctx, "translate 8 0x5000 r");
    assert.equal(after?.address, 0x5000n);
    assert.equal(after?.bypass, true);
  } finally {
    await ctx.close();
  }
});

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

Deno.test("runShellLine() translate without a mock device is a USAGE result", async () => {
  const ctx = await shell();
  try {
    const result = await runShellLine(
      { session: { ...ctx.session, mock: null } },
      "translate 8 0 r",
    );
    assert.equal(result?.status, "USAGE");
    assert.match(String(result?.message), /mock device/);
  } finally {
    await ctx.close();
  }
});

Deno.test("cli.ts --device pci: without --allow-all exits 1 with PERMISSION and what to run", async () => {
  // --allow-read --allow-write --allow-ffi used to be documented; Deno 2.9.6 wants all access.
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      "--allow-ffi",
      new URL("../cli.ts", import.meta.url).pathname,
      "shell",
      "--json",
      "--device",
      "pci:0000:00:02.0",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 1);
  const [line] = jsonLines(new TextDecoder().decode(stdout));
  assert.equal(line.status, "PERMISSION");
  assert.match(String(line.message), /needs root and Deno's --allow-all/);
  assert.match(String(line.message), /--allow-env .*--allow-import/);
  assert.match(String(line.message), /deno task cli:host/);
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

// ------------------------------------------------------------------ line editor

/** A terminal that replays `input` and records what was written. */
class ScriptedTerminal implements Terminal {
  written = "";
  raw: boolean[] = [];
  #input: Uint8Array;
  constructor(input: string) {
    this.#input = new TextEncoder().encode(input);
  }
  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#input.length === 0) return Promise.resolve(null);
    const n = Math.min(buffer.length, this.#input.length);
    buffer.set(this.#input.subarray(0, n));
    this.#input = this.#input.subarray(n);
    return Promise.resolve(n);
  }
  write(text: string): void {
    this.written += text;
  }
  setRaw(raw: boolean): void {
    this.raw.push(raw);
  }
}

Deno.test("LineEditor.readLine() recalls history with up/down and edits with backspace/left", async () => {
  const up = "\x1b[A";
  const down = "\x1b[B";
  const left = "\x1b[D";
  const terminal = new ScriptedTerminal(
    "events\r" + "probe 9\x7f8\r" + up + up + "\r" + up + down + "reset\r" + "ab" + left + "X\r" +
      "\x04",
  );
  const editor = new LineEditor(terminal);
  const lines: string[] = [];
  for await (const line of editor.lines("> ")) lines.push(line);
  assert.deepEqual(lines, ["events", "probe 8", "events", "reset", "aXb"]);
  assert.deepEqual(editor.history, ["events", "probe 8", "events", "reset", "aXb"]);
  assert.equal(terminal.raw.at(-1), false, "raw mode is turned off again");
});

// ------------------------------------------------------------------ subprocess

Deno.test("cli.ts shell as a subprocess reads standard input line by line", async () => {
  const script = [
    "attach 1 8",
    "map 1 0x10000 0x20000 0x1000 rw",
    "translate 8 0x10010 w",
    "unmap 1 0x10000 0x1000",
    "translate 8 0x10010 w",
    "events",
    "not-a-command",
    "probe 8",
  ].join("\n") + "\n";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", new URL("../cli.ts", import.meta.url).pathname, "shell", "--json"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(new TextDecoder().decode(stderr), "");
  const lines = jsonLines(text);
  assert.equal(lines.length, 8);
  assert.equal(lines[2].address, "0x20010");
  assert.deepEqual(lines[4].fault, {
    reason: "MAPPING",
    endpoint: 8,
    address: "0x10010",
    read: false,
    write: true,
  });
  assert.equal((lines[5].events as unknown[]).length, 1);
  assert.equal(lines[6].status, "USAGE");
  assert.equal(lines[7].ok, true, "the shell goes on after a malformed line");
  assert.equal(code, 2);
});

Deno.test("cli.ts probe as a subprocess needs no permission on the mock", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", new URL("../cli.ts", import.meta.url).pathname, "probe", "8"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /msi\s+0xfee00000-0xfeefffff/);
});
