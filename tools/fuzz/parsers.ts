/**
 * Fuzzers for the driver code that reads device bytes: PROBE properties
 * ({@link parseProbeProperties}), fault records ({@link decodeFault}) and the used ring
 * ({@link SplitVirtqueue.popUsed}). Random and mutated inputs; only typed errors may come out,
 * nothing is read past the area the device was given, nothing outside the driver's own DMA
 * regions is written. Shared by tests/fuzz_parsers_test.ts and tools/fuzz/main.ts.
 *
 * @module
 */

import { decodeFault } from "../../driver/iommu/events.ts";
import { parseProbeProperties } from "../../driver/iommu/probe.ts";
import { SplitVirtqueue } from "../../driver/virtio/split_queue.ts";
import { VirtqueueError } from "../../driver/virtio/virtqueue.ts";
import { VIRTIO_IOMMU_FAULT_F_ADDRESS } from "../../spec/iommu.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { FaultRandom } from "../../mock/iommu/faults.ts";

/** Figures of one fuzzer run. */
export interface FuzzFigures {
  /** Inputs tried. */
  inputs: number;
  /** Inputs answered with a typed error (or a "malformed" result). */
  rejected: number;
}

function randomBytes(r: FaultRandom, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r.below(256);
  return b;
}

/** Flips bits, overwrites bytes and plants boundary values in a copy of `seed`. */
function mutate(r: FaultRandom, seed: Uint8Array): Uint8Array {
  const b = seed.slice();
  const edits = 1 + r.below(8);
  for (let i = 0; i < edits && b.length > 0; i++) {
    const at = r.below(b.length);
    switch (r.below(4)) {
      case 0:
        b[at] ^= 1 << r.below(8);
        break;
      case 1:
        b[at] = r.below(256);
        break;
      case 2:
        b[at] = [0, 0xff, 0x7f, 0x80, 0x14, 0x18][r.below(6)];
        break;
      default:
        // A 16-bit length/type word at an even offset, boundary values.
        if (at + 1 < b.length) {
          const v = [0, 1, 0xffff, 0xfff, 0x1000, 20, 0xfffc][r.below(7)];
          b[at & ~1] = v & 0xff;
          b[(at & ~1) + 1] = v >> 8;
        }
    }
  }
  return b;
}

/** A RESV_MEM property (24 bytes). */
function resvMem(subtype: number, start: bigint, end: bigint): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint16(0, 1, true);
  v.setUint16(2, 20, true);
  v.setUint8(4, subtype);
  v.setBigUint64(8, start, true);
  v.setBigUint64(16, end, true);
  return b;
}

function probeSeed(r: FaultRandom, size: number): Uint8Array {
  const b = new Uint8Array(size);
  let at = 0;
  while (at + 24 <= size && r.next() < 0.8) {
    const start = BigInt(r.below(0x10000)) << 12n;
    b.set(resvMem(r.below(3), start, start + 0xfffn), at);
    at += 24;
  }
  return b;
}

/**
 * Fuzzes parseProbeProperties: `count` inputs (half random, half mutated valid lists), each
 * with random bytes after the area that must not change the result.
 */
export function fuzzProbe(count: number, seed = 1): FuzzFigures {
  const r = new FaultRandom(seed);
  let rejected = 0;
  for (let i = 0; i < count; i++) {
    const size = [0, 3, 4, 24, 28, 64, 512, 1 + r.below(600)][r.below(8)];
    const area = r.next() < 0.5 ? randomBytes(r, size) : mutate(r, probeSeed(r, size));
    const offset = r.below(8);
    const slack = 4 + r.below(64);
    const buffer = new Uint8Array(offset + size + slack);
    buffer.set(area, offset);
    buffer.set(randomBytes(r, slack), offset + size);
    const view = new DataView(buffer.buffer);
    const result = parseProbeProperties(view, offset, size, 7, {
      identitySubtype: r.next() < 0.2 ? 3 : undefined,
    });
    // Bytes past the area must not matter.
    buffer.fill(r.below(256), offset + size);
    const again = parseProbeProperties(view, offset, size, 7, {
      identitySubtype: result.regions.some((x) => x.kind === "identity") ? 3 : undefined,
    });
    if (JSON.stringify(again, big) !== JSON.stringify(result, big)) {
      throw new Error(`parseProbeProperties read past probe_size ${size} (input ${i})`);
    }
    const max = Math.floor(size / 4);
    if (result.regions.length + result.unknown.length + result.ignored > max + 1) {
      throw new Error(`parseProbeProperties found more properties than fit in ${size} bytes`);
    }
    for (const x of result.regions) {
      if (x.start > x.end || x.end >= 1n << 64n) throw new Error("region out of order");
    }
    if (result.ignored > 0) rejected++;
  }
  return { inputs: count, rejected };
}

function big(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString(16) : value;
}

/** Fuzzes decodeFault with random and mutated records of random length. */
export function fuzzFaults(count: number, seed = 1): FuzzFigures {
  const r = new FaultRandom(seed);
  let rejected = 0;
  for (let i = 0; i < count; i++) {
    const valid = new Uint8Array(24);
    const vv = new DataView(valid.buffer);
    vv.setUint8(0, r.below(3));
    vv.setUint32(4, r.below(8) | (r.next() < 0.5 ? VIRTIO_IOMMU_FAULT_F_ADDRESS : 0), true);
    vv.setUint32(8, r.below(0x10000), true);
    vv.setUint32(16, r.below(0x10000) << 12, true);
    const record = r.next() < 0.5 ? randomBytes(r, 24) : mutate(r, valid);
    const offset = r.below(16);
    const buffer = new Uint8Array(offset + 32);
    buffer.set(record, offset);
    const length = [0, 23, 24, 24, 24, 32, r.below(33)][r.below(7)];
    const view = new DataView(buffer.buffer);
    const event = decodeFault(view, offset, length);
    const reserved = view.getUint32(offset, true) & 0xffff_ff00;
    if (event === null) {
      if (length >= 24 && reserved === 0) throw new Error(`valid record ${i} was dropped`);
      rejected++;
      continue;
    }
    if (length < 24 || reserved !== 0) throw new Error(`malformed record ${i} was accepted`);
    const flags = view.getUint32(offset + 4, true);
    if ((event.address === null) !== ((flags & VIRTIO_IOMMU_FAULT_F_ADDRESS) === 0)) {
      throw new Error(`record ${i}: address present without F_ADDRESS or missing with it`);
    }
    if (event.endpoint !== view.getUint32(offset + 8, true)) throw new Error("endpoint misread");
    if (!["UNKNOWN", "DOMAIN", "MAPPING"].includes(event.reason)) throw new Error("bad reason");
  }
  return { inputs: count, rejected };
}

/**
 * A device writing random used entries: for each input a fresh queue with chains in flight,
 * then random used.idx moves, ids and lengths. popUsed must return a head in flight with a
 * length within its writable part, or throw VirtqueueError; guard pages around the queue stay
 * untouched.
 */
export function fuzzUsedRing(count: number, seed = 1): FuzzFigures {
  const r = new FaultRandom(seed);
  let rejected = 0;
  const memory = new SimulatedMemory();
  for (let i = 0; i < count; i++) {
    const size = 2 << r.below(4); // ≥ 2: a chain of two buffers must fit without indirect
    const before = memory.alloc(4096, 4096);
    const vq = new SplitVirtqueue(0, size, memory, {
      eventIdx: r.next() < 0.5,
      indirect: r.next() < 0.5,
    });
    const after = memory.alloc(4096, 4096);
    before.bytes.fill(0xa5);
    after.bytes.fill(0x5a);
    const writable = new Map<number, number>();
    const chains = 1 + r.below(size);
    for (let c = 0; c < chains; c++) {
      const wLen = r.below(64);
      const head = vq.add2(before.addrLo, before.addrHi, 8, after.addrLo, after.addrHi, wLen);
      if (head < 0) break;
      writable.set(head, wLen);
    }
    vq.publish();
    const a = vq.addresses;
    const used = memory.resolve(a.deviceLo, a.deviceHi, 4 + 8 * size);
    const v = memory.view;
    let idx = 0;
    let broke = false;
    for (let round = 0; round < 4 && !broke; round++) {
      // The device writes a few elements and moves used.idx (sometimes wildly).
      const n = r.next() < 0.1 ? r.below(0x10000) : r.below(size + 2);
      for (let k = 0; k < Math.min(n, size); k++) {
        const e = used + 4 + 8 * ((idx + k) & (size - 1));
        const heads = [...writable.keys()];
        const id = r.next() < 0.7 && heads.length > 0
          ? heads[r.below(heads.length)]
          : r.below(r.next() < 0.5 ? size : 0x1_0000_0000);
        const len = r.next() < 0.7 ? r.below((writable.get(id) ?? 0) + 1) : r.below(0x1_0000_0000);
        v.setUint32(e, id, true);
        v.setUint32(e + 4, len, true);
      }
      idx = (idx + n) & 0xffff;
      v.setUint16(used + 2, idx, true);
      try {
        for (;;) {
          const head = vq.popUsed();
          if (head < 0) break;
          const w = writable.get(head);
          if (w === undefined) throw new Error(`popUsed returned ${head}, not in flight`);
          if (vq.usedLen > w) throw new Error(`used len ${vq.usedLen} > writable ${w}`);
          writable.delete(head);
        }
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
