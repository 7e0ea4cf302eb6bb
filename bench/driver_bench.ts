/**
 * `deno bench` entries for the request path: the hand-written limit and the driver, one
 * request at a time and batched, against the mock device, with and without its interrupt line. `bench/summary.ts` reports the same
 * figures as a table with ratios.
 *
 * @module
 */

import { MAP_READ, MAP_WRITE } from "../mod.ts";
import { Baseline, driverRig } from "./_setup.ts";

const RW = MAP_READ | MAP_WRITE;
const base = await Baseline.create();
const { iommu } = await driverRig();
await iommu.attach(1, 0x08);
const batch = iommu.batch();
// The same driver with the mock's interrupt line: the request path must not get slower.
const irq = (await driverRig({}, true)).iommu;
await irq.attach(1, 0x08);
const irqBatch = irq.batch();
let page = 0;

Deno.bench("limit: MAP+UNMAP pair, one at a time", { group: "pair", baseline: true }, () => {
  base.pairOneAtATime(page++ & 1023);
});

Deno.bench("driver: MAP+UNMAP pair, one at a time", { group: "pair" }, async () => {
  const iova = 0x100000 + (page++ & 1023) * 0x1000;
  await iommu.map(1, iova, 0x1000, 0x1000, RW);
  await iommu.unmap(1, iova, 0x1000);
});

Deno.bench("driver, interrupts on: MAP+UNMAP pair, one at a time", { group: "pair" }, async () => {
  const iova = 0x100000 + (page++ & 1023) * 0x1000;
  await irq.map(1, iova, 0x1000, 0x1000, RW);
  await irq.unmap(1, iova, 0x1000);
});

Deno.bench("limit: 256 requests, batched", { group: "batch", baseline: true }, () => {
  base.batch(256);
});

Deno.bench("driver: 256 requests, batched", { group: "batch" }, async () => {
  batch.clear();
  for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
  for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
  await batch.submit();
});

Deno.bench("driver, interrupts on: 256 requests, batched", { group: "batch" }, async () => {
  irqBatch.clear();
  for (let i = 0; i < 128; i++) irqBatch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
  for (let i = 0; i < 128; i++) irqBatch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
  await irqBatch.submit();
});
