/**
 * Batching: requests are asynchronous, so many can be in the request queue at once. Issue 64
 * MAPs without awaiting each, then await them together: one notification can carry many
 * requests, and the driver still checks every answer (virtio 1.3 §2.7.13).
 *
 * Run: `deno run examples/batching.ts`
 *
 * @module
 */

import { MAP_READ, MAP_WRITE, MmioTransport, VirtioIommu } from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

const PAGES = 64;
const memory = new SimulatedMemory();
const device = new MockIommuDevice();
const iommu = await VirtioIommu.create(
  MmioTransport.create(new MmioDevice(device, memory)),
  memory,
);
await iommu.attach(1, 0x08);

// One at a time: each MAP waits for its answer before the next is sent.
let start = performance.now();
for (let i = 0; i < PAGES; i++) {
  await iommu.map(1, 0x100_0000 + i * 0x1000, 0x200_0000 + i * 0x1000, 0x1000, MAP_READ);
}
const serial = performance.now() - start;

// Batched: all in flight together.
start = performance.now();
const pending = [];
for (let i = 0; i < PAGES; i++) {
  pending.push(iommu.map(1, 0x800_0000 + i * 0x1000, 0x900_0000 + i * 0x1000, 0x1000, MAP_WRITE));
}
console.log(`in flight: ${iommu.pending} requests`);
await Promise.all(pending);
const batched = performance.now() - start;

console.log(`${PAGES} MAPs one by one: ${serial.toFixed(1)} ms; batched: ${batched.toFixed(1)} ms`);
console.log(`mappings in domain 1: ${iommu.mappings(1).length}`);

// A RequestBatch does the same without a promise per request: queue, submit once, read each
// request's status. It is reusable and allocates nothing per request once grown.
const batch = iommu.batch();
for (let i = 0; i < PAGES; i++) batch.unmap(1, 0x800_0000 + i * 0x1000, 0x1000);
const failed = await batch.submit();
console.log(`RequestBatch: ${batch.length} UNMAPs, ${failed} failed, first is ${batch.status(0)}`);

// One range can also be split into the largest page sizes the device allows, one MAP each.
await iommu.map(1, 0x4000_0000, 0x4000_0000, 0x20_1000, MAP_READ, { split: true });
console.log(`after a split 2 MiB + 4 KiB map: ${iommu.mappings(1).length} mappings`);
await iommu.close();
