/**
 * Every example runs as its own program (`deno run`, no permissions) and prints the line that
 * shows its idea worked. The real-device example off a guest: without `--allow-all` it is a
 * permission error (exit 1, saying what to run); with it, on a machine without the device, a
 * skip (exit 0, saying why).
 *
 * @module
 */

import assert from "node:assert/strict";

/** Runs `examples/<name>` (with no permission unless `flags` say) and returns what it did. */
async function runExample(
  name: string,
  flags: string[] = [],
  args: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = new URL(`../examples/${name}`, import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, path, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Each example and a line its output must contain. */
const EXPECTED: [string, RegExp][] = [
  ["demo.ts", /0000:00:03.0 {2}endpoint 0x18[\s\S]*fault MAPPING[\s\S]*violations {4}none/],
  ["attach_map.ts", /-> lands at physical 0x[0-9a-f]+080\n[\s\S]*after unmap: fault MAPPING/],
  ["reserved_regions.ts", /reserved region: msi 0xfee00000-0xfeefffff/],
  ["topology.ts", /group 3 must share one domain: 0000:01:00\.0, 0000:02:01\.0, 0000:02:02\.0/],
  ["faults.ts", /fault: MAPPING endpoint 0x8 write at 0x4000/],
  [
    "interrupts.ts",
    /^interrupts: msix$(?=[\s\S]*by interrupt: MAPPING at 0x5000)(?=[\s\S]*bypass is now 0)/m,
  ],
  ["batching.ts", /mappings in domain 1: 128[\s\S]*RequestBatch: 64 UNMAPs, 0 failed, first is OK/],
];

for (const [name, expected] of EXPECTED) {
  Deno.test(`examples/${name} runs without permissions and prints its result`, async () => {
    const { code, stdout, stderr } = await runExample(name);
    assert.equal(code, 0, `exit ${code}\n${stderr}`);
    assert.match(stdout, expected);
  });
}

Deno.test("examples/real_device.ts without --allow-all exits 1 and says what to run", async () => {
  // The flags its header used to give: Deno 2.9.6 still refuses /sys without all access.
  for (const flags of [[], ["--allow-read", "--allow-write", "--allow-ffi"]]) {
    const { code, stdout, stderr } = await runExample("real_device.ts", flags);
    assert.equal(code, 1, `${flags.join(" ")}: ${stdout}${stderr}`);
    assert.match(stderr, /real_device: cannot run, .*--allow-all .*run: deno run --allow-all/);
    assert.doesNotMatch(stdout, /skipped/, "a permission error is not a skip");
  }
});

Deno.test("examples/real_device.ts with --allow-all and no such device skips with exit 0", async () => {
  const { code, stdout, stderr } = await runExample("real_device.ts", ["--allow-all"], [
    "0000:ff:1f.7",
  ]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /real_device: skipped, no PCI device 0000:ff:1f\.7/);
});

Deno.test("every example in examples/ is covered by this test", () => {
  const files = [...Deno.readDirSync(new URL("../examples/", import.meta.url))]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
    .map((entry) => entry.name)
    .sort();
  assert.deepEqual(files, [...EXPECTED.map(([name]) => name), "real_device.ts"].sort());
});
