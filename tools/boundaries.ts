/**
 * The project's import boundaries, as data, and a checker over the real import graph (read from
 * the source files: static imports and re-exports, `import type`, and dynamic `import("…")`).
 * `tests/boundaries_test.ts` runs it on every test run; `deno task boundaries` prints the graph's
 * violations by hand.
 *
 * The layers, bottom up (a folder may import only the folders listed for it):
 *
 * ```
 * spec/  util/           the spec's layouts and constants; generic structures: import nothing
 * transport/             registers, DMA memory, the Transport interface, virtio-mmio, virtio-pci
 * driver/virtio/         virtio core: init, features, virtqueues (knows nothing of virtio-iommu)
 * driver/topology/       which endpoint ID a device has (pure parsers)
 * driver/iommu/          the virtio-iommu driver
 * mock/  mock/iommu/     the device side, for testing.ts (never the driver)
 * host/                  real hardware, for host.ts (FFI, sysfs, VFIO; never the mock)
 * conform/               the conformance suite: judges any device through the virtio core,
 *                        never the mock (the mock is one device it judges, in tests)
 * ```
 *
 * @module
 */

/** One module and the project files it imports (paths relative to the project root). */
export interface ModuleImports {
  /** The module's path, for example `driver/iommu/device.ts`. */
  path: string;
  /** The project files it imports, resolved to root-relative paths. */
  imports: string[];
  /** Whether its code (not its comments) touches `Deno.*`: files, FFI, permissions. */
  usesDeno?: boolean;
}

/** A broken boundary: which import, and the rule it breaks. */
export interface Violation {
  /** The importing file. */
  from: string;
  /** The imported file (or the files of a cycle, joined with " → "). */
  to: string;
  /** The rule, in words. */
  rule: string;
}

/**
 * The folders each folder may import (besides itself). Folders not listed here (tests, bench,
 * tools, examples, cli) are applications of the library and may import any layer, but nothing
 * imports them except their own kind.
 */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  "spec": [],
  "util": [],
  "transport": ["spec", "util"],
  "driver/virtio": ["transport", "spec", "util"],
  "driver/topology": ["driver/virtio", "transport", "spec", "util"],
  "driver/iommu": ["driver/virtio", "driver/topology", "transport", "spec", "util"],
  "mock": ["transport", "spec", "util"],
  "mock/iommu": ["mock", "transport", "spec", "util"],
  "host": ["driver/topology", "transport", "spec", "util"],
  // The conformance suite drives any device with the virtio core and the spec's layouts.
  "conform": ["driver/iommu", "driver/virtio", "transport", "spec", "util"],
  // The entry points: the core needs no permissions, testing.ts is the mock, host.ts the hardware.
  "mod.ts": ["driver/virtio", "driver/topology", "driver/iommu", "transport", "spec", "util"],
  "testing.ts": ["mock", "mock/iommu", "transport", "spec", "util"],
  "host.ts": ["host", "transport", "spec", "util"],
  "conform.ts": ["conform", "transport", "spec", "util"],
};

/**
 * Files that speak virtio-iommu. Transports and the generic virtio core (driver and mock side)
 * must not import them: a transport knows nothing of the device type it carries.
 */
export const IOMMU_SPEC = ["spec/iommu.ts"];
/** Folders that must stay device-type agnostic (may not import {@link IOMMU_SPEC}). */
export const DEVICE_AGNOSTIC = ["transport", "driver/virtio", "mock"];
/** Entry points whose whole import closure must run with no permissions (no `Deno.*`). */
export const PERMISSION_FREE = ["mod.ts", "testing.ts", "conform.ts"];
/** Folders of applications: nothing in the library layers may import them. */
export const APPLICATIONS = ["cli", "tools", "bench", "examples", "tests", "cli.ts"];

/** The folder a path belongs to (`driver/iommu/device.ts` → `driver/iommu`); top-level files are their own. */
export function folderOf(path: string): string {
  const at = path.lastIndexOf("/");
  if (at < 0) return path;
  const folder = path.slice(0, at);
  // tests/guest/x.ts is part of tests; cli/*, bench/* are flat.
  const top = folder.split("/")[0];
  return APPLICATIONS.includes(top) ? top : folder;
}

/**
 * Removes comments from TypeScript source, keeping string and template literals (so a `//` in
 * a URL survives and an `import` inside a doc comment does not count).
 */
export function stripComments(source: string): string {
  let out = "";
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '"' || c === "'" || c === "`") {
      const start = i++;
      while (i < n && source[i] !== c) i += source[i] === "\\" ? 2 : 1;
      i++;
      out += source.slice(start, i);
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The relative specifiers a module imports: static, re-export, type-only and dynamic. */
export function importSpecifiers(source: string): string[] {
  const code = stripComments(source);
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) found.push(match[1]);
  }
  return found.filter((s) => s.startsWith("./") || s.startsWith("../"));
}

/** Resolves relative specifier `spec` imported by root-relative `from`. */
export function resolveSpecifier(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const part of spec.split("/")) {
    if (part === "." || part === "") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return parts.join("/");
}

/** Whether folder `from` may import folder `to` under {@link LAYERS}. */
function allowed(from: string, to: string): boolean {
  if (from === to) return true;
  if (APPLICATIONS.includes(folderOf(from))) return true;
  const rule = LAYERS[from];
  if (rule === undefined) return false; // a new library folder must be given its place first
  return rule.includes(to);
}

/** Strongly connected components with more than one member (or a self-loop): the cycles. */
export function cycles(edges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || edges.get(v)?.has(v)) out.push(component.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** Every boundary the graph breaks: layer rules, device-agnostic folders, file and folder cycles. */
export function checkBoundaries(modules: readonly ModuleImports[]): Violation[] {
  const violations: Violation[] = [];
  const fileEdges = new Map<string, Set<string>>();
  const folderEdges = new Map<string, Set<string>>();
  for (const { path, imports } of modules) {
    const from = folderOf(path);
    fileEdges.set(path, new Set(imports));
    if (!folderEdges.has(from)) folderEdges.set(from, new Set());
    for (const target of imports) {
      const to = folderOf(target);
      if (to !== from) folderEdges.get(from)!.add(to);
      if (!allowed(from, to)) {
        violations.push({
          from: path,
          to: target,
          rule: LAYERS[from] === undefined
            ? `${from}/ has no place in LAYERS (tools/boundaries.ts)`
            : `${from} may import only ${[from, ...LAYERS[from]].join(", ")}`,
        });
      }
      if (DEVICE_AGNOSTIC.includes(from) && IOMMU_SPEC.includes(target)) {
        violations.push({
          from: path,
          to: target,
          rule: `${from} is device-type agnostic: it may not import virtio-iommu's layouts`,
        });
      }
    }
  }
  const byPath = new Map(modules.map((m) => [m.path, m]));
  for (const entry of PERMISSION_FREE) {
    const seen = new Set<string>();
    const todo = byPath.has(entry) ? [entry] : [];
    while (todo.length > 0) {
      const path = todo.pop()!;
      if (seen.has(path)) continue;
      seen.add(path);
      const module = byPath.get(path);
      if (module?.usesDeno) {
        violations.push({
          from: entry,
          to: path,
          rule: `${entry} needs no permissions: nothing it reaches may touch Deno.*`,
        });
      }
      todo.push(...(module?.imports ?? []));
    }
  }
  for (const cycle of cycles(fileEdges)) {
    violations.push({
      from: cycle[0],
      to: cycle.join(" → "),
      rule: "no import cycle between files",
    });
  }
  for (const cycle of cycles(folderEdges)) {
    violations.push({
      from: cycle[0],
      to: cycle.join(" → "),
      rule: "no import cycle between folders",
    });
  }
  return violations;
}

/** Reads the import graph of every `.ts` file under `root` (skipping `.cache/` and dot folders). */
export async function readImportGraph(root: string): Promise<ModuleImports[]> {
  const modules: ModuleImports[] = [];
  const walk = async (folder: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${root}/${folder}`)) {
      const path = folder === "" ? entry.name : `${folder}/${entry.name}`;
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && path.endsWith(".ts")) {
        const source = await Deno.readTextFile(`${root}/${path}`);
        const imports = importSpecifiers(source).map((s) => resolveSpecifier(path, s));
        const usesDeno = /\bDeno\./.test(stripComments(source));
        modules.push({ path, imports: [...new Set(imports)].sort(), usesDeno });
      }
    }
  };
  await walk("");
  return modules.sort((a, b) => a.path.localeCompare(b.path));
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const violations = checkBoundaries(await readImportGraph(root));
  for (const v of violations) console.log(`${v.from} → ${v.to}: ${v.rule}`);
  console.log(
    violations.length === 0 ? "boundaries: ok" : `boundaries: ${violations.length} broken`,
  );
  if (violations.length > 0) Deno.exit(1);
}
