/**
 * `viommu conform` in-process: text and JSON output, exit codes (1 on a failed MUST, 2 on a
 * bad argument), rule selection and the oracle switch, on the mock.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CliOutput } from "../cli/format.ts";
import { type CliIo, main } from "../cli/main.ts";
import { CATALOGUE } from "../conform/catalogue.ts";

/** Captures what main() writes. */
class Capture implements CliOutput {
  stdout = "";
  stderr = "";
  readonly isTerminal = false;
  out(text: string): void {
    this.stdout += text;
  }
  err(text: string): void {
    this.stderr += text;
  }
}

async function run(...args: string[]): Promise<{ code: number; out: Capture }> {
  const out = new Capture();
  const io: CliIo = { output: out, input: new ReadableStream(), terminal: null };
  return { code: await main(args, io), out };
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test("main() conform --hazardous --json: every applicable rule passes on the default mock", async () => {
  const { code, out } = await run("conform", "--hazardous", "--json");
  assert.equal(code, 0, out.stderr);
  const lines = jsonLines(out.stdout);
  assert.equal(lines.length, CATALOGUE.length + 1);
  const results = lines.slice(0, -1);
  assert.deepEqual(
    results.filter((l) => l.outcome !== "pass").map((l) => l.id),
    ["attach.domain-range", "map.input-range", "probe.not-offered"],
  );
  assert.deepEqual(lines.at(-1), {
    cmd: "conform",
    ok: true,
    device: "mock (pci)",
    offered: "0x10130000077",
    totals: { pass: CATALOGUE.length - 3, fail: 0, deviation: 0, skipped: 3 },
  });
  assert.deepEqual(Object.keys(results[0]), [
    "cmd",
    "id",
    "section",
    "level",
    "summary",
    "outcome",
    "detail",
    "ms",
  ]);
});

Deno.test("main() conform --qemu-compat exits 1 on a failed MUST and prints one line per rule", async () => {
  const { code, out } = await run(
    "conform",
    "--qemu-compat",
    "--only",
    "attach.reserved,map.alignment",
  );
  assert.equal(code, 1);
  const lines = out.stdout.trim().split("\n");
  assert.match(lines[0], /^viommu conform on mock \(pci, qemu-compat\)$/);
  assert.match(
    lines[1],
    /^2 rules \(MUST 1, SHOULD 1, MAY 0\); endpoints 0x18, 0x0, 0x8, 0x10, missing 0xff$/,
  );
  assert.match(
    lines[2],
    /^fail\s+MUST\s+attach\.reserved\s+§5\.13\.6\.3\.2\s+ATTACH .* answered OK/,
  );
  assert.match(
    lines[3],
    /^deviation\s+SHOULD\s+map\.alignment\s+§5\.13\.6\.5\.2\s+misaligned virt_start: OK/,
  );
  assert.equal(lines[4], "2 rules: 0 pass, 1 fail, 1 deviation, 0 skipped");
});

Deno.test("main() conform exits 0 with SHOULD deviations only, and skips the oracle with --oracle none", async () => {
  const deviation = await run("conform", "--qemu-compat", "--only", "map.*", "--json");
  assert.equal(deviation.code, 0);
  assert.equal(jsonLines(deviation.out.stdout).at(-1)?.ok, true);
  const { code, out } = await run(
    "conform",
    "--oracle",
    "none",
    "--only",
    "map.translation",
    "--json",
  );
  assert.equal(code, 0);
  const [line] = jsonLines(out.stdout);
  assert.equal(line.outcome, "skipped");
  assert.match(String(line.detail), /needs a DMA oracle/);
});

Deno.test("main() conform refuses an unknown rule, a bad --oracle and arguments with exit code 2", async () => {
  for (
    const args of [
      ["conform", "--only", "nope.*"],
      ["conform", "--oracle", "edu-please"],
      ["conform", "attach.reserved"],
    ]
  ) {
    const { code, out } = await run(...args);
    assert.equal(code, 2, args.join(" "));
    assert.match(out.stderr, /viommu: /);
  }
  const help = await run("conform", "--help");
  assert.equal(help.code, 0);
  assert.match(help.out.stdout, /--only ID\[,ID…\]/);
  assert.match(help.out.stdout, /--hazardous/);
});
