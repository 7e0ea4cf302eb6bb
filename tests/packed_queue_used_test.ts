/** PackedVirtqueue checks of what the device writes, each shown to fire on its lie. */

import assert from "node:assert/strict";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { A, add2, rig, serveOne, U } from "./_packed_queue.ts";

// ---- What the device writes, checked (fault injection) -----------------------------------

Deno.test("PackedVirtqueue.popUsed() rejects a used id out of range", () => {
  const r = rig(8);
  add2(r);
  r.vq.publish();
  r.dev.popAvail();
  r.dev.pushUsed(8, 4, 2);
  assert.throws(() => r.vq.popUsed(), (e: unknown) => {
    assert.ok(e instanceof VirtqueueError);
    assert.equal(e.queueIndex, 0);
    assert.match(e.message, /used id 8 at ring slot 0 is not below 8/);
    return true;
  });
  assert.equal(r.vq.broken, true);
  // Broken stays broken: the same error again, until reset().
  assert.throws(() => r.vq.popUsed(), VirtqueueError);
  assert.equal(r.vq.hasUsed(), true, "hasUsed() leads the caller to the error");
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.popUsed() rejects an id never submitted and one already completed", () => {
  const r = rig(8);
  add2(r);
  r.vq.publish();
  const b = r.dev.popAvail()!;
  r.dev.pushUsed(5, 4, 2);
  assert.throws(() => r.vq.popUsed(), /used id 5 at ring slot 0 is not in flight/);

  const d = rig(8);
  const first = add2(d);
  const second = add2(d, 64);
  d.vq.publish();
  const b1 = d.dev.popAvail()!;
  d.dev.popAvail();
  d.dev.pushUsed(b1.id, 4, 2);
  assert.equal(d.vq.popUsed(), first);
  d.dev.pushUsed(b1.id, 4, 2); // the same id again while `second` is still out
  assert.throws(() => d.vq.popUsed(), /used id 0 at ring slot 2 is not in flight/);
  assert.notEqual(second, first);
  assert.ok(b);
  r.vq.destroy();
  d.vq.destroy();
});

Deno.test("PackedVirtqueue.popUsed() rejects the id of a buffer added but not published", () => {
  const r = rig(8);
  const a = add2(r);
  r.vq.publish();
  const b = add2(r, 64); // added, not published
  r.dev.popAvail();
  r.dev.pushUsed(b, 4, 2);
  assert.throws(() => r.vq.popUsed(), /used id 1 at ring slot 0 was never published/);
  assert.notEqual(a, b);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.popUsed() rejects a used len larger than the writable part", () => {
  const r = rig(8);
  const id = add2(r, 0, 16, 48);
  r.vq.publish();
  r.dev.popAvail();
  r.dev.pushUsed(id, 49, 2);
  assert.throws(() => r.vq.popUsed(), /used len 49 for id 0 exceeds the 48 writable bytes/);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.popUsed() rejects AVAIL/USED bits that are neither available nor used now", () => {
  for (const bits of [0, U]) {
    const r = rig(8);
    add2(r);
    r.vq.publish();
    const b = r.dev.popAvail()!;
    // Wrap counter 1: used is A|U, still available is A. 0 (the previous lap's "used") and U
    // (available in the previous lap) are lies in a slot the driver made available.
    r.dev.writeUsedAt(0, b.id, 4, bits);
    assert.equal(r.vq.hasUsed(), true);
    assert.throws(
      () => r.vq.popUsed(),
      new RegExp(`ring slot 0 has AVAIL/USED bits 0x${bits.toString(16)}, neither`),
    );
    r.vq.destroy();
  }
  // With nothing in flight the same bits are old content, not a lie: nothing to pop.
  const idle = rig(8);
  idle.dev.writeUsedAt(0, 0, 0, U);
  assert.equal(idle.vq.hasUsed(), false);
  assert.equal(idle.vq.popUsed(), -1);
  idle.vq.destroy();
});

Deno.test("PackedVirtqueue notices a used descriptor written into a slot it owned when it reuses the slot", () => {
  for (const look of [true, false]) {
    const r = rig(8);
    const a = add2(r);
    r.vq.publish();
    serveOne(r, 4);
    assert.equal(r.vq.popUsed(), a);
    // A duplicate in the free slot 2, the next the driver expects used and writes next.
    r.dev.writeUsedAt(2, a, 4, A | U);
    if (look) {
      // Read at once: an id that is not in flight.
      assert.equal(r.vq.hasUsed(), true);
      assert.throws(() => r.vq.popUsed(), /used id 0 at ring slot 2 is not in flight/);
    } else {
      // Not read (the request queue never polls with nothing in flight) and overwritten by
      // the next buffer, but seen as the slot is reused.
      assert.ok(add2(r, 64) >= 0);
      r.vq.publish();
      assert.equal(r.vq.hasUsed(), true);
      assert.throws(() => r.vq.popUsed(), /wrote a descriptor into ring slot 2/);
    }
    assert.equal(r.vq.broken, true);
    r.vq.destroy();
  }
});
