/** SplitVirtqueue layout and the chains add(), add2(), pinned pairs and indirect tables write. */

import assert from "node:assert/strict";
import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import type { DmaAllocator, DmaRegion } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import {
  availRingSize,
  descTableSize,
  usedRingSize,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../spec/split_ring.ts";
import { HandDevice } from "./_ring_helpers.ts";
import { add2, complete, rig } from "./_virtqueue.ts";

Deno.test("SplitVirtqueue constructor rejects a size that is not a power of two in 1..32768", () => {
  const memory = new SimulatedMemory();
  for (const size of [0, 3, 6, 100, 65536, 1.5, -4]) {
    assert.throws(() => new SplitVirtqueue(0, size, memory), RangeError, `size ${size}`);
  }
  assert.throws(() => new SplitVirtqueue(-1, 8, memory), RangeError);
  assert.throws(
    () => new SplitVirtqueue(0, 8, memory, { indirect: true, maxIndirect: 1 }),
    RangeError,
  );
  assert.equal(memory.allocated, 0);
  for (const size of [1, 2, 256, 32768]) {
    const vq = new SplitVirtqueue(0, size, memory);
    assert.equal(vq.size, size);
    assert.equal(vq.numFree, size);
    vq.destroy();
  }
  assert.equal(memory.allocated, 0);
});

Deno.test("SplitVirtqueue places desc, avail and used in one region with their alignments", () => {
  for (const size of [1, 2, 8, 256, 32768]) {
    const memory = new SimulatedMemory();
    const vq = new SplitVirtqueue(3, size, memory);
    const a = vq.addresses;
    assert.equal(a.descHi, memory.baseHi);
    assert.equal(a.descLo % 16, 0, "desc aligned to 16");
    assert.equal(a.driverLo % 2, 0, "avail aligned to 2");
    assert.equal(a.deviceLo % 4, 0, "used aligned to 4");
    // Non-overlapping, in order, sizes including the event fields (§2.7).
    assert.ok(a.driverLo >= a.descLo + descTableSize(size));
    assert.ok(a.deviceLo >= a.driverLo + availRingSize(size));
    // One allocation holds all three parts.
    assert.ok(memory.allocated >= a.deviceLo + usedRingSize(size) - a.descLo);
    assert.ok(memory.allocated < a.deviceLo + usedRingSize(size) - a.descLo + 4096);
    const dev = new HandDevice(memory, a, size);
    assert.equal(dev.usedFlags(), 0, "used.flags initialised to 0 (§2.7.8)");
    assert.equal(dev.availIdx(), 0);
    assert.equal(dev.availFlags(), VIRTQ_AVAIL_F_NO_INTERRUPT, "driver polls by default");
    assert.equal(vq.index, 3);
    vq.destroy();
    assert.equal(memory.allocated, 0);
  }
});

Deno.test("SplitVirtqueue carries an address that crosses a 4 GiB boundary into the high half", () => {
  const buffer = new ArrayBuffer(1 << 20);
  const regions: DmaRegion[] = [];
  const dma: DmaAllocator = {
    alloc(size: number): DmaRegion {
      const region = {
        addrLo: 0xffff_f000,
        addrHi: 5,
        size,
        bytes: new Uint8Array(buffer, 0, size),
        view: new DataView(buffer, 0, size),
      };
      regions.push(region);
      return region;
    },
    free(): void {},
  };
  const vq = new SplitVirtqueue(0, 256, dma);
  assert.deepEqual(vq.addresses, {
    descLo: 0xffff_f000,
    descHi: 5,
    driverLo: 0,
    driverHi: 6,
    deviceLo: 520, // avail at 4 GiB + 0, 6 + 2·256 = 518 bytes, rounded up to 4
    deviceHi: 6,
  });
  assert.equal(regions.length, 1);
});

Deno.test("SplitVirtqueue.add() lays out readable buffers before writable ones with NEXT links", () => {
  const r = rig(8);
  const b = r.buf;
  const head = r.vq.add(
    [
      { addrLo: b.addrLo, addrHi: b.addrHi, length: 10 },
      { addrLo: b.addrLo + 100, addrHi: 0xdead_beef, length: 20 },
    ],
    [
      { addrLo: b.addrLo + 200, addrHi: b.addrHi, length: 30 },
      { addrLo: 0xffff_fff0, addrHi: 0xffff_ffff, length: 40 },
    ],
  );
  assert.equal(head, 0);
  assert.equal(r.vq.numFree, 4);
  assert.equal(r.dev.availIdx(), 0, "not visible before publish()");
  r.vq.publish();
  assert.equal(r.dev.availIdx(), 1);
  assert.equal(r.dev.popAvail(), head);
  const { indirect, descs } = r.dev.chain(head);
  assert.equal(indirect, null);
  assert.deepEqual(descs.map((d) => d.len), [10, 20, 30, 40]);
  assert.deepEqual(descs.map((d) => d.addrHi), [b.addrHi, 0xdead_beef, b.addrHi, 0xffff_ffff]);
  assert.deepEqual(descs.map((d) => d.addrLo), [
    b.addrLo,
    b.addrLo + 100,
    b.addrLo + 200,
    0xffff_fff0,
  ]);
  const N = VIRTQ_DESC_F_NEXT;
  const W = VIRTQ_DESC_F_WRITE;
  assert.deepEqual(descs.map((d) => d.flags), [N, N, N | W, W]);
  assert.equal(new Set(descs.map((d) => d.index)).size, 4, "four distinct descriptors");
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.add2() writes one readable then one writable descriptor, or one alone", () => {
  const r = rig(8);
  const both = add2(r, 0, 16, 48);
  const readOnly = add2(r, 100, 12, 0);
  const writeOnly = add2(r, 200, 0, 24);
  assert.equal(r.vq.numFree, 4);
  r.vq.publish();
  assert.deepEqual([r.dev.popAvail(), r.dev.popAvail(), r.dev.popAvail()], [
    both,
    readOnly,
    writeOnly,
  ]);
  const c1 = r.dev.chain(both).descs;
  assert.equal(c1.length, 2);
  assert.deepEqual(c1.map((d) => [d.flags, d.len, d.addrLo, d.addrHi]), [
    [VIRTQ_DESC_F_NEXT, 16, r.buf.addrLo, r.buf.addrHi],
    [VIRTQ_DESC_F_WRITE, 48, r.buf.addrLo + 16, r.buf.addrHi],
  ]);
  assert.equal(c1[0].next, c1[1].index);
  const c2 = r.dev.chain(readOnly).descs;
  assert.deepEqual(c2.map((d) => [d.flags, d.len]), [[0, 12]]);
  const c3 = r.dev.chain(writeOnly).descs;
  assert.deepEqual(c3.map((d) => [d.flags, d.len]), [[VIRTQ_DESC_F_WRITE, 24]]);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue pinned pairs: fixed chains 2p → 2p+1 outside the free list", () => {
  const r = rig(8, { pairs: 2 });
  assert.equal(r.vq.pairs, 2);
  // Descriptors 0..3 belong to the pairs; add2() only ever gets 4..7.
  assert.equal(r.vq.numFree, 4);
  const lo = r.buf.addrLo, hi = r.buf.addrHi;
  r.vq.setPair(1, lo + 64, hi, 60, lo + 124, hi, 4);
  assert.equal(r.vq.addPair(1, 36), 2);
  const other = add2(r, 256);
  assert.ok(other >= 4, `add2 took descriptor ${other}, which belongs to a pair`);
  assert.equal(r.vq.numFree, 2);
  r.vq.publish();
  assert.deepEqual([r.dev.popAvail(), r.dev.popAvail()], [2, other]);
  const pair = r.dev.chain(2).descs;
  // §2.7.4.2: readable first, linked by NEXT; only the length the request uses is readable.
  assert.deepEqual(pair.map((d) => [d.index, d.flags, d.len, d.addrLo, d.addrHi]), [
    [2, VIRTQ_DESC_F_NEXT, 36, lo + 64, hi],
    [3, VIRTQ_DESC_F_WRITE, 4, lo + 124, hi],
  ]);
  // In flight: neither sendable again nor re-pointable.
  assert.throws(() => r.vq.addPair(1, 36), /in flight/);
  assert.throws(() => r.vq.setPair(1, lo, hi, 8, lo + 8, hi, 4), /in flight/);
  complete(r, 2, 4);
  assert.equal(r.vq.popUsed(), 2);
  assert.equal(r.vq.usedLen, 4);
  // Returning a pair gives nothing to the free list.
  assert.equal(r.vq.numFree, 2);
  // Sent again with another length: the descriptor's len follows, the rest stays.
  assert.equal(r.vq.addPair(1, 28), 2);
  r.vq.publish();
  assert.equal(r.dev.popAvail(), 2);
  assert.deepEqual(r.dev.chain(2).descs.map((d) => d.len), [28, 4]);
  complete(r, 2, 4);
  assert.equal(r.vq.popUsed(), 2);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue pinned pairs refuse what a chain may not be, one reason at a time", () => {
  const memory = new SimulatedMemory();
  for (const pairs of [-1, 5, 1.5]) {
    assert.throws(() => new SplitVirtqueue(0, 8, memory, { pairs }), /pairs/, `pairs ${pairs}`);
  }
  const r = rig(8, { pairs: 4 });
  assert.equal(r.vq.numFree, 0);
  assert.equal(add2(r), -1, "every descriptor is pinned");
  const lo = r.buf.addrLo, hi = r.buf.addrHi;
  assert.throws(() => r.vq.addPair(0, 8), /no buffers set/);
  assert.throws(() => r.vq.setPair(4, lo, hi, 8, lo + 8, hi, 4), /not one of the 4/);
  assert.throws(() => r.vq.setPair(0, lo, hi, 0, lo + 8, hi, 4), /two buffers/);
  assert.throws(() => r.vq.setPair(0, lo, hi, 8, lo + 8, hi, 0), /two buffers/);
  assert.throws(() => r.vq.setPair(0, -1, hi, 8, lo + 8, hi, 4), /address halves/);
  assert.throws(() => r.vq.setPair(0, lo, hi, 2 ** 32 - 1, lo, hi, 2), /more than 2\^32/);
  r.vq.setPair(0, lo, hi, 60, lo + 60, hi, 4);
  for (const rLen of [0, 61, 1.5, NaN]) {
    assert.throws(() => r.vq.addPair(0, rLen), /readable bytes/, `rLen ${rLen}`);
  }
  assert.throws(() => r.vq.addPair(-1, 8), /not one of/);
  assert.equal(r.vq.addPair(0, 60), 0);
  assert.throws(() => r.vq.addPair(0, 60), /in flight/);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue pinned pairs: the odd half is no head, and reset() forgets the buffers", () => {
  const r = rig(8, { pairs: 4 });
  const lo = r.buf.addrLo, hi = r.buf.addrHi;
  r.vq.setPair(2, lo, hi, 60, lo + 60, hi, 4);
  assert.equal(r.vq.addPair(2, 20), 4);
  r.vq.publish();
  complete(r, 5, 4);
  assert.throws(() => r.vq.popUsed(), VirtqueueError);
  assert.deepEqual(r.vq.reset(), [4]);
  assert.throws(() => r.vq.addPair(2, 20), /no buffers set/);
  // The links are back for the next setPair(); the buffers are not.
  const d = r.dev.readDesc(4);
  assert.deepEqual([d.flags, d.next, d.len], [VIRTQ_DESC_F_NEXT, 5, 0]);
  assert.equal(r.dev.readDesc(5).flags, VIRTQ_DESC_F_WRITE);
  r.vq.setPair(2, lo, hi, 60, lo + 60, hi, 4);
  assert.equal(r.vq.addPair(2, 20), 4);
  r.vq.publish();
  assert.equal(r.dev.popAvail(), 4);
  complete(r, 4, 4);
  assert.equal(r.vq.popUsed(), 4);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.add() rejects empty, over-long and zero-length chains as caller bugs", () => {
  const r = rig(4);
  const b = { addrLo: r.buf.addrLo, addrHi: r.buf.addrHi, length: 8 };
  assert.throws(() => r.vq.add([], []), TypeError);
  assert.throws(() => r.vq.add2(0, 0, 0, 0, 0, 0), TypeError);
  assert.throws(() => r.vq.add([b, b, b], [b, b]), RangeError, "5 buffers in a queue of 4");
  assert.throws(() => r.vq.add([{ ...b, length: 0 }], []), RangeError);
  assert.throws(() => r.vq.add([{ ...b, length: -1 }], []), RangeError);
  assert.throws(() => r.vq.add([{ ...b, addrHi: 2 ** 32 }], []), RangeError);
  assert.throws(() => r.vq.add2(b.addrLo, b.addrHi, 1.5, 0, 0, 0), RangeError);
  assert.throws(
    () => r.vq.add([{ ...b, length: 0xffff_ffff }], [{ ...b, length: 2 }]),
    RangeError,
    "more than 2^32 bytes",
  );
  // A queue of 1 cannot take a 2-buffer chain even with indirect descriptors.
  const memory = new SimulatedMemory();
  const one = new SplitVirtqueue(0, 1, memory, { indirect: true });
  assert.throws(() => one.add2(b.addrLo, 1, 4, b.addrLo, 1, 4), RangeError);
  assert.equal(one.numFree, 1);
  assert.equal(r.vq.numFree, 4, "nothing was consumed by the rejected chains");
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.add2() refuses each bad argument with its reason and accepts the edges", () => {
  const r = rig(4);
  const lo = r.buf.addrLo, hi = r.buf.addrHi;
  const refusals: Array<[() => unknown, RegExp]> = [
    [() => r.vq.add2(lo, hi, -1, lo, hi, 4), /not u32 lengths/],
    [() => r.vq.add2(lo, hi, 4, lo, hi, 2 ** 32), /not u32 lengths/],
    [() => r.vq.add2(2 ** 32, hi, 4, lo, hi, 4), /address halves are not u32/],
    [() => r.vq.add2(lo, hi, 4, lo, -1, 4), /address halves are not u32/],
    [() => r.vq.add2(lo, hi, 0xffff_ffff, lo, hi, 2), /more than 2\^32/],
  ];
  for (const [call, reason] of refusals) assert.throws(call, RangeError, String(reason));
  for (const [call, reason] of refusals) assert.throws(call, reason);
  // The address of an absent (0-byte) part is not looked at; exactly 2^32 bytes is allowed.
  assert.notEqual(r.vq.add2(lo, hi, 4, 2 ** 40, -7, 0), -1);
  assert.notEqual(r.vq.add2(lo, hi, 0xffff_ffff, lo, hi, 1), -1);
  assert.equal(r.vq.numFree, 1, "the two accepted chains took 1 + 2 descriptors");
  r.vq.destroy();
  assert.throws(() => r.vq.add2(lo, hi, 4, lo, hi, 4), TypeError, "a destroyed queue refuses");
});

Deno.test("SplitVirtqueue.add2() returns -1 when descriptors run out and recovers after popUsed()", () => {
  const r = rig(4);
  const a = add2(r, 0);
  const b = add2(r, 64);
  assert.notEqual(a, -1);
  assert.notEqual(b, -1);
  assert.equal(r.vq.numFree, 0);
  assert.equal(add2(r, 128), -1, "no room for a 2-descriptor chain");
  assert.equal(add2(r, 128, 8, 0), -1, "no room for a 1-descriptor chain");
  assert.equal(r.vq.add([{ addrLo: r.buf.addrLo, addrHi: r.buf.addrHi, length: 4 }], []), -1);
  assert.equal(r.vq.numFree, 0, "a refused add consumes nothing");
  assert.equal(r.vq.publish(), true);
  assert.equal(r.dev.availIdx(), 2, "refused requests were never published");
  assert.equal(r.dev.popAvail(), a);
  complete(r, a, 48);
  assert.equal(r.vq.hasUsed(), true);
  assert.equal(r.vq.popUsed(), a);
  assert.equal(r.vq.usedLen, 48);
  assert.equal(r.vq.numFree, 2);
  assert.equal(r.vq.hasUsed(), false);
  assert.equal(r.vq.popUsed(), -1);
  const c = add2(r, 128);
  assert.notEqual(c, -1);
  assert.equal(add2(r, 192, 8, 0), -1);
  r.vq.publish();
  assert.equal(r.dev.popAvail(), b);
  assert.equal(r.dev.popAvail(), c);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue with indirect descriptors spends one ring descriptor per request", () => {
  const r = rig(4, { indirect: true, maxIndirect: 4 });
  assert.equal(r.vq.maxIndirect, 4);
  const heads: number[] = [];
  for (let i = 0; i < 4; i++) {
    const h = add2(r, i * 64, 16, 48);
    assert.notEqual(h, -1, `request ${i} fits`);
    heads.push(h);
  }
  assert.equal(r.vq.numFree, 0);
  assert.equal(add2(r, 0), -1);
  r.vq.publish();
  for (const h of heads) {
    assert.equal(r.dev.popAvail(), h);
    const { indirect, descs } = r.dev.chain(h);
    assert.ok(indirect !== null);
    assert.equal(indirect.flags, VIRTQ_DESC_F_INDIRECT, "INDIRECT alone, never with NEXT");
    assert.equal(indirect.len, 32);
    assert.deepEqual(descs.map((d) => [d.flags, d.len, d.next]), [
      [VIRTQ_DESC_F_NEXT, 16, 1],
      [VIRTQ_DESC_F_WRITE, 48, 0],
    ]);
    assert.equal(descs[0].addrLo, r.buf.addrLo + heads.indexOf(h) * 64);
    assert.equal(descs[1].addrLo, r.buf.addrLo + heads.indexOf(h) * 64 + 16);
  }
  // Tables of different heads do not overlap.
  const tables = heads.map((h) => r.dev.readDesc(h).addrLo);
  assert.equal(new Set(tables).size, 4);
  for (const h of heads) r.dev.pushUsed(h, 48);
  for (const h of heads) assert.equal(r.vq.popUsed(), h);
  assert.equal(r.vq.numFree, 4);
  r.vq.destroy();
  assert.equal(r.memory.allocated, r.buf.size, "both regions freed");
});

Deno.test("SplitVirtqueue.add() uses an indirect table up to maxIndirect and direct beyond", () => {
  const r = rig(8, { indirect: true, maxIndirect: 3 });
  const b = (off: number, length: number) => ({
    addrLo: r.buf.addrLo + off,
    addrHi: r.buf.addrHi,
    length,
  });
  const three = r.vq.add([b(0, 4), b(4, 4)], [b(8, 8)]);
  assert.equal(r.vq.numFree, 7, "3 buffers → 1 ring descriptor");
  const four = r.vq.add([b(0, 4)], [b(4, 4), b(8, 4), b(12, 4)]);
  assert.equal(r.vq.numFree, 3, "4 buffers > maxIndirect → 4 direct descriptors");
  const single = r.vq.add([], [b(0, 4)]);
  assert.equal(r.vq.numFree, 2, "1 buffer stays direct");
  r.vq.publish();
  r.dev.popAvail();
  r.dev.popAvail();
  r.dev.popAvail();
  const t = r.dev.chain(three);
  assert.ok(t.indirect);
  const N = VIRTQ_DESC_F_NEXT;
  const W = VIRTQ_DESC_F_WRITE;
  assert.deepEqual(t.descs.map((d) => d.flags), [N, N, W]);
  const f = r.dev.chain(four);
  assert.equal(f.indirect, null);
  assert.deepEqual(f.descs.map((d) => d.flags), [N, N | W, N | W, W]);
  const s = r.dev.chain(single);
  assert.deepEqual(s.descs.map((d) => d.flags), [W]);
  r.dev.pushUsed(three, 9);
  assert.throws(() => r.vq.popUsed(), /used len 9 for id \d+ exceeds the 8 writable bytes/);
  r.vq.destroy();
});
