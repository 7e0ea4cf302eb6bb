/**
 * Fault events as an async iterator (issue 3: delivered to the user as events or an async
 * iterator).
 *
 * @module
 */

import assert from "node:assert/strict";
import { MAX_KEPT_FAULTS } from "../driver/iommu/device.ts";
import { setup } from "./_fixtures.ts";

Deno.test("VirtioIommu.faults() yields every fault report in order and ends when idle or aborted", async () => {
  const { iommu, device } = await setup("pci");
  iommu.setBypass(false); // unattached endpoints now fault with DOMAIN
  for (const iova of [0x1000n, 0x2000n, 0x3000n]) device.translate(0x08, iova, "read");
  const seen: Array<bigint | null> = [];
  for await (const fault of iommu.faults({ idleMs: 20 })) {
    assert.equal(fault.reason, "DOMAIN");
    seen.push(fault.address);
  }
  assert.deepEqual(seen, [0x1000n, 0x2000n, 0x3000n]);
  // An aborted iterator stops even with reports pending.
  device.translate(0x08, 0x4000n, "read");
  const stop = new AbortController();
  stop.abort();
  for await (const _ of iommu.faults({ signal: stop.signal })) assert.fail("nothing after abort");
  assert.equal(iommu.takeFaults().length, 1, "the pending report is still there");
  await iommu.close();
});

Deno.test("VirtioIommu keeps at most MAX_KEPT_FAULTS unread fault reports, the newest, and counts the rest", async () => {
  const { iommu, device } = await setup("mmio", { queueSizes: [256, 8] }, { maxQueueSize: 8 });
  iommu.setBypass(false);
  let heard = 0;
  iommu.onFault(() => heard++);
  const total = MAX_KEPT_FAULTS + 100;
  // The event queue holds 8 buffers: poll between bursts so every report gets through.
  for (let i = 0; i < total; i++) {
    device.translate(0x08, BigInt(i) * 0x1000n, "read");
    if (i % 8 === 7) iommu.pollEvents();
  }
  iommu.pollEvents();
  assert.equal(heard, total, "listeners see every report");
  assert.equal(iommu.droppedFaults, 100);
  const kept = iommu.takeFaults();
  assert.equal(kept.length, MAX_KEPT_FAULTS);
  assert.equal(kept[0].address, 100n * 0x1000n, "the oldest were dropped");
  assert.equal(kept[kept.length - 1].address, BigInt(total - 1) * 0x1000n);
  await iommu.close();
});
