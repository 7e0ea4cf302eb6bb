/**
 * A fuzzer for the packed ring's reader of device bytes ({@link PackedVirtqueue.popUsed}): for
 * each input a fresh queue of random size and options with buffers in flight (some published,
 * some not), then a device that writes used descriptors with random ids, lengths and
 * AVAIL/USED bits, in the slot the driver reads next or anywhere in the ring, between rounds of
 * the driver adding more. Only a {@link VirtqueueError} may come out; an id returned must be
 * published and in flight with a length within its writable part; a broken queue stays broken;
 * the driver's accounting never goes out of range; guard pages around the queue stay untouched.
 * Shared by tests/fuzz_packed_ring_test.ts and tools/fuzz/main.ts.
 *
 * @module
 */

import { PackedVirtqueue } from "../../driver/virtio/packed_queue.ts";
import { VirtqueueError } from "../../driver/virtio/virtqueue.ts";
import {
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../../spec/packed_ring.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { FaultRandom } from "../../mock/iommu/faults.ts";
import type { FuzzFigures } from "./parsers.ts";

/** Fuzzes PackedVirtqueue against `count` devices writing random used descriptors. */
export function fuzzPackedRing(count: number, seed = 1): FuzzFigures {
  const r = new FaultRandom(seed);
  let rejected = 0;
  const memory = new SimulatedMemory();
  for (let i = 0; i < count; i++) {
    const size = 2 + r.below(39); // any size, not only powers of two (§2.8)
    const before = memory.alloc(4096, 4096);
    const vq = new PackedVirtqueue(0, size, memory, {
      eventIdx: r.next() < 0.5,
      indirect: r.next() < 0.5,
    });
    const after = memory.alloc(4096, 4096);
    before.bytes.fill(0xa5);
    after.bytes.fill(0x5a);
    const ring = memory.resolve(vq.addresses.descLo, vq.addresses.descHi, size * 16);
    /** id → writable bytes, for buffers published to the device; and those only added. */
    const published = new Map<number, number>();
    const added = new Map<number, number>();
    const addSome = (): void => {
      const n = r.below(size);
      for (let c = 0; c < n; c++) {
        const wLen = r.below(64);
        const rLen = wLen > 0 && r.next() < 0.2 ? 0 : 8;
        const id = vq.add2(before.addrLo, before.addrHi, rLen, after.addrLo, after.addrHi, wLen);
        if (id < 0) break;
        added.set(id, wLen);
      }
      if (r.next() < 0.8) {
        vq.publish();
        for (const [id, w] of added) published.set(id, w);
        added.clear();
      }
    };
    const v = memory.view;
    let broke = false;
    addSome();
    for (let round = 0; round < 6 && !broke; round++) {
      // The device writes a few descriptors: mostly at the slot the driver reads next.
      const writes = r.below(4);
      for (let k = 0; k < writes; k++) {
        const pos = r.below(size);
        const off = ring + pos * PACKED_DESC_SIZE;
        const ids = [...published.keys(), ...added.keys()];
        const id = r.next() < 0.7 && ids.length > 0 ? ids[r.below(ids.length)] : r.below(0x10000);
        const w = published.get(id) ?? added.get(id) ?? 0;
        const len = r.next() < 0.8 ? r.below(w + 1) : r.below(0x1_0000_0000);
        const bits = [
          0,
          VIRTQ_DESC_F_AVAIL,
          VIRTQ_DESC_F_USED,
          VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED,
        ];
        const flags = bits[r.below(4)] | (r.next() < 0.5 ? VIRTQ_DESC_F_WRITE : 0) |
          (r.next() < 0.05 ? r.below(0x10000) : 0);
        v.setUint16(off + PACKED_DESC_ID, id, true);
        v.setUint32(off + PACKED_DESC_LEN, len, true);
        v.setUint16(off + PACKED_DESC_FLAGS, flags, true);
      }
      try {
        for (;;) {
          const id = vq.popUsed();
          if (id < 0) break;
          const w = published.get(id);
          if (w === undefined) throw new Error(`popUsed returned ${id}, not published in flight`);
          if (vq.usedLen > w) throw new Error(`used len ${vq.usedLen} > writable ${w}`);
          published.delete(id);
        }
        if (vq.inFlight !== published.size + added.size) {
          throw new Error(`inFlight ${vq.inFlight} but ${published.size + added.size} out`);
        }
        if (vq.numFree < 0 || vq.numFree > size) throw new Error(`numFree ${vq.numFree}`);
        addSome();
      } catch (e) {
        if (!(e instanceof VirtqueueError)) throw e;
        broke = true;
        rejected++;
        // A broken queue stays broken, typed.
        try {
          vq.popUsed();
          throw new Error("popUsed on a broken queue did not throw");
        } catch (again) {
          if (!(again instanceof VirtqueueError)) throw again;
        }
      }
    }
    if (before.bytes.some((x) => x !== 0xa5) || after.bytes.some((x) => x !== 0x5a)) {
      throw new Error(`input ${i}: the driver wrote outside its queue`);
    }
    vq.destroy();
    memory.free(before);
    memory.free(after);
  }
  return { inputs: count, rejected };
}
