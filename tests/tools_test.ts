/**
 * The tools around the library: the progress line (drawn on a terminal only, never under CI
 * or `--json`), the test runner's reading of Deno's dot reporter and junit report, and the
 * guest runner's cache (bounded; `--clean`) and project listing (a symlinked `.cache`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Progress, type ProgressSink } from "../tools/progress.ts";
import { classify, skippedTests, stripAnsi } from "../tools/test.ts";
import { cleanGuestCache, KEEP_COMMANDS, pruneCache, STALE_MS } from "../tools/guest_cache.ts";
import { projectFiles } from "../tools/initramfs.ts";
import { parseCommandLine } from "../tools/guest.ts";
import { splitArgs } from "../tools/qemu.ts";
import { guestSetupScript } from "../tools/guest_setup.ts";
import { skipName } from "./_notes.ts";

/** A sink that records what was drawn. */
class Recorder implements ProgressSink {
  written = "";
  constructor(readonly terminal: boolean) {}
  isTerminal(): boolean {
    return this.terminal;
  }
  writeSync(bytes: Uint8Array): number {
    this.written += new TextDecoder().decode(bytes);
    return bytes.length;
  }
}

Deno.test("Progress draws in place on a terminal and erases itself when cleared", () => {
  const tty = new Recorder(true);
  const progress = new Progress({ sink: tty, ci: false, columns: 20 });
  progress.update("booting");
  progress.update("a line much longer than twenty columns");
  progress.clear();
  assert.equal(tty.written, "\r\x1b[2Kbooting\r\x1b[2Ka line much longer…\r\x1b[2K");
});

Deno.test("Progress writes nothing to a pipe, under CI, or when quiet (--json)", () => {
  for (
    const options of [
      { sink: new Recorder(false), ci: false },
      { sink: new Recorder(true), ci: true },
      { sink: new Recorder(true), ci: false, quiet: true },
    ]
  ) {
    const progress = new Progress(options);
    progress.update("booting");
    progress.clear();
    assert.equal(progress.active, false);
    assert.equal((options.sink as Recorder).written, "");
  }
});

Deno.test("the test runner tells progress dots, the result line and type-check chatter apart", () => {
  assert.equal(classify("\x1b[0m\x1b[38;5;245m.\x1b[0m"), "progress");
  assert.equal(classify(",!."), "progress");
  assert.equal(classify("\x1b[0m\x1b[32mok\x1b[0m | 640 passed | 0 failed (1m12s)"), "summary");
  assert.equal(classify("FAILED | 1 passed | 1 failed | 1 ignored (633ms)"), "summary");
  assert.equal(classify("\x1b[0m\x1b[32mCheck\x1b[0m tests/cli_test.ts"), "check");
  assert.equal(classify("Stack backtrace:"), "check");
  assert.equal(classify("error: AssertionError: 1 !== 2"), "other");
  assert.equal(stripAnsi("\x1b[1m\x1b[31mx\x1b[0m"), "x");
});

Deno.test("the test runner lists skipped tests, with their reasons, from the junit report", () => {
  const name = skipName("real device", 'no "qemu" & <kernel>');
  const junit = `<testsuite name="./tests/real_device_test.ts">
    <testcase name="${
    name.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
  }" classname="./tests/real_device_test.ts" time="0.000" line="1" col="6">
            <skipped/>
        </testcase>
        <testcase name="ok one" classname="./tests/a_test.ts" time="0.001" line="2" col="6">
        </testcase>`;
  assert.deepEqual(skippedTests(junit), [
    { name: 'real device — skipped: no "qemu" & <kernel>', file: "./tests/real_device_test.ts" },
  ]);
});

Deno.test("pruneCache() keeps the newest command archives and drops a killed run's leftovers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const now = Date.now();
    const touch = async (name: string, ageMs: number): Promise<void> => {
      await Deno.writeTextFile(`${dir}/${name}`, "x");
      const t = new Date(now - ageMs);
      await Deno.utime(`${dir}/${name}`, t, t);
    };
    for (let i = 0; i < KEEP_COMMANDS + 4; i++) await touch(`cmd-${i}.cpio`, i * 1000);
    await touch("initrd-1-0.cpio", STALE_MS + 1000);
    await touch("initrd-2-0.cpio", 1000); // a run in progress
    await Deno.mkdir(`${dir}/stage-base-old`);
    await Deno.utime(`${dir}/stage-base-old`, new Date(now - 2 * STALE_MS), new Date(0));
    await touch("vmlinuz-6.1", 10 * STALE_MS); // the installer's: never touched
    await pruneCache(dir, now);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const commands = left.filter((n) => n.startsWith("cmd-"));
    assert.equal(commands.length, KEEP_COMMANDS);
    assert.ok(commands.includes("cmd-0.cpio") && !commands.includes(`cmd-${KEEP_COMMANDS}.cpio`));
    assert.ok(left.includes("initrd-2-0.cpio") && !left.includes("initrd-1-0.cpio"));
    assert.ok(!left.includes("stage-base-old"));
    assert.ok(left.includes("vmlinuz-6.1"));
    // --clean removes everything the runner wrote, and only that.
    await Deno.writeTextFile(`${dir}/base-abc.cpio`, "0123456789");
    const freed = await cleanGuestCache(dir);
    assert.ok(freed >= 10);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["vmlinuz-6.1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("projectFiles() leaves out a symlinked .cache instead of failing with IsADirectory", async () => {
  const dir = await Deno.makeTempDir();
  const elsewhere = await Deno.makeTempDir();
  try {
    const git = async (...args: string[]): Promise<void> => {
      const out = await new Deno.Command("git", { args, cwd: dir, stderr: "piped" }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    };
    await git("init", "-q");
    await Deno.writeTextFile(`${dir}/.gitignore`, ".cache/\n");
    await Deno.writeTextFile(`${dir}/mod.ts`, "export {};\n");
    await Deno.mkdir(`${dir}/lib`);
    await Deno.writeTextFile(`${dir}/lib/a.ts`, "export {};\n");
    await Deno.mkdir(`${elsewhere}/guest`);
    await Deno.symlink(elsewhere, `${dir}/.cache`); // as `ln -s /big/disk .cache`
    await Deno.symlink(`${dir}/lib`, `${dir}/lib-link`); // any symlinked folder
    assert.deepEqual(await projectFiles(dir), [".gitignore", "lib/a.ts", "mod.ts"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("the guest runner's command line: --kernel, --qemu quoting, the command after --", () => {
  const parsed = parseCommandLine([
    "--",
    "--kernel",
    "6.12",
    "--linux-iommu",
    "--qemu",
    `-device edu -append "a b"`,
    "--",
    "deno",
    "task",
    "cli:host",
  ]);
  assert.equal(parsed.kernel, "6.12");
  assert.equal(parsed.iommuDriver, "linux");
  assert.deepEqual(parsed.qemuArgs, ["-device", "edu", "-append", "a b"]);
  assert.deepEqual(parsed.command, ["deno", "task", "cli:host"]);
  assert.throws(() => parseCommandLine(["--linux-iommu", "--", "true"]), /needs --kernel 6\.12/);
  assert.deepEqual(splitArgs(`-a 'b c'd`), ["-a", "b cd"]);
  // 6.1: the uio modules (so INTx reaches userspace) when they were installed, else nothing.
  assert.match(guestSetupScript("6.1", "userspace")[1], /^insmod \S+\/uio_pci_generic\.ko \|\|/);
  assert.deepEqual(guestSetupScript("6.1", "userspace", false), []);
  assert.match(guestSetupScript("6.12", "linux")[0], /^insmod \S+\/virtio-iommu\.ko \|\|/);
});

Deno.test("no test is named BUG: a regression test names the symbol, the behaviour and the bug", async () => {
  const dir = new URL("./", import.meta.url);
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".ts")) continue;
    const source = await Deno.readTextFile(new URL(entry.name, dir));
    assert.doesNotMatch(source, /^\s*(Deno\.test\(|t\()?\s*["'`]BUG\b/m, entry.name);
  }
});
