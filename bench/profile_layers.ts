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

/** The parts of a `.cpuprofile` this reads. */
export interface CpuProfile {
  nodes: ProfileNode[];
  /** µs of CLOCK_MONOTONIC; sample i was taken at startTime + timeDeltas[0..i]. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The layer a frame belongs to, or null when its caller decides. */
export function layerOf(url: string, fn: string): string | null {
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(idle)") return "idle (waiting for the event loop)";
  if (fn === "(program)") return "runtime (microtasks, V8 native code)";
  const f = url.replace(/^.*?\/(?=(bench|driver|host|mock|transport|util|spec)\/)/, "");
  if (/^bench\/(profile_loop|peer_guest)\.ts/.test(f)) return "bench loop (its awaits)";
  if (f.startsWith("bench/_required.ts")) return "required work (records, awaits, barriers)";
  if (f.startsWith("bench/")) return "limit (hand-written)";
  if (/^driver\/iommu\/(device|fast_path|batch|send)\.ts/.test(f)) {
    return "driver: public API, fast path, batch";
  }
  if (/^driver\/iommu\/(planner|checks|domains)\.ts/.test(f)) return "driver: planner + checks";
  if (/^driver\/iommu\/(requests|records)\.ts/.test(f)) return "driver: encode";
  if (/^driver\/iommu\/request_(queue|slots|wait)\.ts/.test(f)) return "driver: request queue";
  if (f.startsWith("driver/virtio/")) return "driver: ring";
  // On a real device a register access is where the device runs (a VM exit under TCG).
  if (f.startsWith("transport/")) return "transport (notify, registers)";
  if (f.startsWith("host/")) return "host backend (BAR access, DMA memory)";
  if (f.startsWith("mock/")) return "mock device";
  return null;
}

/** One line of a table: a name and its share of the sampled self time, in percent. */
export interface Share {
  name: string;
  percent: number;
}

/** Self time of a profile per layer and per function, largest first. */
export interface LayerTable {
  /** Sampled time in ms. */
  sampledMs: number;
  layers: Share[];
  functions: Share[];
}

/**
 * Charges the self time of `p` to layers (see {@link layerOf}) and to functions; with
 * `window` ([start, end], µs on the profile's clock), only of the samples taken within it.
 */
export function layerTable(p: CpuProfile, window?: readonly [number, number]): LayerTable {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<number, number>();
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i];
    if (window !== undefined && (at < window[0] || at > window[1])) continue;
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
    if (inMap && layer.startsWith("required")) layer = "required work: interval map";
    layers.set(layer, (layers.get(layer) ?? 0) + t);
    const cf = (byId.get(id) as ProfileNode).callFrame;
    const name = `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^.*\/(?=\w+\/)/, "")}:${
      cf.lineNumber + 1
    }`;
    fns.set(name, (fns.get(name) ?? 0) + t);
  }
  const shares = (m: Map<string, number>): Share[] =>
    [...m].filter(([, t]) => t > 0).sort((a, b) => b[1] - a[1]).map(([name, t]) => ({
      name,
      percent: all > 0 ? (100 * t) / all : 0,
    }));
  return { sampledMs: all / 1000, layers: shares(layers), functions: shares(fns) };
}

/** The table as text: every layer, then the `top` functions with the most self time. */
export function formatLayerTable(t: LayerTable, top = 0): string {
  const line = (s: Share): string => `${s.percent.toFixed(1).padStart(5)} %  ${s.name}`;
  const out = [`self time per layer (${(t.sampledMs / 1000).toFixed(2)} s sampled)`];
  out.push(...t.layers.map(line));
  if (top > 0) out.push("top functions (self time)", ...t.functions.slice(0, top).map(line));
  return out.join("\n");
}

if (import.meta.main) {
  const [file, top = "0"] = Deno.args;
  if (file === undefined) throw new TypeError("Usage: profile_layers.ts file.cpuprofile [top]");
  const p = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
  console.log(formatLayerTable(layerTable(p), Number(top)));
}
