/** The viommu entry point cli.ts run as a subprocess: standard input, exit codes, permissions. */

import assert from "node:assert/strict";
import { jsonLines } from "./_cli_io.ts";

// ------------------------------------------------------------------ subprocess

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
