/**
 * What every ring layout promises through the {@link Virtqueue} interface, run over both
 * (createVirtqueue with "split" and "packed"): the same refusals of bad chains with the same
 * reasons, pinned pairs whose id is 2p, the same accounting, and destroy().
 */

import assert from "node:assert/strict";
import { createVirtqueue } from "../driver/virtio/create_queue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { RING_LAYOUTS } from "./_ring_layouts.ts";

for (const layout of RING_LAYOUTS) {
  const t = (name: string, fn: () => void): void => {
    Deno.test(`[${layout}] ${name}`, fn);
  };

  t("Virtqueue.add() and add2() refuse bad chains as caller bugs, consuming nothing", () => {
    const memory = new SimulatedMemory();
    const buf = memory.alloc(4096);
    const vq = createVirtqueue(layout, 0, 4, memory);
    assert.equal(vq.layout, layout);
    const b = { addrLo: buf.addrLo, addrHi: buf.addrHi, length: 8 };
    const lo = buf.addrLo, hi = buf.addrHi;
    assert.throws(() => vq.add([], []), TypeError);
    assert.throws(() => vq.add2(0, 0, 0, 0, 0, 0), TypeError);
    assert.throws(() => vq.add([b, b, b], [b, b]), RangeError, "5 buffers in a queue of 4");
    assert.throws(() => vq.add([{ ...b, length: 0 }], []), RangeError);
    assert.throws(() => vq.add([{ ...b, addrHi: 2 ** 32 }], []), RangeError);
    const refusals: Array<[() => unknown, RegExp]> = [
      [() => vq.add2(lo, hi, -1, lo, hi, 4), /not u32 lengths/],
      [() => vq.add2(lo, hi, 4, lo, hi, 2 ** 32), /not u32 lengths/],
      [() => vq.add2(2 ** 32, hi, 4, lo, hi, 4), /address halves are not u32/],
      [() => vq.add2(lo, hi, 0xffff_ffff, lo, hi, 2), /more than 2\^32/],
    ];
    for (const [call, reason] of refusals) assert.throws(call, reason);
    assert.equal(vq.numFree, 4);
    assert.equal(vq.inFlight, 0);
    assert.equal(vq.publish(), false, "nothing to publish");
    // Accepted edges: an absent part's address is not looked at; exactly 2^32 bytes is fine.
    assert.notEqual(vq.add2(lo, hi, 4, 2 ** 40, -7, 0), -1);
    assert.notEqual(vq.add2(lo, hi, 0xffff_ffff, lo, hi, 1), -1);
    assert.equal(vq.numFree, 1);
    assert.equal(vq.inFlight, 2);
    assert.equal(vq.add2(lo, hi, 4, lo, hi, 4), -1, "no room for two descriptors");
    vq.destroy();
    assert.throws(() => vq.add2(lo, hi, 4, lo, hi, 4), TypeError, "a destroyed queue refuses");
    vq.destroy();
  });

  t("Virtqueue pinned pairs: id 2p, refused while in flight or unset, reset() forgets them", () => {
    const memory = new SimulatedMemory();
    const buf = memory.alloc(4096);
    const lo = buf.addrLo, hi = buf.addrHi;
    for (const pairs of [-1, 5, 1.5]) {
      assert.throws(() => createVirtqueue(layout, 0, 8, memory, { pairs }), /pairs/);
    }
    const vq = createVirtqueue(layout, 0, 8, memory, { pairs: 4 });
    assert.throws(() => vq.addPair(0, 8), /no buffers set/);
    assert.throws(() => vq.setPair(4, lo, hi, 8, lo + 8, hi, 4), /not one of the 4/);
    assert.throws(() => vq.setPair(0, lo, hi, 0, lo + 8, hi, 4), /two buffers/);
    vq.setPair(3, lo, hi, 60, lo + 60, hi, 4);
    for (const rLen of [0, 61, 1.5, NaN]) {
      assert.throws(() => vq.addPair(3, rLen), /readable bytes/);
    }
    assert.equal(vq.addPair(3, 60), 6);
    assert.throws(() => vq.addPair(3, 60), /in flight/);
    assert.throws(() => vq.setPair(3, lo, hi, 8, lo + 8, hi, 4), /in flight/);
    assert.deepEqual(vq.reset(), [6]);
    assert.throws(() => vq.addPair(3, 8), /no buffers set/);
    vq.destroy();
  });
}
