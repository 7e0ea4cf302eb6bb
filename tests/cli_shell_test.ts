/** The viommu shell: runShellLine() in-process, and the line editor on a scripted terminal. */

import assert from "node:assert/strict";
import { parseCommandLine } from "../cli/args.ts";
import { deviceSpecFromFlags, openDevice } from "../cli/device.ts";
import { LineEditor, type Terminal } from "../cli/line_editor.ts";
import { runShellLine, type ShellContext } from "../cli/shell.ts";

async function shell(args: string[] = []): Promise<ShellContext & { close(): Promise<void> }> {
  const parsed = parseCommandLine(["shell", ...args]);
  const session = await openDevice(await deviceSpecFromFlags(parsed.flags));
  return { session, close: () => session.close() };
}

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
