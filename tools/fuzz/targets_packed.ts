/**
 * The fuzz target for the packed ring's reader of device bytes ({@link PackedVirtqueue.popUsed},
 * virtio 1.3 §2.8): a device that writes used descriptors (id, len, flags with the AVAIL/USED
 * wrap bits) anywhere in the ring, between rounds of the driver adding and publishing buffers.
 * Only a VirtqueueError may come out; an id returned must be published and in flight with a
 * length within its writable part; a broken queue stays broken; the driver's accounting stays in
 * range; guard pages around the queue stay untouched. (It replaces the hand-seeded
 * tools/fuzz/packed_ring.ts loop of the packed ring's branch: the same checks, inputs from the
 * fuzzing engine.)
 *
 * @module
 */

import { PackedVirtqueue } from "../../driver/virtio/packed_queue.ts";
import {
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from "../../spec/packed_ring.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { FuzzCrash, type FuzzTarget, type Outcome } from "./engine.ts";
import { guarded, popChecked, release } from "./ring_checks.ts";

/** AVAIL and USED both set: a used descriptor in the device's first lap (wrap counter 1). */
const USED_LAP_1 = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;

/**
 * Input bytes: [0] queue size (2 + b % 39: any size, §2.8), [1] bit 0 EVENT_IDX, bit 1
 * INDIRECT, then rounds: a count of buffers to add, one byte each (writable length b & 63;
 * bit 6 drops the readable part), a byte whose bit 0 publishes them, a count of descriptors the
 * device writes, and for each a slot byte, le16 id, le32 len and le16 flags; then the driver
 * pops everything it is offered.
 */
export function packedUsedRingTarget(): FuzzTarget {
  const memory = new SimulatedMemory();
  return {
    name: "used ring (packed)",
    seeds(): Uint8Array[] {
      // An honest device: each chain of two descriptors used in order, in the device's first
      // lap, at the slot the driver reads next (slots 0, 2, 4, …).
      const seeds: Uint8Array[] = [];
      for (const [size, chains] of [[8, 3], [16, 6], [12, 2]]) {
        // The ids the driver hands out, from a queue set up the same way.
        const vq = new PackedVirtqueue(0, size, memory);
        const buf = memory.alloc(64, 8);
        const ids: number[] = [];
        for (let c = 0; c < chains; c++) {
          ids.push(vq.add2(buf.addrLo, buf.addrHi, 8, buf.addrLo, buf.addrHi, 8 + c));
        }
        vq.destroy();
        memory.free(buf);
        const bytes = [size - 2, 0, chains, ...ids.map((_, c) => 8 + c), 1, chains];
        ids.forEach((id, c) => {
          bytes.push(2 * c, id & 0xff, id >> 8, 8 + c, 0, 0, 0, USED_LAP_1 & 0xff, USED_LAP_1 >> 8);
        });
        seeds.push(Uint8Array.from(bytes));
      }
      return seeds;
    },
    run(input: Uint8Array): Outcome {
      let at = 0;
      const byte = (): number => (at < input.length ? input[at++] : 0);
      const size = 2 + (byte() % 39);
      const flags = byte();
      const g = guarded(memory, () =>
        new PackedVirtqueue(0, size, memory, {
          eventIdx: (flags & 1) !== 0,
          indirect: (flags & 2) !== 0,
        }));
      const { vq, before, after } = g;
      const ring = memory.resolve(
        vq.addresses.descLo,
        vq.addresses.descHi,
        size * PACKED_DESC_SIZE,
      );
      const v = memory.view;
      /** id → writable bytes, for buffers published to the device; and those only added. */
      const published = new Map<number, number>();
      const added = new Map<number, number>();
      let outcome: Outcome = "ok";
      for (let round = 0; round < 6 && at < input.length && outcome === "ok"; round++) {
        const n = byte() % (size + 1);
        for (let c = 0; c < n; c++) {
          const b = byte();
          const wLen = b & 63;
          const rLen = wLen > 0 && (b & 0x40) !== 0 ? 0 : 8;
          const id = vq.add2(before.addrLo, before.addrHi, rLen, after.addrLo, after.addrHi, wLen);
          if (id < 0) break;
          added.set(id, wLen);
        }
        if ((byte() & 1) !== 0) {
          vq.publish();
          for (const [id, w] of added) published.set(id, w);
          added.clear();
        }
        const writes = byte() % 8;
        for (let k = 0; k < writes; k++) {
          const off = ring + (byte() % size) * PACKED_DESC_SIZE;
          const id = byte() | (byte() << 8);
          let len = 0;
          for (let s = 0; s < 32; s += 8) len |= byte() << s;
          const f = byte() | (byte() << 8);
          v.setUint16(off + PACKED_DESC_ID, id, true);
          v.setUint32(off + PACKED_DESC_LEN, len >>> 0, true);
          v.setUint16(off + PACKED_DESC_FLAGS, f, true);
        }
        // Published buffers may come back; the accounting must cover those only added too.
        outcome = popChecked(vq, published, () => {
          if (vq.inFlight !== published.size + added.size) {
            throw new FuzzCrash(`inFlight ${vq.inFlight} but ${published.size + added.size} out`);
          }
          if (vq.numFree < 0 || vq.numFree > vq.size) throw new FuzzCrash(`numFree ${vq.numFree}`);
        });
      }
      release(memory, g);
      return outcome;
    },
  };
}
