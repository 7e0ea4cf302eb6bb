/** PackedVirtqueue reset(), destroy() and the allocation-free hot path. */

import assert from "node:assert/strict";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { RING_EVENT_FLAGS_DISABLE } from "../spec/packed_ring.ts";
import { PackedHandDevice } from "./_packed_ring_helpers.ts";
import { allocatingControl, heapGrowth } from "./_heap.ts";
import { A, add2, rig, U } from "./_packed_queue.ts";

Deno.test("PackedVirtqueue.reset() returns the ids in flight and starts over at slot 0, wrap 1", () => {
  const r = rig(8, { eventIdx: true, indirect: true });
  const a = add2(r);
  const b = add2(r, 64, 8, 0);
  r.vq.publish();
  const c = add2(r, 128); // never published
  r.dev.popAvail();
  r.dev.pushUsed(0x77, 4, 1);
  assert.throws(() => r.vq.popUsed(), VirtqueueError);
  r.vq.setInterrupts(true);
  assert.deepEqual(r.vq.reset(), [a, b, c].sort((x, y) => x - y));
  assert.equal(r.vq.broken, false);
  assert.equal(r.vq.numFree, 8);
  assert.equal(r.vq.inFlight, 0);
  for (let i = 0; i < 8; i++) assert.deepEqual(r.dev.readDesc(i).flags, 0);
  assert.deepEqual(r.dev.driverEvent(), { offWrap: 0, flags: RING_EVENT_FLAGS_DISABLE });
  const dev = new PackedHandDevice(r.memory, r.vq.addresses, 8);
  const e = add2(r);
  r.vq.publish();
  const got = dev.popAvail()!;
  assert.equal(got.id, e);
  dev.pushUsed(e, 48, got.count);
  assert.equal(r.vq.popUsed(), e);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.destroy() frees its memory and refuses later use", () => {
  const r = rig(8, { indirect: true });
  const before = r.memory.allocated;
  r.vq.destroy();
  assert.ok(r.memory.allocated < before);
  assert.equal(r.memory.allocated, r.buf.size);
  r.vq.destroy();
  assert.throws(() => add2(r), TypeError);
  assert.throws(() => r.vq.publish(), TypeError);
  assert.throws(() => r.vq.popUsed(), TypeError);
  assert.throws(() => r.vq.hasUsed(), TypeError);
  const p = rig(8, { pairs: 2 });
  p.vq.setPair(0, p.buf.addrLo, p.buf.addrHi, 60, p.buf.addrLo + 60, p.buf.addrHi, 4);
  p.vq.destroy();
  assert.throws(() => p.vq.addPair(0, 36), TypeError);
});

Deno.test("PackedVirtqueue hot path (add2 or addPair, publish, hasUsed, popUsed) allocates nothing", () => {
  for (const options of [{}, { eventIdx: true, indirect: true }, { pairs: 8 }]) {
    const size = 16;
    const r = rig(size, options);
    const view = r.memory.view;
    const ring = r.dev.ring;
    const lo = r.buf.addrLo;
    const hi = r.buf.addrHi;
    const pinned = r.vq.pairs > 0;
    for (let p = 0; p < r.vq.pairs; p++) r.vq.setPair(p, lo, hi, 60, lo + 64, hi, 48);
    // The device, inline and allocation-free: the buffer just made available is the only one
    // out, so its used descriptor goes where the device's used cursor is.
    let usedPos = 0, usedWrap = 1;
    const step = (i: number): void => {
      const id = pinned
        ? r.vq.addPair(i & 7, 16 + (i & 1))
        : r.vq.add2(lo, hi, 16, lo + 64, hi, 48);
      if (id < 0) throw new Error("ring full");
      r.vq.publish();
      const count = pinned || !r.vq.maxIndirect ? 2 : 1;
      const d = ring + usedPos * 16;
      view.setUint16(d + 12, id, true);
      view.setUint32(d + 8, i & 31, true);
      view.setUint16(d + 14, usedWrap ? A | U : 0, true);
      usedPos += count;
      if (usedPos >= size) {
        usedPos -= size;
        usedWrap ^= 1;
      }
      if (!r.vq.hasUsed()) throw new Error("no used descriptor");
      if (r.vq.popUsed() !== id) throw new Error("wrong id");
      if (r.vq.usedLen !== (i & 31)) throw new Error("wrong len");
    };
    const grown = heapGrowth(step);
    assert.ok(grown < 1024 * 1024, `hot path grew the heap by ${grown} bytes`);
    assert.equal(r.vq.numFree, size);
    r.vq.destroy();
  }
  allocatingControl();
});
