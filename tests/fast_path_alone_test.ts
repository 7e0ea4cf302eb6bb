/**
 * The one-at-a-time path's inline settlement (RequestQueue.sendAlone, used by map()/unmap()):
 * a request alone in the ring that the device answers during its notification settles without
 * tracking; every other case is tracked and settles the usual way. Each branch on both rings
 * and both transports: answered OK, refused (the record taken back), not answered yet (held,
 * then released; answered after the notification returns), a device that puts a bogus id in
 * the used ring during the notification, and a request made while another is in flight.
 *
 * @module
 */

import assert from "node:assert/strict";
import { IommuError } from "../driver/iommu/errors.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { VIRTIO_IOMMU_S_RANGE } from "../spec/iommu.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { outcome, RW, withFixture } from "./_iommu_misbehaving.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  t(
    "a MAP alone in the ring is answered during its one notification and settles",
    () =>
      withFixture(kind, async ({ iommu, scripted, device }) => {
        await iommu.attach(1, 0x08);
        const before = scripted.notifies[0];
        let settled = false;
        const p = iommu.map(1, 0x10000, 0x20000, 0x1000, RW).then(() => settled = true);
        // One notification, answered in it: the device already holds the mapping.
        assert.equal(scripted.notifies[0] - before, 1);
        assert.equal(device.translate(0x08, 0x10000n, "read").ok, true);
        await p;
        assert.ok(settled);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x10000n]);
        await iommu.unmap(1, 0x10000, 0x1000);
        assert.equal(device.translate(0x08, 0x10000n, "read").ok, false);
        assert.deepEqual(iommu.mappings(1), []);
      }),
  );

  t(
    "a MAP the device refuses during its notification rejects and its record is taken back",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "status", status: VIRTIO_IOMMU_S_RANGE });
        const e = await outcome(iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
        assert.ok(e instanceof IommuError, String(e));
        assert.equal(e.status, "RANGE");
        assert.match(e.message, /MAP/);
        assert.deepEqual(iommu.mappings(1), []);
        // An UNMAP refused the same way puts its records back.
        scripted.script = null;
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        scripted.script = () => ({ do: "status", status: VIRTIO_IOMMU_S_RANGE });
        assert.ok(await outcome(iommu.unmap(1, 0x10000, 0x1000)) instanceof IommuError);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x10000n]);
        // And the slot came back each time: the queue still works.
        scripted.script = null;
        await iommu.unmap(1, 0x10000, 0x1000);
        assert.deepEqual(iommu.mappings(1), []);
      }),
  );

  t(
    "a request not answered during its notification is tracked and settles when answered",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "hold", run: true });
        let settled = false;
        const p = iommu.map(1, 0x10000, 0x20000, 0x1000, RW).then(() => settled = true);
        await new Promise((resolve) => setTimeout(resolve, 5));
        assert.equal(settled, false, "held: not settled");
        assert.equal(scripted.held.length, 1);
        scripted.script = null;
        scripted.releaseHeld();
        await p;
        assert.ok(settled);
        // Answered after the notification returned, as a device in another thread does.
        scripted.deferred = true;
        await iommu.unmap(1, 0x10000, 0x1000);
        assert.deepEqual(iommu.mappings(1), []);
      }),
  );

  t(
    "a bogus id put in the used ring during the notification fails the request with VirtqueueError",
    () =>
      withFixture(
        kind,
        async ({ iommu, scripted }) => {
          await iommu.attach(1, 0x08);
          scripted.script = () => ({ do: "bogusId", id: 1 });
          const e = await outcome(iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
          assert.ok(e instanceof VirtqueueError, String(e));
          assert.match(e.message, /used id 1 .* not/);
          scripted.script = null;
          // No hang, no silent success afterwards: the next request is refused the same way.
          const next = await outcome(iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
          assert.ok(next instanceof VirtqueueError, String(next));
          // The request is not left recorded as if the device had mapped it.
          assert.deepEqual(iommu.mappings(1), []);
        },
        {},
        { timeoutMs: 2000 },
      ),
  );

  t(
    "a request made while another is in flight goes the usual way and both settle",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.deferred = true;
        const a = iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        const b = iommu.map(1, 0x11000, 0x21000, 0x1000, RW);
        await Promise.all([a, b]);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x10000n, 0x11000n]);
      }),
  );
}
