/**
 * `deno bench` entries for the request path: the hand-written limit and the driver, one
 * request at a time and batched, against the mock device, on each ring layout (split §2.7,
 * packed §2.8) against that ring's own limit. `bench/summary.ts` reports the same figures as a
 * table with ratios.
 *
 * @module
 */

import { MAP_READ, MAP_WRITE, type RingLayout } from "../mod.ts";
import { Baseline, driverRig } from "./_setup.ts";

const RW = MAP_READ | MAP_WRITE;

for (const ring of ["split", "packed"] as const satisfies readonly RingLayout[]) {
  const base = await Baseline.createFor(ring);
  const { iommu } = await driverRig({ ring });
  await iommu.attach(1, 0x08);
  const batch = iommu.batch();
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
    async () => {
      const iova = 0x100000 + (page++ & 1023) * 0x1000;
      await iommu.map(1, iova, 0x1000, 0x1000, RW);
      await iommu.unmap(1, iova, 0x1000);
    },
  );

  Deno.bench(`${ring} limit: 256 requests, batched`, {
    group: `${ring} batch`,
    baseline: true,
  }, () => {
    base.batch(256);
  });

  Deno.bench(`${ring} driver: 256 requests, batched`, { group: `${ring} batch` }, async () => {
    batch.clear();
    for (let i = 0; i < 128; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
    for (let i = 0; i < 128; i++) batch.unmap(1, 0x100000 + i * 0x1000, 0x1000);
    await batch.submit();
  });
}
