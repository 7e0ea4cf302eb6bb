/**
 * `deno bench` entries for the request path: the hand-written limit and the driver, one
 * request at a time and batched, against the mock device, on each ring layout (split §2.7,
 * packed §2.8) against that ring's own limit, and on the split ring also with the mock's
 * interrupt line taken (the request path must not get slower). `bench/summary.ts` reports the
 * same figures as a table with ratios.
 *
 * The driver's entries are `async` functions on purpose: Deno 2.9.6's bench runner awaits an
 * entry only when it is declared `async`; a plain arrow that returns a promise is timed as if
 * synchronous, so its requests pile up unawaited (thousands in flight, then a stack overflow).
 *
 * @module
 */

import {
  MAP_READ,
  MAP_WRITE,
  type RequestBatch,
  type RingLayout,
  type VirtioIommu,
} from "../mod.ts";
import { Baseline, driverRig } from "./_setup.ts";

const RW = MAP_READ | MAP_WRITE;
// Each bench function is written `async () => await …`: deno bench awaits only functions that
// are async themselves, and a plain arrow returning a promise would let iterations overlap.

/** One MAP+UNMAP pair, one request at a time. */
async function pair(iommu: VirtioIommu, page: number): Promise<void> {
  const iova = 0x100000 + (page & 1023) * 0x1000;
  await iommu.map(1, iova, 0x1000, 0x1000, RW);
  await iommu.unmap(1, iova, 0x1000);
}

/** 128 MAPs then 128 UNMAPs in one batch. */
async function batched(batch: RequestBatch): Promise<void> {
  batch.clear();
  for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
  for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
  await batch.submit();
}

for (const ring of ["split", "packed"] as const satisfies readonly RingLayout[]) {
  const base = await Baseline.createFor(ring);
  const { iommu } = await driverRig({ ring });
  await iommu.attach(1, 0x08);
  const batch = iommu.batch();
  // The same driver with the mock's interrupt line (split ring only).
  const irq = ring === "split" ? (await driverRig({ ring }, true)).iommu : null;
  await irq?.attach(1, 0x08);
  const irqBatch = irq?.batch();
  let page = 0;

  Deno.bench(`${ring} limit: MAP+UNMAP pair, one at a time`, {
    group: `${ring} pair`,
    baseline: true,
  }, () => {
    base.pairOneAtATime(page++ & 1023);
  });

  Deno.bench(
    `${ring} driver: MAP+UNMAP pair, one at a time`,
    { group: `${ring} pair` },
    async () => await pair(iommu, page++),
  );

  if (irq !== null) {
    Deno.bench(
      `${ring} driver, interrupts on: MAP+UNMAP pair, one at a time`,
      { group: `${ring} pair` },
      async () => await pair(irq, page++),
    );
  }

  Deno.bench(`${ring} limit: 256 requests, batched`, {
    group: `${ring} batch`,
    baseline: true,
  }, () => {
    base.batch(256);
  });

  Deno.bench(
    `${ring} driver: 256 requests, batched`,
    { group: `${ring} batch` },
    async () => await batched(batch),
  );

  if (irq !== null && irqBatch !== undefined) {
    Deno.bench(
      `${ring} driver, interrupts on: 256 requests, batched`,
      { group: `${ring} batch` },
      async () => await batched(irqBatch),
    );
  }
}
