/**
 * Fuzz targets for the driver code that reads bytes a device wrote into shared memory: PROBE
 * properties ({@link parseProbeProperties}, virtio 1.3 §5.13.6.7), fault records
 * ({@link decodeFault}, §5.13.5) and the split used ring ({@link SplitVirtqueue.popUsed},
 * §2.7.8). Only typed errors (or a "malformed" result) may come out; nothing past the area the
 * device was given is read, nothing outside the driver's own rings is written.
 *
 * @module
 */

import { decodeFault } from "../../driver/iommu/events.ts";
import { parseProbeProperties, type ProbeResult } from "../../driver/iommu/probe.ts";
import { SplitVirtqueue } from "../../driver/virtio/split_queue.ts";
import { FAULT_SIZE, VIRTIO_IOMMU_FAULT_F_ADDRESS } from "../../spec/iommu.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { FuzzCrash, type FuzzTarget, type Outcome } from "./engine.ts";
import { guarded, popChecked, release } from "./ring_checks.ts";

/** A RESV_MEM property (§5.13.6.7.1, 24 bytes) at `at` of `view`. */
function resvMem(view: DataView, at: number, subtype: number, start: number, end: number): void {
  view.setUint16(at, 1, true); // VIRTIO_IOMMU_PROBE_T_RESV_MEM
  view.setUint16(at + 2, 20, true);
  view.setUint8(at + 4, subtype);
  view.setUint32(at + 8, start, true);
  view.setUint32(at + 16, end, true);
}

function big(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString(16) : value;
}

/**
 * PROBE properties: the input is the probe area (its length is probe_size). It is parsed twice
 * with different bytes after it, which must not change the result; regions come out ordered and
 * no more properties than fit.
 */
export const probeTarget: FuzzTarget = {
  name: "PROBE properties",
  seeds(): Uint8Array[] {
    const seeds: Uint8Array[] = [];
    for (const [count, size] of [[1, 512], [2, 48], [3, 512], [0, 64], [1, 24]]) {
      const b = new Uint8Array(size);
      const v = new DataView(b.buffer);
      for (let i = 0; i < count; i++) {
        resvMem(v, i * 24, i % 3, 0xfee0_0000 + i * 0x10_0000, 0xfeef_ffff + i * 0x10_0000);
      }
      seeds.push(b);
    }
    // An unknown property (type 0x55, 8 bytes) between two RESV_MEMs.
    const mixed = new Uint8Array(64);
    const v = new DataView(mixed.buffer);
    resvMem(v, 0, 1, 0x1000, 0x1fff);
    v.setUint16(24, 0x55, true);
    v.setUint16(26, 8, true);
    resvMem(v, 36, 0, 0x8000, 0x8fff);
    seeds.push(mixed);
    return seeds;
  },
  dictionary: (): Uint8Array[] => [Uint8Array.of(1, 0, 20, 0), Uint8Array.of(1, 0, 0xff, 0xff)],
  run(input: Uint8Array): Outcome {
    const size = input.length;
    const offset = size & 7;
    const buffer = new Uint8Array(offset + size + 64);
    buffer.set(input, offset);
    buffer.fill(0xa5, offset + size);
    const view = new DataView(buffer.buffer);
    const identitySubtype = size % 5 === 0 ? 3 : undefined;
    const result = parseProbeProperties(view, offset, size, 7, { identitySubtype });
    buffer.fill(0x5a, offset + size);
    const again: ProbeResult = parseProbeProperties(view, offset, size, 7, { identitySubtype });
    if (JSON.stringify(again, big) !== JSON.stringify(result, big)) {
      throw new FuzzCrash(`parseProbeProperties read past probe_size ${size}`);
    }
    if (result.regions.length + result.unknown.length + result.ignored > (size >> 2) + 1) {
      throw new FuzzCrash(`parseProbeProperties found more properties than fit in ${size} bytes`);
    }
    for (const r of result.regions) {
      if (r.start > r.end || r.end >= 1n << 64n) throw new FuzzCrash("region out of order");
    }
    return result.ignored > 0 ? "rejected" : "ok";
  },
};

/**
 * Fault records: the input is the event buffer as written (its length is the used length).
 * A record is dropped exactly when it is short or has reserved bits set; a kept one decodes
 * the bytes as written.
 */
export const faultTarget: FuzzTarget = {
  name: "fault records",
  maxLength: 40,
  seeds(): Uint8Array[] {
    const seeds: Uint8Array[] = [];
    for (let reason = 0; reason < 3; reason++) {
      for (const flags of [1, 2, 3 | VIRTIO_IOMMU_FAULT_F_ADDRESS, 4]) {
        const b = new Uint8Array(FAULT_SIZE);
        const v = new DataView(b.buffer);
        v.setUint8(0, reason);
        v.setUint32(4, flags, true);
        v.setUint32(8, 0x18 * reason, true);
        v.setUint32(16, 0x12345000, true);
        v.setUint32(20, reason, true);
        seeds.push(b);
      }
    }
    return seeds;
  },
  run(input: Uint8Array): Outcome {
    const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
    const event = decodeFault(view, 0, input.length);
    const reserved = input.length >= 4 && (view.getUint32(0, true) & 0xffff_ff00) !== 0;
    if (event === null) {
      if (input.length >= FAULT_SIZE && !reserved) {
        throw new FuzzCrash("a valid record was dropped");
      }
      return "rejected";
    }
    if (input.length < FAULT_SIZE || reserved) throw new FuzzCrash("a malformed record was kept");
    const flags = view.getUint32(4, true);
    if ((event.address === null) !== ((flags & VIRTIO_IOMMU_FAULT_F_ADDRESS) === 0)) {
      throw new FuzzCrash("address present without F_ADDRESS, or missing with it");
    }
    if (event.endpoint !== view.getUint32(8, true)) throw new FuzzCrash("endpoint misread");
    if (!["UNKNOWN", "DOMAIN", "MAPPING"].includes(event.reason)) {
      throw new FuzzCrash(`reason ${event.reason} is none of the spec's`);
    }
    return "ok";
  },
};

/**
 * The split used ring. Input bytes: [0] queue size (2 << (b & 3)), [1] bit 0 EVENT_IDX, bit 1
 * INDIRECT, [2] chains to put in flight, then one writable length byte per chain, then rounds of
 * the device: le16 new used.idx, a count byte, and that many used elements (le32 id, le32 len)
 * written from the previous used.idx on. After each round the driver pops everything: each head
 * it returns must be in flight with a length within its writable part, or it throws
 * VirtqueueError and stays broken.
 */
export function splitUsedRingTarget(): FuzzTarget {
  const memory = new SimulatedMemory();
  return {
    name: "used ring (split)",
    seeds(): Uint8Array[] {
      // An honest device for a few shapes: answers every chain, in order and out of order.
      const seeds: Uint8Array[] = [];
      for (
        const [sizeCode, flags, chains, reverse] of [[1, 0, 3, false], [2, 3, 8, true], [
          0,
          1,
          2,
          false,
        ], [3, 2, 16, true]] as const
      ) {
        const size = 2 << sizeCode;
        const vq = new SplitVirtqueue(0, size, memory, {
          eventIdx: (flags & 1) !== 0,
          indirect: (flags & 2) !== 0,
        });
        const buf = memory.alloc(64, 8);
        const heads: number[] = [];
        for (let c = 0; c < chains; c++) {
          const h = vq.add2(buf.addrLo, buf.addrHi, 8, buf.addrLo, buf.addrHi, 8 + c);
          if (h >= 0) heads.push(h);
        }
        vq.destroy();
        memory.free(buf);
        if (reverse) heads.reverse();
        const bytes = [sizeCode, flags, heads.length, ...heads.map((_, c) => 8 + c)];
        // Two rounds: half the answers, then the rest.
        const half = heads.length >> 1;
        for (const [from, to] of [[0, half], [half, heads.length]]) {
          bytes.push(to & 0xff, to >> 8, to - from);
          for (let k = from; k < to; k++) {
            const id = heads[k];
            const len = 8 + (reverse ? heads.length - 1 - k : k);
            bytes.push(id & 0xff, id >> 8, 0, 0, len & 0xff, 0, 0, 0);
          }
        }
        seeds.push(Uint8Array.from(bytes));
      }
      return seeds;
    },
    run(input: Uint8Array): Outcome {
      let at = 0;
      const byte = (): number => (at < input.length ? input[at++] : 0);
      const size = 2 << (byte() & 3);
      const flags = byte();
      const g = guarded(memory, () =>
        new SplitVirtqueue(0, size, memory, {
          eventIdx: (flags & 1) !== 0,
          indirect: (flags & 2) !== 0,
        }));
      const { vq, before, after } = g;
      const writable = new Map<number, number>();
      const chains = byte();
      for (let c = 0; c < chains; c++) {
        const wLen = byte();
        const head = vq.add2(before.addrLo, before.addrHi, 8, after.addrLo, after.addrHi, wLen);
        if (head < 0) break;
        writable.set(head, wLen);
      }
      vq.publish();
      const a = vq.addresses;
      const used = memory.resolve(a.deviceLo, a.deviceHi, 4 + 8 * size);
      const v = memory.view;
      let outcome: Outcome = "ok";
      let idx = 0;
      while (at < input.length && outcome === "ok") {
        const next = byte() | (byte() << 8);
        const n = byte();
        for (let k = 0; k < n; k++) {
          const e = used + 4 + 8 * ((idx + k) & (size - 1));
          let id = 0, len = 0;
          for (let s = 0; s < 32; s += 8) id |= byte() << s;
          for (let s = 0; s < 32; s += 8) len |= byte() << s;
          v.setUint32(e, id >>> 0, true);
          v.setUint32(e + 4, len >>> 0, true);
        }
        idx = next;
        v.setUint16(used + 2, idx, true);
        outcome = popChecked(vq, writable);
      }
      release(memory, g);
      return outcome;
    },
  };
}
