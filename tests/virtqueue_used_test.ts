/** SplitVirtqueue index wrap at 65536 and every check popUsed() makes of what the device wrote. */

import assert from "node:assert/strict";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { add2, complete, rig } from "./_virtqueue.ts";

Deno.test("SplitVirtqueue wraps avail.idx and used.idx at 65536 over more than 65536 requests", () => {
  const r = rig(4);
  const total = 70_000;
  let sawWrap = false;
  let previous = 0;
  let outstanding: number[] = [];
  for (let i = 0; i < total; i++) {
    const head = add2(r, (i % 8) * 64, 16, 16);
    assert.notEqual(head, -1);
    outstanding.push(head);
    r.vq.publish();
    const idx = r.dev.availIdx();
    assert.equal(idx, (i + 1) & 0xffff);
    if (idx < previous) sawWrap = true;
    previous = idx;
    // The device takes the chain from slot idx mod size and checks it.
    const got = r.dev.popAvail();
    assert.equal(got, head);
    if (outstanding.length === 2) {
      // Complete out of order now and then.
      const [x, y] = i % 3 === 0 ? [outstanding[1], outstanding[0]] : outstanding;
      complete(r, x, 16);
      complete(r, y, 1);
      assert.equal(r.vq.popUsed(), x);
      assert.equal(r.vq.usedLen, 16);
      assert.equal(r.vq.popUsed(), y);
      assert.equal(r.vq.usedLen, 1);
      assert.equal(r.vq.popUsed(), -1);
      outstanding = [];
    }
  }
  assert.ok(sawWrap, "avail.idx wrapped");
  assert.equal(r.dev.availIdx(), total & 0xffff);
  assert.equal(r.dev.usedIdx(), total & 0xffff);
  assert.equal(r.vq.numFree, 4);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects an id never submitted", () => {
  const r = rig(8);
  const head = add2(r);
  r.vq.publish();
  const never = head + 3;
  r.dev.pushUsed(never, 0);
  assert.throws(() => r.vq.popUsed(), (e: unknown) => {
    assert.ok(e instanceof VirtqueueError);
    assert.match(e.message, new RegExp(`used id ${never}\\b`));
    return true;
  });
  assert.equal(r.vq.broken, true);
  assert.throws(() => r.vq.popUsed(), VirtqueueError, "stays broken");
  assert.equal(r.vq.numFree, 6, "nothing freed");
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects an id that is out of range", () => {
  const r = rig(8);
  add2(r);
  r.vq.publish();
  r.dev.pushUsed(8, 0);
  assert.throws(() => r.vq.popUsed(), /used id 8 .*not below 8/);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects a duplicate used entry for a completed id", () => {
  const r = rig(8);
  const a = add2(r);
  const b = add2(r, 64);
  r.vq.publish();
  r.dev.pushUsed(a, 4);
  r.dev.pushUsed(a, 4);
  assert.equal(r.vq.popUsed(), a);
  assert.equal(r.vq.numFree, 6);
  assert.throws(() => r.vq.popUsed(), new RegExp(`used id ${a} at used idx 1`));
  assert.equal(r.vq.numFree, 6, "the duplicate freed nothing");
  assert.notEqual(b, a);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects the id of a non-head descriptor of a chain", () => {
  const r = rig(8);
  const head = add2(r);
  r.vq.publish();
  const second = r.dev.chain(head).descs[1].index;
  assert.notEqual(second, head);
  r.dev.pushUsed(second, 0);
  assert.throws(() => r.vq.popUsed(), VirtqueueError);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects the id of a chain added but not published", () => {
  const r = rig(8);
  const a = add2(r);
  r.vq.publish();
  const b = add2(r, 64);
  r.dev.pushUsed(b, 0);
  assert.throws(() => r.vq.popUsed(), /not the head of a chain published/);
  assert.notEqual(a, b);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects a used len larger than the writable part", () => {
  const r = rig(8);
  const a = add2(r, 0, 16, 48);
  const b = r.vq.add([{ addrLo: r.buf.addrLo, addrHi: r.buf.addrHi, length: 4 }], [
    { addrLo: r.buf.addrLo, addrHi: r.buf.addrHi, length: 10 },
    { addrLo: r.buf.addrLo + 10, addrHi: r.buf.addrHi, length: 20 },
  ]);
  r.vq.publish();
  r.dev.pushUsed(a, 48);
  assert.equal(r.vq.popUsed(), a, "len equal to the writable part is fine");
  assert.equal(r.vq.usedLen, 48);
  r.dev.pushUsed(b, 31);
  assert.throws(() => r.vq.popUsed(), (e: unknown) => {
    assert.ok(e instanceof VirtqueueError);
    assert.match(e.message, /used len 31 for id \d+ exceeds the 30 writable bytes/);
    assert.equal(e.queueIndex, 0);
    return true;
  });
  // A read-only chain has no writable part: any len > 0 is a lie.
  const r2 = rig(4);
  const c = add2(r2, 0, 8, 0);
  r2.vq.publish();
  r2.dev.pushUsed(c, 1);
  assert.throws(() => r2.vq.popUsed(), VirtqueueError);
  r.vq.destroy();
  r2.vq.destroy();
});

Deno.test("SplitVirtqueue.popUsed() rejects a used.idx that jumps by more than the queue size", () => {
  const r = rig(4);
  add2(r);
  add2(r, 64);
  r.vq.publish();
  r.dev.setUsedIdx(5);
  assert.throws(
    () => r.vq.popUsed(),
    /used\.idx moved from 0 to 5, 5 entries, more than the queue size 4/,
  );
  // Backwards (a huge forward jump modulo 2^16) is caught the same way.
  r.dev.setUsedIdx(0xffff);
  assert.throws(() => r.vq.popUsed(), /65535 entries/);
  // Within the queue size but more than the chains published.
  r.dev.setUsedIdx(3);
  assert.throws(() => r.vq.popUsed(), /3 entries, more than the 2 published chains/);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue frees chains from its shadow even if the device scribbles on descriptors", () => {
  const r = rig(4);
  const a = add2(r);
  const b = add2(r, 64);
  r.vq.publish();
  // A hostile device rewrites the next links of every descriptor to point at descriptor 0.
  for (let i = 0; i < 4; i++) r.dev.scribbleNext(i, 0);
  r.dev.pushUsed(b, 0);
  r.dev.pushUsed(a, 0);
  assert.equal(r.vq.popUsed(), b);
  assert.equal(r.vq.popUsed(), a);
  assert.equal(r.vq.numFree, 4);
  // All four descriptors are really free again: two fresh 2-chains use all four distinct ones.
  const c = add2(r);
  const d = add2(r, 64);
  r.vq.publish();
  r.dev.popAvail();
  r.dev.popAvail();
  r.dev.popAvail();
  r.dev.popAvail();
  const used = [...r.dev.chain(c).descs, ...r.dev.chain(d).descs].map((x) => x.index);
  assert.deepEqual([...used].sort(), [0, 1, 2, 3]);
  r.vq.destroy();
});
