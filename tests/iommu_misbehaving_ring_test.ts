/** VirtioIommu on a ScriptedDevice that breaks the ring: bad used lengths and used ids. */

import assert from "node:assert/strict";
import { VIRTIO_IOMMU_T_MAP } from "../spec/iommu.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { type Bus, BUSES, busTest, type Fixture, NO_RING_RESET, ringOf } from "./_fixtures.ts";
import { outcome, RW, withFixture } from "./_iommu_misbehaving.ts";

/** Calls `run` and requires a promise back (a synchronous throw fails the test). */
function mustReturnPromise(run: () => Promise<unknown>): Promise<unknown> {
  let p: Promise<unknown>;
  try {
    p = run();
  } catch (e) {
    assert.fail(`expected a rejected promise, but the call threw synchronously: ${e}`);
  }
  return outcome(p);
}

/** {@link withFixture} with VIRTIO_F_RING_RESET left out: a broken queue stays broken. */
function withoutQueueReset(kind: Bus, body: (f: Fixture) => Promise<void> | void): Promise<void> {
  return withFixture(kind, body, {}, { features: NO_RING_RESET });
}

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- Ring protocol violations -----------------------------------------------------------
  // Without VIRTIO_F_RING_RESET a broken ring stays broken until reset(); with it the driver
  // resets the queue by itself (tests/queue_reset_test.ts).

  t(
    "a used length larger than the writable part breaks the queue with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "len", len: 100, run: true });
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        // The queue stays broken: later calls reject with the same error.
        const later = await outcome(iommu.attach(2, 0x10));
        assert.ok(later instanceof VirtqueueError, String(later));
        // iommu.reset() recovers.
        await iommu.reset();
        await iommu.map(1, 0x2000, 0x2000, 0x1000, RW);
      }),
  );

  t(
    "map()/unmap() on a broken queue return a rejected promise (they must not throw)",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "len", len: 100 });
        await outcome(iommu.attach(1, 0x10));
        scripted.script = null;
        const m = await mustReturnPromise(() => iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(m instanceof VirtqueueError, String(m));
        const u = await mustReturnPromise(() => iommu.unmap(1, 0x1000, 0x1000));
        assert.ok(u instanceof VirtqueueError, String(u));
      }),
  );

  t(
    "a used id never submitted rejects the pending request with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = (r) =>
          r.type === VIRTIO_IOMMU_T_MAP ? { do: "bogusId", id: 5 } : { do: "pass" };
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        assert.ok((await outcome(iommu.attach(1, 0x10))) instanceof VirtqueueError);
        assert.equal(iommu.pending, 0);
      }),
  );

  t(
    "a used element posted with nothing in flight breaks the queue at the next request",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        assert.equal(iommu.pending, 0);
        // The driver has nothing out, so it does not read the used ring until it sends again;
        // then the element is there before any answer (the device holds the MAP). Id 7 is odd:
        // never the head of a direct 2-descriptor chain.
        scripted.rawUsed(7, 4);
        scripted.script = () => ({ do: "hold" });
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        // Split: the element is read before any answer. Packed: the MAP's buffer goes into
        // the very slot the element was written to, which the driver sees it does not own.
        assert.match(
          e.message,
          ringOf(kind) === "split"
            ? /used id 7 .* not the head of a chain/
            : /wrote a descriptor into ring slot 2/,
        );
        assert.equal(iommu.mappings(1).length, 0, "the MAP the device never answered is undone");
      }),
  );

  t(
    "a used id out of range (>= queue size) rejects with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        scripted.script = () => ({ do: "bogusId", id: 0xffff_fff0 });
        const e = await outcome(iommu.attach(1, 0x08));
        assert.ok(e instanceof VirtqueueError, String(e));
      }),
  );

  t(
    "a used id returned twice breaks the queue with VirtqueueError; later calls reject",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        scripted.script = () => ({ do: "duplicate" });
        // Split: both used entries are there when the driver looks (more entries than chains
        // in flight). Packed: the driver stops at the answer, and finds the duplicate in the
        // slot it reuses for the next request.
        const e = await outcome(iommu.attach(1, 0x08));
        if (ringOf(kind) === "split") assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        const later = await outcome(iommu.attach(1, 0x10));
        assert.ok(later instanceof VirtqueueError, String(later));
        await iommu.reset();
        await iommu.attach(1, 0x10);
      }),
  );
}
