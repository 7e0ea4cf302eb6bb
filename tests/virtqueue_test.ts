import assert from "node:assert/strict";
import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import { VirtqueueError, type VirtqueueOptions } from "../driver/virtio/virtqueue.ts";
import type { DmaAllocator, DmaRegion } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import {
  availRingSize,
  descTableSize,
  needEvent,
  usedRingSize,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../spec/split_ring.ts";
import { HandDevice } from "./_ring_helpers.ts";
import { allocatingControl, heapGrowth } from "./_heap.ts";

interface Rig {
  memory: SimulatedMemory;
  vq: SplitVirtqueue;
  dev: HandDevice;
  buf: DmaRegion;
}

function rig(size: number, options: VirtqueueOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const vq = new SplitVirtqueue(0, size, memory, options);
  const dev = new HandDevice(memory, vq.addresses, size);
  const buf = memory.alloc(64 * 1024);
  return { memory, vq, dev, buf };
}

/** Adds a 16-byte-in / 48-byte-out request at `off` of `buf` through add2(). */
function add2(r: Rig, off = 0, rLen = 16, wLen = 48): number {
  return r.vq.add2(
    r.buf.addrLo + off,
    r.buf.addrHi,
    rLen,
    r.buf.addrLo + off + rLen,
    r.buf.addrHi,
    wLen,
  );
}

/** The device puts `head` in the used ring with `len` bytes written. */
function complete(r: Rig, head: number, len: number): void {
  r.dev.pushUsed(head, len);
}

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

Deno.test("SplitVirtqueue.publish() follows used.flags NO_NOTIFY both ways without EVENT_IDX", () => {
  const r = rig(8);
  assert.equal(r.vq.publish(), false, "nothing added, nothing to notify");
  add2(r);
  assert.equal(r.vq.publish(), true, "used.flags 0: notify");
  r.dev.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);
  add2(r, 64);
  assert.equal(r.vq.publish(), false, "NO_NOTIFY: do not notify");
  assert.equal(r.dev.availIdx(), 2, "published all the same");
  r.dev.setUsedFlags(0);
  add2(r, 128);
  assert.equal(r.vq.publish(), true);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.publish() follows avail_event both ways with EVENT_IDX", () => {
  const r = rig(16, { eventIdx: true });
  assert.equal(r.dev.availFlags(), 0, "avail.flags MUST be 0 with EVENT_IDX (§2.7.7.1)");
  // Device wants to hear when avail.idx passes 0: publishing 0 → 2 crosses it.
  r.dev.setAvailEvent(0);
  add2(r);
  add2(r, 64);
  assert.equal(r.vq.publish(), true);
  // avail_event 5 is not crossed by 2 → 3.
  r.dev.setAvailEvent(5);
  add2(r, 128);
  assert.equal(r.vq.publish(), false);
  // 3 → 6 crosses 5 (old=3, new=6).
  add2(r, 192);
  add2(r, 256, 8, 0);
  add2(r, 320, 8, 0);
  assert.equal(r.dev.availIdx(), 3);
  assert.equal(r.vq.publish(), true);
  assert.equal(r.dev.availIdx(), 6);
  // avail_event already behind: 6 → 7 does not cross 5.
  r.vq.setInterrupts(false);
  r.dev.pushUsed(r.dev.popAvail(), 0);
  assert.equal(r.vq.popUsed() >= 0, true);
  add2(r, 384, 8, 0);
  assert.equal(r.vq.publish(), false);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.publish() uses avail_event across the 65536 wrap", () => {
  const r = rig(2, { eventIdx: true });
  // Drive avail.idx to 65535, keeping the device from wanting notifications.
  for (let i = 0; i < 65535; i++) {
    r.dev.setAvailEvent((r.dev.availIdx() + 0x8000) & 0xffff);
    add2(r, 0, 8, 0);
    assert.equal(r.vq.publish(), false);
    r.dev.pushUsed(r.dev.popAvail(), 0);
    r.vq.popUsed();
  }
  assert.equal(r.dev.availIdx(), 65535);
  r.dev.setAvailEvent(65535);
  add2(r, 0, 8, 0);
  assert.equal(r.vq.publish(), true, "65535 → 0 crosses 65535");
  assert.equal(r.dev.availIdx(), 0);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.setInterrupts() toggles avail.flags NO_INTERRUPT without EVENT_IDX", () => {
  const r = rig(8);
  assert.equal(r.dev.availFlags(), VIRTQ_AVAIL_F_NO_INTERRUPT);
  assert.equal(r.vq.setInterrupts(true), true);
  assert.equal(r.dev.availFlags(), 0);
  assert.equal(r.vq.setInterrupts(false), true);
  assert.equal(r.dev.availFlags(), VIRTQ_AVAIL_F_NO_INTERRUPT);
  // Enabling while a used element is already there tells the caller to poll first.
  const a = add2(r);
  r.vq.publish();
  r.dev.pushUsed(r.dev.popAvail(), 0);
  assert.equal(r.vq.setInterrupts(true), false);
  assert.equal(r.vq.popUsed(), a);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue.setInterrupts() steers used_event with EVENT_IDX", () => {
  const r = rig(4, { eventIdx: true });
  /** Whether the device would interrupt after moving used.idx from `old` to `next`. */
  function deviceWouldInterrupt(old: number, next: number): boolean {
    return needEvent(r.dev.usedEvent(), next, old);
  }
  // Disabled by default: no interrupt however far the device gets within a queue's worth.
  assert.equal(r.dev.availFlags(), 0);
  assert.equal(r.dev.usedEvent(), 0xffff);
  assert.equal(deviceWouldInterrupt(0, 4), false);
  r.vq.setInterrupts(true);
  assert.equal(r.dev.availFlags(), 0, "flags stay 0 with EVENT_IDX");
  assert.equal(r.dev.usedEvent(), 0);
  assert.equal(deviceWouldInterrupt(0, 1), true);
  const a = add2(r);
  r.vq.publish();
  r.dev.pushUsed(r.dev.popAvail(), 0);
  assert.equal(r.vq.popUsed(), a);
  assert.equal(r.dev.usedEvent(), 1, "refreshed after popUsed(): next element interrupts");
  assert.equal(deviceWouldInterrupt(1, 2), true);
  r.vq.setInterrupts(false);
  assert.equal(r.dev.usedEvent(), 0, "one behind the last seen used idx");
  assert.equal(deviceWouldInterrupt(1, 5), false);
  const b = add2(r);
  r.vq.publish();
  r.dev.pushUsed(r.dev.popAvail(), 0);
  assert.equal(r.vq.popUsed(), b);
  assert.equal(r.dev.usedEvent(), 0, "left alone while disabled: still out of reach");
  assert.equal(deviceWouldInterrupt(2, 6), false);
  r.vq.destroy();
});

Deno.test("SplitVirtqueue with interrupts off keeps used_event out of the device's reach forever", () => {
  const r = rig(4, { eventIdx: true });
  // 70 000 requests: the 16-bit indices wrap; used_event must never be crossed.
  for (let i = 0; i < 70_000; i++) {
    const head = add2(r);
    r.vq.publish();
    const old = i & 0xffff;
    r.dev.pushUsed(r.dev.popAvail(), 0);
    // The device would interrupt if used_event lies in [old, new): it must not.
    assert.equal(needEvent(r.dev.usedEvent(), (old + 1) & 0xffff, old), false, `request ${i}`);
    // Nor anywhere in the queue's worth of entries it could add before the next pop.
    if (i % 997 === 0) {
      assert.equal(needEvent(r.dev.usedEvent(), (old + 1 + 4) & 0xffff, old), false);
    }
    assert.equal(r.vq.popUsed(), head);
  }
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
