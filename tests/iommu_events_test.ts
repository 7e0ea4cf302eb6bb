/**
 * Fault events as an async iterator (issue 3: delivered to the user as events or an async
 * iterator).
 *
 * @module
 */

import assert from "node:assert/strict";
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
