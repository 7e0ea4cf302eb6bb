/**
 * The driver's request path leaves no per-request garbage (the hot-path rule), measured where
 * heap growth cannot tell: the mock device itself allocates per request, so these tests sample
 * allocations with V8's heap profiler and charge each one to the innermost of our frames on
 * its stack. Bytes charged to `driver/` must stay near zero; a control that allocates from this
 * file shows the sampling does see 24 bytes per request.
 *
 * @module
 */

import assert from "node:assert/strict";
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

for (const ring of ["split", "packed"] as const) {
  Deno.test(`VirtioIommu.map()/unmap() one at a time leave no garbage in the driver (${ring} ring)`, async () => {
    const iommu = await rig(ring);
    // The mock answers during the notification, so each call has settled when it returns.
    const run = (): void => {
      for (let i = 0; i < REQUESTS / 2; i++) {
        const iova = 0x100000 + (i & 1023) * 0x1000;
        iommu.map(1, iova, 0x1000, 0x1000, RW);
        iommu.unmap(1, iova, 0x1000);
      }
    };
    const driver = await sampledBytes(run, "/driver/");
    assert.ok(driver < 2, `the driver allocated ${driver.toFixed(1)} bytes per request`);
    await iommu.close();
  });

  Deno.test(`RequestBatch.submit() leaves no per-request garbage in the driver (${ring} ring)`, async () => {
    const iommu = await rig(ring);
    const batch = iommu.batch();
    const run = async (): Promise<void> => {
      for (let n = 0; n < REQUESTS / 256; n++) {
        batch.clear();
        for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
        for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
        assert.equal(await batch.submit(), 0);
      }
    };
    // Per batch the driver allocates a promise and queues microtasks: a few bytes per request.
    const driver = await sampledBytes(run, "/driver/");
    assert.ok(driver < 4, `the driver allocated ${driver.toFixed(1)} bytes per request`);
    await iommu.close();
  });
}

Deno.test("the garbage sampling sees 24 bytes per request allocated by our own code", async () => {
  const iommu = await rig("split");
  const run = (): void => {
    for (let i = 0; i < REQUESTS; i++) allocate(i);
  };
  const control = await sampledBytes(run, "driver_garbage_test.ts");
  assert.ok(control > 12, `the control allocated only ${control.toFixed(1)} bytes per call`);
  assert.ok(sink !== null);
  await iommu.close();
});
