/**
 * Charges the self time of a `.cpuprofile` (from `deno run --cpu-prof`, see
 * bench/profile_loop.ts) to the driver's layers, the mock device, the limit and the runtime.
 * Frames of `util/` (the interval map, its B+-tree) and builtins are charged to their nearest
 * caller that has a layer, so the interval map splits into the driver's and the mock's own.
 * `deno run --allow-read bench/profile_layers.ts file.cpuprofile [top functions]`
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The layer a frame belongs to, or null when its caller decides. */
export function layerOf(url: string, fn: string): string | null {
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(program)" || fn === "(idle)") return "runtime (microtasks, idle)";
  const f = url.replace(/^.*?\/(?=(bench|driver|mock|transport|util|spec)\/)/, "");
  if (f.startsWith("bench/profile_loop.ts")) return "bench loop (its awaits)";
  if (f.startsWith("bench/")) return "limit (hand-written)";
  if (/^driver\/iommu\/(device|fast_path|batch|send)\.ts/.test(f)) {
    return "driver: public API, fast path, batch";
  }
  if (/^driver\/iommu\/(planner|checks|domains)\.ts/.test(f)) return "driver: planner + checks";
  if (/^driver\/iommu\/(requests|records)\.ts/.test(f)) return "driver: encode";
  if (/^driver\/iommu\/request_(queue|slots|wait)\.ts/.test(f)) return "driver: request queue";
  if (f.startsWith("driver/virtio/")) return "driver: ring";
  if (f.startsWith("transport/")) return "transport (notify)";
  if (f.startsWith("mock/")) return "mock device";
  return null;
}

if (import.meta.main) {
  const [file, top = "0"] = Deno.args;
  if (file === undefined) throw new TypeError("Usage: profile_layers.ts file.cpuprofile [top]");
  const p = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  }
  const layers = new Map<string, number>();
  const fns = new Map<string, number>();
  let all = 0;
  for (const [id, t] of self) {
    all += t;
    let layer: string | null = null;
    let inMap = false;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = (byId.get(cur) as ProfileNode).callFrame;
      if (/util\/(interval_map|_bplus_tree)\.ts/.test(cf.url)) inMap = true;
      layer = layerOf(cf.url, cf.functionName);
      if (layer !== null) break;
    }
    layer ??= "other";
    if (inMap && layer.startsWith("driver")) layer = "driver: interval map";
    if (inMap && layer === "mock device") layer = "mock device (its interval map)";
    layers.set(layer, (layers.get(layer) ?? 0) + t);
    const cf = (byId.get(id) as ProfileNode).callFrame;
    const name = `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^.*\/(?=\w+\/)/, "")}:${
      cf.lineNumber + 1
    }`;
    fns.set(name, (fns.get(name) ?? 0) + t);
  }
  const show = (m: Map<string, number>, n: number): void => {
    for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      console.log(`${((100 * t) / all).toFixed(1).padStart(5)} %  ${k}`);
    }
  };
  console.log(`self time per layer (${(all / 1e6).toFixed(2)} s sampled)`);
  show(layers, 30);
  if (Number(top) > 0) {
    console.log("top functions (self time)");
    show(fns, Number(top));
  }
}
