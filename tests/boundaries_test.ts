/**
 * The import boundaries of tools/boundaries.ts hold on the real tree, and each rule catches the
 * import that breaks it.
 */

import assert from "node:assert/strict";
import {
  checkBoundaries,
  importSpecifiers,
  type ModuleImports,
  readImportGraph,
  resolveSpecifier,
} from "../tools/boundaries.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("checkBoundaries() finds no broken boundary in the project", async () => {
  const graph = await readImportGraph(ROOT);
  assert.ok(graph.length > 100, `only ${graph.length} modules read`);
  assert.ok(graph.some((m) => m.path === "driver/iommu/device.ts" && m.imports.length > 5));
  assert.deepEqual(checkBoundaries(graph), []);
});

/** The rule broken by a graph of `edges` ("from → to" pairs). */
function rules(edges: Array<[string, string]>): string[] {
  const byFile = new Map<string, string[]>();
  for (const [from, to] of edges) {
    byFile.set(from, [...(byFile.get(from) ?? []), to]);
    if (!byFile.has(to)) byFile.set(to, []);
  }
  const modules: ModuleImports[] = [...byFile].map(([path, imports]) => ({ path, imports }));
  return checkBoundaries(modules).map((v) => v.rule);
}

Deno.test("checkBoundaries() refuses the driver importing the mock or the host", () => {
  assert.match(rules([["driver/iommu/device.ts", "mock/iommu/device.ts"]])[0], /driver\/iommu may/);
  assert.match(rules([["driver/virtio/init.ts", "host/ffi.ts"]])[0], /driver\/virtio may/);
  assert.match(rules([["mod.ts", "host/ffi.ts"]])[0], /mod\.ts may/);
});

Deno.test("checkBoundaries() refuses the mock importing the driver, and transport the driver", () => {
  assert.match(rules([["mock/virtio_core.ts", "driver/virtio/init.ts"]])[0], /mock may/);
  assert.match(rules([["transport/pci.ts", "driver/virtio/init.ts"]])[0], /transport may/);
  assert.match(rules([["spec/iommu.ts", "util/u64.ts"]])[0], /spec may import only spec$/);
});

Deno.test("checkBoundaries() refuses a transport or the virtio core importing virtio-iommu", () => {
  assert.deepEqual(rules([["transport/mmio.ts", "spec/iommu.ts"]]), [
    "transport is device-type agnostic: it may not import virtio-iommu's layouts",
  ]);
  assert.equal(rules([["driver/virtio/init.ts", "spec/iommu.ts"]]).length, 1);
  assert.equal(rules([["mock/virtio_core.ts", "spec/iommu.ts"]]).length, 1);
  assert.deepEqual(rules([["mock/iommu/device.ts", "spec/iommu.ts"]]), []);
});

Deno.test("checkBoundaries() reports cycles between files and between folders", () => {
  assert.deepEqual(rules([["util/a.ts", "util/b.ts"], ["util/b.ts", "util/a.ts"]]), [
    "no import cycle between files",
  ]);
  assert.deepEqual(rules([["tests/a.ts", "tools/b.ts"], ["tools/c.ts", "tests/d.ts"]]), [
    "no import cycle between folders",
  ]);
});

Deno.test("checkBoundaries() lets the conformance suite judge devices but never import the mock", () => {
  assert.deepEqual(rules([["conform/session.ts", "driver/virtio/split_queue.ts"]]), []);
  assert.deepEqual(rules([["conform/probe_rules.ts", "spec/iommu.ts"]]), []);
  assert.match(
    rules([["conform/runner.ts", "mock/iommu/device.ts"]])[0],
    /conform may import only/,
  );
  assert.match(rules([["conform/edu.ts", "host/sysfs_pci.ts"]])[0], /conform may import only/);
  assert.match(rules([["conform.ts", "mock/iommu/dma_engine.ts"]])[0], /conform\.ts may/);
  const modules: ModuleImports[] = [
    { path: "conform.ts", imports: ["conform/edu.ts"] },
    { path: "conform/edu.ts", imports: [], usesDeno: true },
  ];
  assert.deepEqual(checkBoundaries(modules).map((v) => v.rule), [
    "conform.ts needs no permissions: nothing it reaches may touch Deno.*",
  ]);
});

Deno.test("checkBoundaries() refuses a library folder that has no place in the layers", () => {
  assert.match(rules([["lib/x.ts", "spec/status.ts"]])[0], /lib\/ has no place in LAYERS/);
});

Deno.test("checkBoundaries() refuses Deno.* anywhere mod.ts or testing.ts reaches", () => {
  const modules: ModuleImports[] = [
    { path: "mod.ts", imports: ["driver/virtio/init.ts"] },
    { path: "driver/virtio/init.ts", imports: ["transport/dma.ts"] },
    { path: "transport/dma.ts", imports: [], usesDeno: true },
    { path: "host.ts", imports: ["host/ffi.ts"] },
    { path: "host/ffi.ts", imports: [], usesDeno: true },
  ];
  assert.deepEqual(checkBoundaries(modules).map((v) => [v.from, v.to]), [
    ["mod.ts", "transport/dma.ts"],
  ]);
});

Deno.test("importSpecifiers() reads every kind of import and ignores comments", () => {
  const source = [
    "/** @example",
    ' * import { X } from "../doc_only.ts";',
    " */",
    'import { a } from "./a.ts";',
    'import type { B } from "../b.ts";',
    'export { c } from "./c.ts";',
    "export {",
    "  d,",
    '} from "./d.ts";',
    'import "./side.ts";',
    'const e = await import("./e.ts"); // import("./commented.ts")',
    'const url = "http://example.com/x"; import { f } from "node:fs";',
  ].join("\n");
  assert.deepEqual(importSpecifiers(source).sort(), [
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
    "./side.ts",
  ]);
  assert.equal(resolveSpecifier("driver/iommu/device.ts", "../../spec/iommu.ts"), "spec/iommu.ts");
  assert.equal(resolveSpecifier("mod.ts", "./driver/x.ts"), "driver/x.ts");
});
