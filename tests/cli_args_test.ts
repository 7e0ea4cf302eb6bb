/** The viommu command line's parsers: arguments, numbers, map flags, device flags, mock JSON. */

import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../cli/args.ts";
import { parseU32, parseU32List, parseU64 } from "../cli/numbers.ts";
import { deviceSpecFromFlags } from "../cli/device.ts";
import { mockConfigFromJson } from "../cli/mock_config.ts";
import { formatMapFlags, parseMapFlags } from "../cli/shell.ts";
import { MAP_MMIO, MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";

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
