/**
 * The mock's device side of the packed ring ({@link PackedDeviceQueue}, virtio 1.3 §2.8)
 * against a ring written by hand: what it takes, what it writes back, and every driver rule it
 * enforces (one test per violation: the mock is strict), plus the queue reset registers of the
 * core (VIRTIO_F_RING_RESET, §2.6.1).
 */

import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import type { DmaRegion } from "../transport/dma.ts";
import { VirtioCore } from "../mock/virtio_core.ts";
import type { PackedDeviceQueue } from "../mock/packed_queue.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import {
  eventOffWrap,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from "../spec/packed_ring.ts";

const A = VIRTQ_DESC_F_AVAIL;
const U = VIRTQ_DESC_F_USED;
const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;
const PACKED = 1n << 34n;
const RING_RESET = 1n << 40n;

/** A packed ring written by hand: descriptor ring, driver area, device area. */
class HandPackedRing {
  readonly ring: DmaRegion;
  readonly driver: DmaRegion;
  readonly device: DmaRegion;
  constructor(memory: SimulatedMemory, readonly size: number) {
    this.ring = memory.alloc(16 * size, 16);
    this.driver = memory.alloc(4, 4);
    this.device = memory.alloc(4, 4);
  }
  /** Writes descriptor `slot` (flags last, as a driver must). */
  put(slot: number, buf: DmaRegion, len: number, id: number, flags: number, offset = 0): void {
    const v = this.ring.view, d = 16 * slot;
    v.setUint32(d, buf.addrLo + offset, true);
    v.setUint32(d + 4, buf.addrHi, true);
    v.setUint32(d + PACKED_DESC_LEN, len, true);
    v.setUint16(d + PACKED_DESC_ID, id, true);
    v.setUint16(d + PACKED_DESC_FLAGS, flags, true);
  }
  used(slot: number): { id: number; len: number; flags: number } {
    const v = this.ring.view, d = 16 * slot;
    return {
      id: v.getUint16(d + PACKED_DESC_ID, true),
      len: v.getUint32(d + PACKED_DESC_LEN, true),
      flags: v.getUint16(d + PACKED_DESC_FLAGS, true),
    };
  }
  setDriverEvent(flags: number, offWrap = 0): void {
    this.driver.view.setUint16(0, offWrap, true);
    this.driver.view.setUint16(2, flags, true);
  }
  deviceEvent(): { offWrap: number; flags: number } {
    return {
      offWrap: this.device.view.getUint16(0, true),
      flags: this.device.view.getUint16(2, true),
    };
  }
}

interface Setup {
  memory: SimulatedMemory;
  core: VirtioCore;
  ring: HandPackedRing;
  q: PackedDeviceQueue;
  buf: DmaRegion;
}

/** A core at DRIVER_OK with queue 0 (size `size`, packed) enabled on a hand-written ring. */
function setup(features: bigint = ECHO_FEATURES | PACKED, size = 6): Setup {
  const memory = new SimulatedMemory();
  const model = new EchoDevice({ manual: true, features, queueSizes: [8, 4, 0] });
  const core = new VirtioCore(model, memory);
  core.writeStatus(1);
  core.writeStatus(3);
  core.writeDriverFeatures(0, Number(features & 0xffff_ffffn));
  core.writeDriverFeatures(1, Number(features >> 32n));
  core.writeStatus(11);
  const ring = new HandPackedRing(memory, size);
  core.setQueueSize(0, size);
  const parts = [ring.ring, ring.driver, ring.device];
  parts.forEach((r, part) => {
    core.setQueueAddress(0, part, 0, r.addrLo);
    core.setQueueAddress(0, part, 1, r.addrHi);
  });
  core.setQueueReady(0, true);
  core.writeStatus(15);
  assert.deepEqual(core.violations, []);
  return { memory, core, ring, q: core.packedQueue(0)!, buf: memory.alloc(4096) };
}

/** Asserts pop() failed with one violation matching `pattern` and NEEDS_RESET set. */
function assertRejected(s: Setup, pattern: RegExp): void {
  assert.equal(s.q.pop(), null);
  assert.equal(s.core.violations.length, 1, s.core.violations.join("; "));
  assert.match(s.core.violations[0], pattern);
  assert.equal(s.core.status & 64, 64);
  assert.ok(s.q.broken);
}

Deno.test("VirtioCore enables a packed queue of any size when RING_PACKED is negotiated", () => {
  const s = setup(ECHO_FEATURES | PACKED, 6); // 6: not a power of two (§2.8)
  assert.equal(s.q.layout, "packed");
  assert.equal(s.q.size, 6);
  assert.equal(s.core.splitQueue(0), null);
  assert.equal(s.q.pop(), null, "a zeroed ring holds nothing available");
  assert.equal(s.q.pending(), 0);
});

Deno.test("PackedDeviceQueue.pop() takes a list in ring order: readable then writable, id from the last", () => {
  const s = setup();
  s.ring.put(1, s.buf, 16, 9, W | A, 16);
  s.ring.put(0, s.buf, 16, 9, N | A);
  assert.equal(s.q.pending(), 1);
  const chain = s.q.pop()!;
  assert.equal(chain.head, 9);
  assert.deepEqual([chain.readableCount, chain.readableLength], [1, 16]);
  assert.deepEqual([chain.writableCount, chain.writableLength], [1, 16]);
  assert.equal(s.q.pop(), null);
  // Used: id, len, then A|U with the device's wrap counter 1 and WRITE (data was written).
  s.q.push(chain.head, 12);
  assert.deepEqual(s.ring.used(0), { id: 9, len: 12, flags: A | U | W });
  assert.deepEqual(s.q.usedCursor, { pos: 2, wrap: 1 }, "skips the list's 2 slots (§2.8.6)");
  assert.throws(() => s.q.push(9, 0), RangeError, "no longer in flight");
  assert.deepEqual(s.core.violations, []);
});

Deno.test("PackedDeviceQueue wraps both counters across the ring end, over many laps", () => {
  const s = setup(ECHO_FEATURES | PACKED, 5);
  let wrap = 1, pos = 0;
  for (let n = 0; n < 5 * 9; n++) {
    // Two-descriptor lists: every other lap one straddles the end.
    const flags = wrap ? A : U;
    const second = (pos + 1) % 5, secondWrap = pos + 1 === 5 ? wrap ^ 1 : wrap;
    s.ring.put(second, s.buf, 8, n & 0xff, W | (secondWrap ? A : U), 8);
    s.ring.put(pos, s.buf, 8, n & 0xff, N | flags);
    const chain = s.q.pop();
    assert.ok(chain !== null && chain.head === (n & 0xff), `list ${n}`);
    s.q.push(chain.head, 0);
    const used = s.ring.used(pos);
    assert.equal(used.flags & (A | U), wrap ? A | U : 0, `used bits of list ${n}`);
    pos += 2;
    if (pos >= 5) {
      pos -= 5;
      wrap ^= 1;
    }
  }
  assert.deepEqual(s.core.violations, []);
});

Deno.test("PackedDeviceQueue.pop() rejects a head made available before the rest of its list", () => {
  const s = setup();
  s.ring.put(0, s.buf, 16, 1, N | A); // slot 1 still zero
  assertRejected(s, /§2\.8\.17: slot 1 of the list at slot 0 is not available/);
});

Deno.test("PackedDeviceQueue.pop() rejects a readable element after a writable one", () => {
  const s = setup();
  s.ring.put(1, s.buf, 16, 1, A);
  s.ring.put(0, s.buf, 16, 1, N | W | A);
  assertRejected(s, /§2\.8\.17: device-readable element after a device-writable one/);
});

Deno.test("PackedDeviceQueue.pop() rejects a list longer than the queue", () => {
  const s = setup(ECHO_FEATURES | PACKED, 4);
  // Every slot available and chained, across the end into the next lap's (wrong) bits.
  for (let i = 3; i >= 0; i--) s.ring.put(i, s.buf, 4, 1, N | A);
  assertRejected(s, /§2\.8\.17: slot 0 of the list at slot 0 is not available|longer than/);
});

Deno.test("PackedDeviceQueue.pop() rejects an element outside guest memory", () => {
  const s = setup();
  const far = { ...s.buf, addrHi: s.buf.addrHi + 1 } as DmaRegion;
  s.ring.put(0, far, 16, 1, A);
  assertRejected(s, /§2\.8\.4: the list at slot 0 points to .* outside guest memory/);
});

Deno.test("PackedDeviceQueue.pop() enforces the indirect rules of §2.8.7 and §2.8.19", () => {
  const table = (s: Setup, entries: Array<[number, number]>): DmaRegion => {
    const t = s.memory.alloc(16 * entries.length, 16);
    entries.forEach(([len, flags], i) => {
      t.view.setUint32(16 * i, s.buf.addrLo, true);
      t.view.setUint32(16 * i + 4, s.buf.addrHi, true);
      t.view.setUint32(16 * i + 8, len, true);
      t.view.setUint16(16 * i + 14, flags, true);
    });
    return t;
  };
  // Works: readable then writable entries, one ring slot.
  const ok = setup();
  const t = table(ok, [[8, 0], [4, W]]);
  ok.ring.put(0, t, 32, 3, VIRTQ_DESC_F_INDIRECT | A);
  const chain = ok.q.pop()!;
  assert.deepEqual([chain.head, chain.readableLength, chain.writableLength], [3, 8, 4]);
  ok.q.push(3, 4);
  assert.deepEqual(ok.q.usedCursor, { pos: 1, wrap: 1 });
  assert.deepEqual(ok.core.violations, []);

  const noFeature = setup((ECHO_FEATURES & ~(1n << 28n)) | PACKED);
  noFeature.ring.put(0, table(noFeature, [[8, 0]]), 16, 1, VIRTQ_DESC_F_INDIRECT | A);
  assertRejected(noFeature, /§2\.8\.19: indirect descriptor at slot 0 without/);

  const withNext = setup();
  withNext.ring.put(1, withNext.buf, 4, 1, W | A);
  withNext.ring.put(0, table(withNext, [[8, 0]]), 16, 1, VIRTQ_DESC_F_INDIRECT | N | A);
  assertRejected(withNext, /§2\.8\.19: indirect descriptor in a list linked by NEXT/);

  const badFlags = setup();
  badFlags.ring.put(0, table(badFlags, [[8, N], [4, W]]), 32, 1, VIRTQ_DESC_F_INDIRECT | A);
  assertRejected(badFlags, /§2\.8\.19: entry 0 of the indirect table .* only WRITE is allowed/);

  const badLen = setup();
  badLen.ring.put(0, table(badLen, [[8, 0], [4, W]]), 24, 1, VIRTQ_DESC_F_INDIRECT | A);
  assertRejected(badLen, /§2\.8\.7: indirect table at slot 0 has length 24/);
});

Deno.test("PackedDeviceQueue.pop() rejects a buffer id reused while in flight", () => {
  const s = setup();
  s.ring.put(0, s.buf, 8, 4, W | A);
  s.ring.put(1, s.buf, 8, 4, W | A);
  assert.equal(s.q.pop()?.head, 4);
  assertRejected(s, /§2\.8\.21\.1: buffer id 4 at slot 1 was made available again/);
});

Deno.test("PackedDeviceQueue.pop() rejects a driver that overwrites descriptors not yet used", () => {
  const s = setup(ECHO_FEATURES | PACKED, 3);
  for (let i = 0; i < 3; i++) {
    s.ring.put(i, s.buf, 8, i, W | A);
    assert.equal(s.q.pop()?.head, i);
  }
  // Lap 2 (wrap 0) starts at slot 0 while all three are still out: an overrun.
  s.ring.put(0, s.buf, 8, 7, W | U);
  assertRejected(s, /§2\.8\.16: the driver made 4 descriptors available in a ring of 3/);
});

Deno.test("PackedDeviceQueue with EVENT_IDX asks for a notification at its next slot (§2.8.10)", () => {
  const s = setup();
  s.ring.put(0, s.buf, 8, 1, W | A);
  s.q.pop();
  assert.deepEqual(s.ring.deviceEvent(), {
    offWrap: eventOffWrap(1, 1),
    flags: RING_EVENT_FLAGS_DESC,
  });
  s.q.setNoNotify(true);
  assert.equal(s.ring.deviceEvent().flags, RING_EVENT_FLAGS_DISABLE);
  const plain = setup((ECHO_FEATURES & ~(1n << 29n)) | PACKED);
  plain.ring.put(0, plain.buf, 8, 1, W | A);
  plain.q.pop();
  assert.equal(
    plain.ring.deviceEvent().flags,
    RING_EVENT_FLAGS_ENABLE,
    "untouched without EVENT_IDX",
  );
});

Deno.test("VirtioCore.interrupt() follows the driver's packed event suppression both ways", () => {
  const s = setup();
  const cycle = (slot: number, id: number): void => {
    s.ring.put(slot, s.buf, 8, id, W | A);
    s.q.push(s.q.pop()!.head, 0);
    s.core.interrupt(0);
  };
  s.ring.setDriverEvent(RING_EVENT_FLAGS_DISABLE);
  cycle(0, 1);
  assert.equal(s.core.interruptCount, 0);
  s.ring.setDriverEvent(RING_EVENT_FLAGS_ENABLE);
  cycle(1, 2);
  assert.equal(s.core.interruptCount, 1);
  // DESC at slot 4: using slot 2 does not reach it, using slot 3 then 4 does.
  s.ring.setDriverEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(4, 1));
  cycle(2, 3);
  assert.equal(s.core.interruptCount, 1);
  cycle(3, 4);
  assert.equal(s.core.interruptCount, 1);
  cycle(4, 5);
  assert.equal(s.core.interruptCount, 2);
  assert.deepEqual(s.core.violations, []);
  // Reserved bits, and DESC without EVENT_IDX, are the driver's mistakes.
  s.ring.setDriverEvent(0x8001);
  s.core.interrupt(0);
  assert.match(s.core.violations[0], /§2\.8\.14: driver event suppression flags 0x8001/);
  const plain = setup((ECHO_FEATURES & ~(1n << 29n)) | PACKED);
  plain.ring.setDriverEvent(RING_EVENT_FLAGS_DESC);
  plain.core.interrupt(0);
  assert.match(
    plain.core.violations[0],
    /§2\.8\.10: RING_EVENT_FLAGS_DESC on queue 0 without EVENT_IDX/,
  );
});

Deno.test("PackedDeviceQueue.forgeUsed() and pushBroken() write what no correct device writes", () => {
  const s = setup();
  s.ring.put(0, s.buf, 8, 2, W | A);
  const chain = s.q.pop()!;
  s.q.pushBroken(chain.head, 4);
  assert.equal(s.ring.used(0).flags & (A | U), 0, "the bits of the wrong wrap counter");
  s.q.forgeUsed(0x1234, 4);
  assert.deepEqual(s.ring.used(0), { id: 0x1234, len: 4, flags: A | U });
  assert.deepEqual(s.q.usedCursor, { pos: 1, wrap: 1 });
});

Deno.test("VirtioCore queue reset: queue_reset reads 1 until done, then 0 with the queue disabled", () => {
  const s = setup(ECHO_FEATURES | PACKED | RING_RESET);
  s.core.faults.queueResetReads = 2;
  s.core.resetQueue(0);
  assert.equal(s.core.queueReady(0), false, "the device stops using the queue at once");
  assert.equal(s.core.queueSize(0), 8, "size back to the maximum");
  assert.equal(s.core.queueResetting(0), true);
  // Re-enabling before the reset shows complete breaks §4.1.4.3.2.
  s.core.setQueueReady(0, true);
  assert.match(s.core.violations[0], /re-enabled before its reset completed/);
  assert.equal(s.core.queueResetting(0), true);
  assert.equal(s.core.queueResetting(0), false);
  assert.equal(s.core.queueAddress(0, 0, 0), 0, "addresses back to 0");
  // Without the feature, a queue reset is the driver's mistake.
  const plain = setup();
  plain.core.resetQueue(0);
  assert.match(plain.core.violations[0], /§2\.6\.1: queue 0 reset without VIRTIO_F_RING_RESET/);
  assert.equal(plain.core.queueReady(0), true);
});
