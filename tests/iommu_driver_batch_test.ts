/** VirtioIommu request batching and concurrent callers on the mock, on every bus. */

import assert from "node:assert/strict";
import { BUSES, busTest, ringOf } from "./_fixtures.ts";
import { read, RW, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- Batching and concurrency -----------------------------------------------------------

  t(
    "VirtioIommu sends requests as direct chains on a large ring, indirect ones on a small ring",
    async () => {
      for (const [size, indirect] of [[256, false], [64, true]] as const) {
        await withIommu(kind, async ({ iommu, scripted, core, memory }) => {
          scripted.script = () => ({ do: "hold" });
          const pending = iommu.map(1, 0x10000, 0, 0x1000, RW).catch((e) => e);
          // The head of the chain just made available, and its descriptor's flags (§2.7.5).
          const addr = (part: number): number =>
            memory.resolve(
              core.queueAddress(0, part, 0),
              core.queueAddress(0, part, 1),
              16 * size,
            );
          // Split: the head named by the last avail ring entry; packed: the first request's
          // head is ring slot 0, whose flags are at offset 14 (§2.8.13).
          let flags: number;
          if (ringOf(kind) === "split") {
            const availIdx = memory.view.getUint16(addr(1) + 2, true);
            const head = memory.view.getUint16(addr(1) + 4 + 2 * ((availIdx - 1) % size), true);
            flags = memory.view.getUint16(addr(0) + 16 * head + 12, true);
          } else {
            flags = memory.view.getUint16(addr(0) + 14, true);
          }
          assert.equal((flags & 4) !== 0, indirect, `queue of ${size}: flags ${flags}`);
          assert.equal((flags & 1) !== 0, !indirect, "a direct chain goes on with NEXT");
          scripted.releaseHeld();
          assert.equal(await pending, undefined);
        }, { queueSizes: [size, 8] });
      }
    },
  );

  t(
    "VirtioIommu sends a request to an idle queue at once, and batches those made meanwhile",
    () =>
      withIommu(kind, async ({ iommu, scripted, device }) => {
        await iommu.attach(1, 0x08);
        // A device in another thread: the first request goes out at once, the seven made
        // while it is in flight share the end-of-tick notification.
        scripted.deferred = true;
        const before = scripted.notifies[0];
        const all = [];
        for (let i = 0; i < 8; i++) all.push(iommu.map(1, 0x10000 + i * 0x1000, 0, 0x1000, RW));
        assert.equal(scripted.notifies[0] - before, 1, "the first request is notified at once");
        assert.equal(device.mappings(1).length, 0);
        await Promise.all(all);
        // One more for the seven, unless EVENT_IDX says the device is still busy with the
        // first (it then finds them itself, §2.7.10).
        assert.ok(scripted.notifies[0] - before <= 2, `${scripted.notifies[0] - before}`);
        assert.equal(device.mappings(1).length, 8);
        // A device that answers during the notification (QEMU under TCG, the mock): a request
        // to an idle queue has settled before map() returns, so nothing is left to batch.
        scripted.deferred = false;
        const first = iommu.map(1, 0x40000, 0, 0x1000, RW);
        assert.equal(device.mappings(1).length, 9, "answered during map()");
        assert.equal(iommu.pending, 0);
        await first;
      }),
  );

  t(
    "VirtioIommu: 5000 concurrent map() calls on an 8-entry request queue all land",
    () =>
      withIommu(
        kind,
        async ({ iommu, device, scripted }) => {
          assert.equal(iommu.info.requestQueueSize, 8);
          await iommu.attach(1, 0x08);
          // Answered in a later task, so callers pile up behind the 8 slots (the driver must
          // not busy-poll for a device that runs in its own thread).
          scripted.deferred = true;
          const before = scripted.notifies[0];
          const all: Promise<void>[] = [];
          for (let i = 0; i < 5000; i++) {
            all.push(iommu.map(1, 0x100_0000 + i * 0x1000, 0x4000_0000 + i * 0x2000, 0x1000, RW));
          }
          assert.ok(iommu.pending > 8, "callers wait for slots");
          await Promise.all(all);
          assert.equal(iommu.pending, 0);
          const m = device.mappings(1);
          assert.equal(m.length, 5000);
          for (let i = 0; i < 5000; i++) {
            assert.equal(m[i].start, BigInt(0x100_0000 + i * 0x1000));
            assert.equal(m[i].phys, BigInt(0x4000_0000 + i * 0x2000));
          }
          // Batched: requests made while others are in flight share notifications.
          assert.ok(scripted.notifies[0] - before < 5000 / 2, `${scripted.notifies[0] - before}`);
        },
        { queueSizes: [8, 8] },
        { maxQueueSize: 8, spinMs: 0, timeoutMs: 30_000 },
      ),
  );

  t(
    "VirtioIommu keeps the order of interleaved map/unmap on one range from concurrent callers",
    () =>
      withIommu(
        kind,
        async ({ iommu, device }) => {
          await iommu.attach(1, 0x08);
          const all: Promise<void>[] = [];
          // Fill the ring so later requests wait for slots.
          for (let i = 0; i < 20; i++) {
            all.push(iommu.map(1, 0x100_0000 + i * 0x1000, 0, 0x1000, RW));
          }
          for (let round = 1; round <= 30; round++) {
            all.push(iommu.map(1, 0x10000, round * 0x1000, 0x1000, RW));
            if (round < 30) all.push(iommu.unmap(1, 0x10000, 0x1000));
          }
          const results = await Promise.allSettled(all);
          assert.deepEqual(results.filter((r) => r.status === "rejected"), []);
          assert.equal(read(device, 0x08, 0x10000n), 30n * 0x1000n);
          assert.equal(iommu.iovaToPhys(1, 0x10000), 30n * 0x1000n);
        },
        { queueSizes: [8, 8] },
        { maxQueueSize: 8 },
      ),
  );
}
