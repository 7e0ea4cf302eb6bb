/** PackedVirtqueue layout, wrap counters, out-of-order use, indirect tables, pinned pairs. */

import assert from "node:assert/strict";
import { PackedVirtqueue } from "../driver/virtio/packed_queue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { RING_EVENT_FLAGS_DISABLE, VIRTQ_DESC_F_INDIRECT } from "../spec/packed_ring.ts";
import { PackedHandDevice } from "./_packed_ring_helpers.ts";
import { A, add2, N, rig, serveOne, U, W } from "./_packed_queue.ts";

Deno.test("PackedVirtqueue takes any size in 1..32768 and lays out ring, driver and device areas", () => {
  const memory = new SimulatedMemory();
  for (const size of [0, 32769, 1.5, -4, NaN]) {
    assert.throws(() => new PackedVirtqueue(0, size, memory), RangeError, `size ${size}`);
  }
  assert.equal(memory.allocated, 0);
  for (const size of [1, 3, 100, 256, 32768]) {
    const vq = new PackedVirtqueue(2, size, memory);
    const a = vq.addresses;
    assert.equal(vq.layout, "packed");
    assert.equal(vq.size, size);
    assert.equal(vq.numFree, size);
    // §2.8.10.1: ring 16-aligned and 16·size bytes, each event structure 4-aligned, 4 bytes.
    assert.equal(a.descLo % 16, 0);
    assert.equal(a.driverLo, a.descLo + 16 * size);
    assert.equal(a.deviceLo, a.driverLo + 4);
    const dev = new PackedHandDevice(memory, a, size);
    assert.deepEqual(dev.driverEvent(), { offWrap: 0, flags: RING_EVENT_FLAGS_DISABLE });
    vq.destroy();
  }
  assert.equal(memory.allocated, 0);
});

Deno.test("PackedVirtqueue.add2() writes readable then writable with the id, head flags last", () => {
  const r = rig(8);
  const id = add2(r);
  assert.equal(id, 0);
  // Not visible before publish(): the head still has its zero flags (§2.8.6, §2.8.21.1).
  assert.equal(r.dev.readDesc(0).flags, 0);
  assert.equal(r.dev.readDesc(1).flags, W | A, "the rest of the list is written first");
  assert.equal(r.dev.popAvail(), null);
  r.vq.publish();
  const b = r.dev.popAvail()!;
  assert.deepEqual(b.descs.map((d) => [d.pos, d.flags, d.len, d.id, d.addrLo - r.buf.addrLo]), [
    [0, N | A, 16, 0, 0],
    [1, W | A, 48, 0, 16],
  ]);
  assert.equal(b.count, 2);
  r.dev.pushUsed(b.id, 40, 2);
  assert.equal(r.vq.hasUsed(), true);
  assert.equal(r.vq.popUsed(), 0);
  assert.equal(r.vq.usedLen, 40);
  assert.equal(r.vq.numFree, 8);
  assert.equal(r.vq.hasUsed(), false);
  assert.equal(r.vq.popUsed(), -1);
  // One element alone: readable only, or writable only.
  const ro = add2(r, 64, 8, 0);
  const wo = add2(r, 128, 0, 4);
  r.vq.publish();
  assert.deepEqual(r.dev.popAvail()!.descs.map((d) => d.flags), [A]);
  assert.deepEqual(r.dev.popAvail()!.descs.map((d) => d.flags), [W | A]);
  assert.notEqual(ro, wo);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue wraps: chains cross the ring end, both wrap counters toggle", () => {
  // Size 5 with 2-descriptor chains: every other lap a chain straddles the end.
  const r = rig(5);
  let usedFlags = 0;
  for (let i = 0; i < 5 * 40; i++) {
    const id = add2(r, (i % 4) * 64);
    assert.ok(id >= 0);
    r.vq.publish();
    const b = r.dev.popAvail()!;
    assert.equal(b.id, id);
    assert.equal(b.count, 2);
    // §2.8.1: AVAIL matches the driver's wrap counter, USED its inverse, in each descriptor.
    for (const d of b.descs) {
      const wrapAtSlot = Math.floor((2 * i + (d === b.descs[0] ? 0 : 1)) / 5) % 2 === 0 ? 1 : 0;
      assert.equal(d.flags & (A | U), wrapAtSlot ? A : U, `request ${i} slot ${d.pos}`);
    }
    usedFlags |= r.dev.usedWrap === 0 ? 1 : 2;
    r.dev.pushUsed(b.id, i % 49, 2);
    assert.equal(r.vq.popUsed(), id);
    assert.equal(r.vq.usedLen, i % 49);
  }
  assert.equal(usedFlags, 3, "the device's wrap counter took both values");
  assert.equal(r.vq.numFree, 5);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.popUsed() follows out-of-order completion and skips each buffer's slots", () => {
  const r = rig(8);
  const a = add2(r); // slots 0, 1
  const b = add2(r, 64, 8, 0); // slot 2
  const c = add2(r, 128); // slots 3, 4
  r.vq.publish();
  const ba = r.dev.popAvail()!, bb = r.dev.popAvail()!, bc = r.dev.popAvail()!;
  // Used in the order c, a, b: written at slots 0, 2, 4 (§2.8.2: skip the buffer's count).
  r.dev.pushUsed(bc.id, 48, bc.count);
  r.dev.pushUsed(ba.id, 44, ba.count);
  r.dev.pushUsed(bb.id, 0, bb.count);
  assert.deepEqual([r.vq.popUsed(), r.vq.usedLen], [c, 48]);
  assert.deepEqual([r.vq.popUsed(), r.vq.usedLen], [a, 44]);
  assert.deepEqual([r.vq.popUsed(), r.vq.usedLen], [b, 0]);
  assert.equal(r.vq.popUsed(), -1);
  assert.equal(r.vq.numFree, 8);
  assert.equal(r.vq.inFlight, 0);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue reads the used length whether or not the device set WRITE (QEMU 7.2 never does)", () => {
  const r = rig(4);
  const id = add2(r);
  r.vq.publish();
  const b = r.dev.popAvail()!;
  r.dev.pushUsed(b.id, 4, b.count, { write: false });
  assert.equal(r.vq.popUsed(), id);
  assert.equal(r.vq.usedLen, 4);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.add2() returns -1 when descriptors run out and recovers after popUsed()", () => {
  const r = rig(5);
  const ids = [add2(r), add2(r)];
  assert.equal(r.vq.numFree, 1);
  assert.equal(add2(r), -1, "a 2-descriptor buffer does not fit in 1 slot");
  assert.ok(add2(r, 256, 8, 0) >= 0, "a 1-descriptor one does");
  assert.equal(add2(r, 320, 8, 0), -1);
  r.vq.publish();
  serveOne(r, 48);
  assert.equal(r.vq.popUsed(), ids[0]);
  assert.ok(add2(r) >= 0);
  r.vq.destroy();
});

// ---- Indirect descriptors, pinned pairs --------------------------------------------------

Deno.test("PackedVirtqueue with indirect descriptors spends one ring slot per buffer (§2.8.7)", () => {
  const r = rig(4, { indirect: true, maxIndirect: 3 });
  assert.equal(r.vq.maxIndirect, 3);
  const ids = [add2(r), add2(r, 64), add2(r, 128), add2(r, 192)];
  assert.deepEqual(ids, [0, 1, 2, 3]);
  assert.equal(r.vq.numFree, 0);
  assert.equal(add2(r, 256), -1);
  r.vq.publish();
  const b = r.dev.popAvail()!;
  assert.equal(b.count, 1);
  assert.equal(b.indirect!.flags, VIRTQ_DESC_F_INDIRECT | A, "INDIRECT alone: no NEXT, no WRITE");
  assert.equal(b.indirect!.len, 32);
  // §2.8.7: WRITE is the only flag in the table, and the id there is reserved (0).
  assert.deepEqual(b.descs.map((d) => [d.flags, d.len, d.id]), [[0, 16, 0], [W, 48, 0]]);
  r.dev.pushUsed(b.id, 48, 1);
  assert.equal(r.vq.popUsed(), 0);
  // add(): a table up to maxIndirect elements, a direct chain beyond.
  const buf = (off: number, length: number) => ({
    addrLo: r.buf.addrLo + off,
    addrHi: r.buf.addrHi,
    length,
  });
  const three = r.vq.add([buf(0, 8), buf(8, 8)], [buf(16, 8)]);
  assert.ok(three >= 0);
  for (let i = 0; i < 3; i++) {
    r.dev.popAvail();
  }
  r.vq.publish();
  const t = r.dev.popAvail()!;
  assert.equal(t.id, three);
  assert.deepEqual(t.descs.map((d) => d.flags), [0, 0, W]);
  r.vq.destroy();

  const d = rig(8, { indirect: true, maxIndirect: 2 });
  const four = d.vq.add(
    [{ addrLo: d.buf.addrLo, addrHi: d.buf.addrHi, length: 4 }],
    [1, 2, 3].map((i) => ({ addrLo: d.buf.addrLo + 8 * i, addrHi: d.buf.addrHi, length: 4 })),
  );
  d.vq.publish();
  const c = d.dev.popAvail()!;
  assert.equal(c.indirect, null);
  assert.equal(c.count, 4);
  assert.deepEqual(c.descs.map((x) => x.flags), [N | A, N | W | A, N | W | A, W | A]);
  assert.deepEqual(c.descs.map((x) => x.id), [four, four, four, four], "the id in every slot");
  d.dev.pushUsed(four, 13, 4);
  assert.throws(() => d.vq.popUsed(), /used len 13 for id \d+ exceeds the 12 writable bytes/);
  d.vq.destroy();
});

Deno.test("PackedVirtqueue pinned pairs: ids 2p written anew by each addPair, out of the free ids", () => {
  const r = rig(8, { pairs: 2 });
  const lo = r.buf.addrLo, hi = r.buf.addrHi;
  r.vq.setPair(1, lo + 64, hi, 60, lo + 124, hi, 4);
  assert.equal(r.vq.addPair(1, 36), 2);
  const other = add2(r, 256);
  assert.ok(other !== 0 && other !== 2, `add2 took id ${other}, which belongs to a pair`);
  r.vq.publish();
  const p = r.dev.popAvail()!;
  assert.deepEqual(p.descs.map((d) => [d.flags, d.len, d.id, d.addrLo - lo]), [
    [N | A, 36, 2, 64],
    [W | A, 4, 2, 124],
  ]);
  assert.throws(() => r.vq.addPair(1, 36), /in flight/);
  assert.throws(() => r.vq.setPair(1, lo, hi, 8, lo + 8, hi, 4), /in flight/);
  r.dev.pushUsed(2, 4, 2);
  assert.equal(r.vq.popUsed(), 2);
  assert.equal(r.vq.addPair(1, 28), 2);
  r.vq.publish();
  r.dev.popAvail(); // `other`
  assert.deepEqual(r.dev.popAvail()!.descs.map((d) => d.len), [28, 4]);
  assert.throws(() => r.vq.addPair(0, 8), /no buffers set/);
  for (const rLen of [0, 61, 1.5, NaN]) {
    assert.throws(() => r.vq.addPair(1, rLen), /readable bytes|in flight/, `rLen ${rLen}`);
  }
  r.vq.destroy();
  // A ring too full for the pair's two slots: -1, not a throw.
  const f = rig(3, { pairs: 1 });
  f.vq.setPair(0, lo, hi, 8, lo + 8, hi, 4);
  assert.ok(add2(f, 0, 8, 0) >= 0);
  assert.ok(add2(f, 64, 8, 0) >= 0);
  assert.equal(f.vq.addPair(0, 8), -1);
  f.vq.destroy();
});
