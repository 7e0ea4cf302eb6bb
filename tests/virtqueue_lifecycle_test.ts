/** SplitVirtqueue reset(), destroy() and the allocation-free hot path. */

import assert from "node:assert/strict";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from "../spec/split_ring.ts";
import { allocatingControl, heapGrowth } from "./_heap.ts";
import { add2, rig } from "./_virtqueue.ts";

Deno.test("SplitVirtqueue.reset() returns the ids in flight and leaves a clean ring", () => {
  for (const eventIdx of [false, true]) {
    const r = rig(8, { eventIdx, indirect: true });
    const a = add2(r);
    const b = add2(r, 64, 8, 0);
    const c = add2(r, 128);
    r.vq.publish();
    const d = add2(r, 192); // added, never published
    r.dev.popAvail();
    r.dev.pushUsed(b, 0);
    assert.equal(r.vq.popUsed(), b);
    r.vq.setInterrupts(true);
    r.dev.pushUsed(0x7777, 0);
    assert.throws(() => r.vq.popUsed(), VirtqueueError);
    assert.equal(r.vq.broken, true);
    r.dev.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);

    assert.deepEqual(r.vq.reset(), [a, c, d].sort((x, y) => x - y));
    assert.equal(r.vq.numFree, 8);
    assert.equal(r.vq.inFlight, 0);
    assert.equal(r.vq.broken, false);
    assert.equal(r.dev.availIdx(), 0);
    assert.equal(r.dev.usedIdx(), 0);
    assert.equal(r.dev.usedFlags(), 0, "used ring zeroed, used.flags 0");
    assert.equal(r.dev.availFlags(), eventIdx ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT);
    for (let i = 0; i < 8; i++) assert.deepEqual(r.dev.readDesc(i).len, 0);
    assert.equal(r.dev.availRing(0), 0);

    // Starts over from index 0, as a freshly enabled queue must.
    r.dev.lastAvail = 0;
    const e = add2(r);
    r.vq.publish();
    assert.equal(r.dev.availIdx(), 1);
    assert.equal(r.dev.popAvail(), e);
    r.dev.pushUsed(e, 48);
    assert.equal(r.vq.popUsed(), e);
    r.vq.destroy();
  }
});

Deno.test("SplitVirtqueue.destroy() frees its memory and refuses later use", () => {
  const r = rig(8, { indirect: true });
  const before = r.memory.allocated;
  r.vq.destroy();
  assert.ok(r.memory.allocated < before);
  assert.equal(r.memory.allocated, r.buf.size);
  r.vq.destroy();
  assert.throws(() => add2(r), TypeError);
  assert.throws(() => r.vq.publish(), TypeError);
  assert.throws(() => r.vq.popUsed(), TypeError);
  // A pinned pair that was set is refused too: its descriptors are in freed memory.
  const p = rig(8, { pairs: 2 });
  p.vq.setPair(0, p.buf.addrLo, p.buf.addrHi, 60, p.buf.addrLo + 60, p.buf.addrHi, 4);
  p.vq.destroy();
  assert.throws(() => p.vq.addPair(0, 36), TypeError);
  assert.throws(() => p.vq.setPair(0, 0, 0, 8, 8, 0, 4), TypeError);
});

Deno.test("SplitVirtqueue hot path (add2 or addPair, publish, hasUsed, popUsed) allocates nothing", () => {
  for (const options of [{}, { eventIdx: true, indirect: true }, { pairs: 8 }]) {
    const r = rig(16, options);
    const view = r.memory.view;
    const dev = r.dev;
    const lo = r.buf.addrLo;
    const hi = r.buf.addrHi;
    const size = 16;
    const pinned = r.vq.pairs > 0;
    for (let p = 0; p < r.vq.pairs; p++) r.vq.setPair(p, lo, hi, 60, lo + 64, hi, 48);
    // The device, inline and allocation-free: pop one avail entry, complete it.
    const step = (i: number): void => {
      const head = pinned
        ? r.vq.addPair(i & 7, 16 + (i & 1))
        : r.vq.add2(lo, hi, 16, lo + 64, hi, 48);
      if (head < 0) throw new Error("ring full");
      r.vq.publish();
      const availIdx = view.getUint16(dev.avail + 2, true);
      const slot = (availIdx - 1) & (size - 1);
      const id = view.getUint16(dev.avail + 4 + 2 * slot, true);
      const usedIdx = view.getUint16(dev.used + 2, true);
      const elem = dev.used + 4 + 8 * (usedIdx & (size - 1));
      view.setUint32(elem, id, true);
      view.setUint32(elem + 4, i & 31, true);
      view.setUint16(dev.used + 2, (usedIdx + 1) & 0xffff, true);
      if (!r.vq.hasUsed()) throw new Error("no used element");
      if (r.vq.popUsed() !== head) throw new Error("wrong id");
      if (r.vq.usedLen !== (i & 31)) throw new Error("wrong len");
    };
    const grown = heapGrowth(step);
    assert.ok(grown < 1024 * 1024, `hot path grew the heap by ${grown} bytes`);
    assert.equal(r.vq.numFree, pinned ? 0 : 16);
    r.vq.destroy();
  }
  allocatingControl();
});
