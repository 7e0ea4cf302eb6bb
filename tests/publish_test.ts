/**
 * Publishing: `deno publish --dry-run --allow-dirty` passes (licence, no slow types) and the
 * package holds exactly the library: the three entry points and what they import, plus
 * README.md, LICENSE and deno.json. Nothing of `.ci/`, `bench/`, `tools/`, `tests/`,
 * `examples/` or the CLI. Also: every task has a description, and `deno task cli` asks for no
 * more than the mock needs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readImportGraph } from "../tools/boundaries.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));

/** The files an entry point reaches through its imports (static, type-only and dynamic). */
async function closure(entries: readonly string[]): Promise<Set<string>> {
  const graph = new Map((await readImportGraph(root)).map((m) => [m.path, m.imports]));
  const seen = new Set<string>();
  const visit = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const next of graph.get(path) ?? []) visit(next);
  };
  entries.forEach(visit);
  return seen;
}

Deno.test("deno publish --dry-run passes and the package holds only the library", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty", "--no-check"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, text);
  assert.match(text, /Dry run complete/);
  const prefix = `file://${root}/`;
  const files = [...text.matchAll(/^\s+(file:\/\/\S+)/gm)]
    .map((m) => m[1].slice(prefix.length))
    .sort();
  const entries = Object.values(config.exports as Record<string, string>)
    .map((p) => p.replace(/^\.\//, ""));
  const expected = [...await closure(entries), "README.md", "LICENSE", "deno.json"].sort();
  assert.deepEqual(files, expected);
  assert.equal(config.license, "MIT");
  assert.match(await Deno.readTextFile(`${root}/LICENSE`), /^MIT License/);
});

Deno.test("every deno task says what it does; deno task cli does not grant --allow-all", () => {
  const tasks = config.tasks as Record<string, { description?: string; command?: string }>;
  for (const [name, task] of Object.entries(tasks)) {
    assert.equal(typeof task, "object", `${name} uses the {description, command} form`);
    assert.ok((task.description ?? "").length > 10, `${name} has a description`);
    assert.ok((task.command ?? "").startsWith("deno "), `${name} has a command`);
  }
  assert.doesNotMatch(tasks.cli.command!, /--allow-all|-A\b|--allow-ffi|--allow-write/);
  assert.match(tasks["cli:host"].command!, /--allow-all/);
});
