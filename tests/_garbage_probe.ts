/**
 * The probe of tests/driver_garbage_test.ts, run in a child process because V8's heap profiler
 * (`node:inspector`) needs `--allow-sys`, which the suite does not grant. It sends
 * requests through the driver on the mock while sampling allocations, charges each sampled
 * allocation to the innermost of our files on its stack (the mock device allocates per request,
 * so heap growth cannot tell), and prints one JSON object: sampled bytes per request charged to
 * `driver/` in each mode, to `mock/` one at a time, and to this file's control, which allocates
 * about 24 bytes per call.
 *
 * @module
 */

import { Session } from "node:inspector";
import {
  featureBit,
  MAP_READ,
  MAP_WRITE,
  MmioTransport,
  type RingLayout,
  SUPPORTED_FEATURES,
  VIRTIO_F_INDIRECT_DESC,
  VirtioIommu,
} from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

const RW = MAP_READ | MAP_WRITE;
const REQUESTS = 100_000;

interface ProfileNode {
  callFrame: { url: string };
  selfSize: number;
  children: ProfileNode[];
}

let sink: unknown = null;

/** A helper of this file that allocates about 24 bytes: the control. */
function allocate(i: number): void {
  sink = [i, i];
}

/**
 * Sampled bytes per request charged to files whose URL contains `part` while `run` sends
 * `REQUESTS` requests (after one warm-up run).
 */
async function sampledBytes(run: () => Promise<void> | void, part: string): Promise<number> {
  await run();
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params, (error, result) => error ? reject(error) : resolve(result))
    );
  await post("HeapProfiler.enable");
  await post("HeapProfiler.startSampling", {
    samplingInterval: 512,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await run();
  const { profile } = await post("HeapProfiler.stopSampling") as {
    profile: { head: ProfileNode };
  };
  await post("HeapProfiler.disable");
  session.disconnect();
  let bytes = 0;
  const walk = (node: ProfileNode, owner: string): void => {
    const url = node.callFrame.url;
    // Builtins (no URL) and the runtime's own files allocate on behalf of their caller.
    const own = url.startsWith("file:") ? url : owner;
    if (node.selfSize > 0 && own.includes(part)) bytes += node.selfSize;
    for (const child of node.children) walk(child, own);
  };
  walk(profile.head, "");
  return bytes / REQUESTS;
}

async function rig(ring: RingLayout): Promise<VirtioIommu> {
  const memory = new SimulatedMemory({ size: 16 * 1024 * 1024 });
  const device = new MockIommuDevice({ packed: ring === "packed" });
  const iommu = await VirtioIommu.create(
    MmioTransport.create(new MmioDevice(device, memory)),
    memory,
    { features: SUPPORTED_FEATURES & ~featureBit(VIRTIO_F_INDIRECT_DESC), ring },
  );
  await iommu.attach(1, 0x08);
  return iommu;
}

const out: Record<string, number> = {};
for (const ring of ["split", "packed"] as const) {
  const iommu = await rig(ring);
  // The mock answers during the notification, so each call has settled when it returns.
  const oneAtATime = (): void => {
    for (let i = 0; i < REQUESTS / 2; i++) {
      const iova = 0x100000 + (i & 1023) * 0x1000;
      iommu.map(1, iova, 0x1000, 0x1000, RW);
      iommu.unmap(1, iova, 0x1000);
    }
  };
  out[`${ring} one at a time`] = await sampledBytes(oneAtATime, "/driver/");
  // The mock device too: what it allocates per request is timed in every benchmark.
  out[`${ring} mock one at a time`] = await sampledBytes(oneAtATime, "/mock/");
  const batch = iommu.batch();
  out[`${ring} batched`] = await sampledBytes(async (): Promise<void> => {
    for (let n = 0; n < REQUESTS / 256; n++) {
      batch.clear();
      for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
      for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
      if (await batch.submit() !== 0) throw new Error(`batch failed: ${batch.error(0)}`);
    }
  }, "/driver/");
  await iommu.close();
}
out.control = await sampledBytes((): void => {
  for (let i = 0; i < REQUESTS; i++) allocate(i);
}, "_garbage_probe.ts");
if (sink === null) throw new Error("the control allocated nothing");
console.log(JSON.stringify(out));
