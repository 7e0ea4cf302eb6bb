/**
 * The driver's packed virtqueue (virtio 1.3 §2.8) against a device played by hand
 * ({@link PackedHandDevice}): layout, wrap counters, deferred head flags, chains crossing the
 * ring end, out-of-order completion with skipping, indirect tables, pinned pairs, both event
 * suppression structures, and every check of what the device writes (fault injection: each
 * check is shown to fire on the lie it exists for).
 */

import assert from "node:assert/strict";
import { PackedVirtqueue } from "../driver/virtio/packed_queue.ts";
import { VirtqueueError, type VirtqueueOptions } from "../driver/virtio/virtqueue.ts";
import type { DmaRegion } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import {
  eventOffWrap,
  passedEvent,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";
import { PackedHandDevice } from "./_packed_ring_helpers.ts";
import { allocatingControl, heapGrowth } from "./_heap.ts";

const A = VIRTQ_DESC_F_AVAIL;
const U = VIRTQ_DESC_F_USED;
const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;

interface Rig {
  memory: SimulatedMemory;
  vq: PackedVirtqueue;
  dev: PackedHandDevice;
  buf: DmaRegion;
}

function rig(size: number, options: VirtqueueOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const vq = new PackedVirtqueue(0, size, memory, options);
  const dev = new PackedHandDevice(memory, vq.addresses, size);
  const buf = memory.alloc(64 * 1024);
  return { memory, vq, dev, buf };
}

/** Adds a 16-byte-in / 48-byte-out request at `off` of `buf` through add2(). */
function add2(r: Rig, off = 0, rLen = 16, wLen = 48): number {
  const lo = r.buf.addrLo + off;
  return r.vq.add2(lo, r.buf.addrHi, rLen, lo + rLen, r.buf.addrHi, wLen);
}

/** The device takes the next buffer and returns it at once with `len` bytes written. */
function serveOne(r: Rig, len: number): number {
  const b = r.dev.popAvail();
  assert.ok(b, "a buffer is available");
  r.dev.pushUsed(b.id, len, b.count);
  return b.id;
}

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

// ---- Event suppression (§2.8.10) ---------------------------------------------------------

Deno.test("PackedVirtqueue.publish() follows the device's ENABLE/DISABLE both ways", () => {
  const r = rig(8);
  assert.equal(r.vq.publish(), false, "nothing added: no notification");
  add2(r);
  assert.equal(r.vq.publish(), true, "zeroed device area: ENABLE");
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DISABLE);
  add2(r, 64);
  assert.equal(r.vq.publish(), false);
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_ENABLE);
  add2(r, 128);
  assert.equal(r.vq.publish(), true);
  // DESC without EVENT_IDX is not meaningful: notify rather than risk a lost wake-up.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(7, 0));
  add2(r, 192, 8, 0);
  assert.equal(r.vq.publish(), true);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.publish() with EVENT_IDX notifies only past the device's event descriptor", () => {
  const r = rig(8, { eventIdx: true });
  // The device waits at slot 2 (wrap 1); one buffer at slots 0-1 does not reach it.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(2, 1));
  add2(r);
  assert.equal(r.vq.publish(), false);
  add2(r, 64);
  assert.equal(r.vq.publish(), true, "slots 2-3 include the event descriptor");
  add2(r, 128);
  assert.equal(r.vq.publish(), false, "slots 4-5 are past it");
  // Across the end: slots 6, 7 then 0 (wrap 0); an event at slot 0 of wrap 0 is passed.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(0, 0));
  for (let i = 0; i < 3; i++) serveOne(r, 4);
  for (let i = 0; i < 3; i++) r.vq.popUsed();
  add2(r, 0, 8, 0);
  add2(r, 64);
  assert.equal(r.vq.publish(), true);
  r.vq.destroy();
});

Deno.test("passedEvent() is vring_need_event over ring positions and wrap counters", () => {
  // Mover went from 3 to 6 in its current lap (wrap 1), ring of 8.
  assert.equal(passedEvent(eventOffWrap(3, 1), 1, 3, 6, 8), true);
  assert.equal(passedEvent(eventOffWrap(5, 1), 1, 3, 6, 8), true);
  assert.equal(passedEvent(eventOffWrap(6, 1), 1, 3, 6, 8), false);
  assert.equal(passedEvent(eventOffWrap(2, 1), 1, 3, 6, 8), false);
  // An event of the other wrap lies one lap back: from 6 (old, previous lap = −2) to 1.
  assert.equal(passedEvent(eventOffWrap(7, 0), 1, -2, 1, 8), true);
  assert.equal(passedEvent(eventOffWrap(5, 0), 1, -2, 1, 8), false);
  // The largest ring: a full lap of 32768 is still told apart.
  assert.equal(passedEvent(eventOffWrap(0, 1), 1, 0, 32767, 32768), true);
  assert.equal(passedEvent(eventOffWrap(32767, 1), 1, 0, 32767, 32768), false);
});

Deno.test("PackedVirtqueue.setInterrupts() writes ENABLE/DISABLE, or DESC at the next used slot with EVENT_IDX", () => {
  const plain = rig(8);
  assert.equal(plain.vq.setInterrupts(true), true);
  assert.equal(plain.dev.driverEvent().flags, RING_EVENT_FLAGS_ENABLE);
  assert.equal(plain.vq.setInterrupts(false), true);
  assert.equal(plain.dev.driverEvent().flags, RING_EVENT_FLAGS_DISABLE);
  plain.vq.destroy();

  const r = rig(4, { eventIdx: true });
  assert.equal(r.vq.setInterrupts(true), true);
  assert.deepEqual(r.dev.driverEvent(), {
    offWrap: eventOffWrap(0, 1),
    flags: RING_EVENT_FLAGS_DESC,
  });
  // Each pop moves the event to the next slot the driver expects used, wrap included.
  for (let i = 0; i < 3; i++) {
    add2(r);
    r.vq.publish();
    serveOne(r, 4);
    r.vq.popUsed();
  }
  assert.deepEqual(r.dev.driverEvent(), {
    offWrap: eventOffWrap(2, 0),
    flags: RING_EVENT_FLAGS_DESC,
  });
  // Something used meanwhile: setInterrupts(true) says "poll first".
  add2(r);
  r.vq.publish();
  serveOne(r, 4);
  assert.equal(r.vq.setInterrupts(true), false);
  assert.equal(r.vq.setInterrupts(false), false);
  assert.equal(r.dev.driverEvent().flags, RING_EVENT_FLAGS_DISABLE);
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
