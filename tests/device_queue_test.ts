import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { VirtioCore } from "../mock/virtio_core.ts";
import type { SplitDeviceQueue } from "../mock/split_queue.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import { HandRing } from "./_hand_ring.ts";
import { VIRTQ_AVAIL_F_NO_INTERRUPT } from "../spec/split_ring.ts";

const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;

interface Setup {
  memory: SimulatedMemory;
  model: EchoDevice;
  core: VirtioCore;
  ring: HandRing;
  q: SplitDeviceQueue;
}

/** A core at DRIVER_OK with queue 0 (size 8) enabled on a hand-built ring. */
function setup(features: bigint = ECHO_FEATURES): Setup {
  const memory = new SimulatedMemory();
  const model = new EchoDevice({ manual: true });
  const core = new VirtioCore(model, memory);
  core.writeStatus(1);
  core.writeStatus(3);
  core.writeDriverFeatures(0, Number(features & 0xffff_ffffn));
  core.writeDriverFeatures(1, Number(features >> 32n));
  core.writeStatus(11);
  const ring = new HandRing(memory, 8);
  const a = ring.addresses;
  core.setQueueSize(0, 8);
  core.setQueueAddress(0, 0, 0, a.descLo);
  core.setQueueAddress(0, 0, 1, a.descHi);
  core.setQueueAddress(0, 1, 0, a.driverLo);
  core.setQueueAddress(0, 1, 1, a.driverHi);
  core.setQueueAddress(0, 2, 0, a.deviceLo);
  core.setQueueAddress(0, 2, 1, a.deviceHi);
  core.setQueueReady(0, true);
  core.writeStatus(15);
  assert.deepEqual(core.violations, []);
  return { memory, model, core, ring, q: core.splitQueue(0)! };
}

/** Asserts pop() failed with a violation matching `pattern` and NEEDS_RESET set. */
function assertRejected(s: Setup, pattern: RegExp): void {
  assert.equal(s.q.pop(), null);
  assert.equal(s.core.violations.length, 1, s.core.violations.join("; "));
  assert.match(s.core.violations[0], pattern);
  assert.equal(s.core.status & 64, 64);
  assert.ok(s.q.broken);
}

Deno.test("SplitDeviceQueue.pop() returns null when the driver published nothing", () => {
  const s = setup();
  assert.equal(s.q.pending(), 0);
  assert.equal(s.q.pop(), null);
  assert.deepEqual(s.core.violations, []);
});

Deno.test("SplitDeviceQueue.pop() yields readable then writable segments", () => {
  const s = setup();
  const a = s.memory.alloc(10);
  const b = s.memory.alloc(20);
  const c = s.memory.alloc(30);
  s.ring.setDesc(3, a, 10, NEXT, 5);
  s.ring.setDesc(5, b, 20, NEXT | WRITE, 1);
  s.ring.setDesc(1, c, 30, WRITE);
  s.ring.publish(3);
  assert.equal(s.q.pending(), 1);
  const chain = s.q.pop()!;
  assert.equal(chain.head, 3);
  assert.equal(chain.readableCount, 1);
  assert.equal(chain.readableLength, 10);
  assert.equal(chain.readable[0].offset, a.addrLo - s.memory.baseLo);
  assert.equal(chain.writableCount, 2);
  assert.equal(chain.writableLength, 50);
  assert.equal(chain.writable[1].offset, c.addrLo - s.memory.baseLo);
  assert.equal(chain.writable[1].length, 30);
  assert.equal(s.q.pending(), 0);
});

Deno.test("SplitDeviceQueue.pop() reuses one Chain object and its segments", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, WRITE);
  s.ring.setDesc(1, buf, 8, 0);
  s.ring.publish(0);
  s.ring.publish(1);
  const first = s.q.pop()!;
  const seg = first.writable[0];
  s.q.push(first.head, 0);
  const second = s.q.pop()!;
  assert.equal(second, first);
  assert.equal(second.head, 1);
  assert.equal(second.writableCount, 0);
  assert.equal(second.readableCount, 1);
  assert.equal(first.writable[0], seg);
});

Deno.test("SplitDeviceQueue.pop() rejects a descriptor loop", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, NEXT, 1);
  s.ring.setDesc(1, buf, 8, NEXT, 0);
  s.ring.publish(0);
  assertRejected(s, /longer than 8 descriptors/);
  s.ring.setDesc(2, buf, 8, 0);
  s.ring.publish(2);
  assert.equal(s.q.pop(), null, "a broken queue stays stopped");
});

Deno.test("SplitDeviceQueue.pop() rejects an address outside guest memory", () => {
  const s = setup();
  s.ring.setDesc(0, { addrLo: 0x1000, addrHi: 0 }, 8, 0);
  s.ring.publish(0);
  assertRejected(s, /0x1000 .*outside guest memory/);
});

Deno.test("SplitDeviceQueue.pop() rejects a buffer running past the end of memory", () => {
  const s = setup();
  const end = s.memory.baseLo + s.memory.size - 4;
  s.ring.setDesc(0, { addrLo: end, addrHi: s.memory.baseHi }, 8, 0);
  s.ring.publish(0);
  assertRejected(s, /outside guest memory/);
});

Deno.test("SplitDeviceQueue.pop() rejects a readable descriptor after a writable one", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, WRITE | NEXT, 1);
  s.ring.setDesc(1, buf, 8, 0);
  s.ring.publish(0);
  assertRejected(s, /readable descriptor after a device-writable/);
});

Deno.test("SplitDeviceQueue.pop() rejects a next index beyond the table", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, NEXT, 8);
  s.ring.publish(0);
  assertRejected(s, /points to 8/);
});

Deno.test("SplitDeviceQueue.pop() rejects a head index not below the queue size", () => {
  const s = setup();
  s.ring.publish(9);
  assertRejected(s, /holds head 9/);
});

Deno.test("SplitDeviceQueue.pop() rejects avail.idx jumping past the queue size", () => {
  const s = setup();
  s.ring.setAvailIdx(9);
  assertRejected(s, /moved 9 entries ahead .* size 8/);
});

Deno.test("SplitDeviceQueue.pop() rejects a head made available twice before use", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, 0);
  s.ring.publish(0);
  s.ring.publish(0);
  assert.notEqual(s.q.pop(), null);
  assertRejected(s, /head 0 made available again/);
});

Deno.test("SplitDeviceQueue.pop() follows an indirect table when INDIRECT_DESC is negotiated", () => {
  const s = setup();
  const table = s.memory.alloc(32, 16);
  const a = s.memory.alloc(4);
  const b = s.memory.alloc(12);
  s.ring.setDesc(0, a, 4, NEXT, 1, table);
  s.ring.setDesc(1, b, 12, WRITE, 0, table);
  s.ring.setDesc(2, table, 32, INDIRECT);
  s.ring.publish(2);
  const chain = s.q.pop()!;
  assert.equal(chain.head, 2);
  assert.equal(chain.readableLength, 4);
  assert.equal(chain.writableLength, 12);
  assert.equal(chain.writable[0].offset, b.addrLo - s.memory.baseLo);
  assert.deepEqual(s.core.violations, []);
});

/** A setup whose chain at head 0 is an indirect descriptor over `table` of `len` bytes. */
function indirectCase(features: bigint, tableLen: number, flags: number): Setup {
  const s = setup(features);
  const table = s.memory.alloc(64, 16);
  const buf = s.memory.alloc(8);
  for (let i = 0; i < 4; i++) s.ring.setDesc(i, buf, 8, 0, 0, table);
  s.ring.setDesc(0, table, tableLen, flags, 1);
  s.ring.setDesc(1, buf, 8, 0);
  s.ring.publish(0);
  return s;
}

Deno.test("SplitDeviceQueue.pop() rejects indirect descriptors when not negotiated", () => {
  const s = indirectCase(ECHO_FEATURES & ~(1n << 28n), 64, INDIRECT);
  assertRejected(s, /without VIRTIO_F_INDIRECT_DESC/);
});

Deno.test("SplitDeviceQueue.pop() rejects INDIRECT together with NEXT", () => {
  const s = indirectCase(ECHO_FEATURES, 64, INDIRECT | NEXT);
  assertRejected(s, /both INDIRECT and NEXT/);
});

Deno.test("SplitDeviceQueue.pop() rejects an indirect table length not a multiple of 16", () => {
  const s = indirectCase(ECHO_FEATURES, 24, INDIRECT);
  assertRejected(s, /length 24, not a non-zero multiple of 16/);
});

Deno.test("SplitDeviceQueue.pop() rejects a nested indirect descriptor", () => {
  const s = setup();
  const table = s.memory.alloc(32, 16);
  const inner = s.memory.alloc(16, 16);
  s.ring.setDesc(0, inner, 16, INDIRECT, 0, table);
  s.ring.setDesc(0, table, 32, INDIRECT);
  s.ring.publish(0);
  assertRejected(s, /nested indirect/);
});

Deno.test("SplitDeviceQueue.pop() rejects a loop inside an indirect table", () => {
  const s = setup();
  const table = s.memory.alloc(32, 16);
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, NEXT, 1, table);
  s.ring.setDesc(1, buf, 8, NEXT, 0, table);
  s.ring.setDesc(0, table, 32, INDIRECT);
  s.ring.publish(0);
  assertRejected(s, /longer than 2 descriptors/);
});

Deno.test("SplitDeviceQueue.push() writes the used element and used.idx", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(6, buf, 8, WRITE);
  s.ring.publish(6);
  const chain = s.q.pop()!;
  s.q.push(chain.head, 5);
  assert.equal(s.ring.usedIdx(), 1);
  assert.deepEqual(s.ring.usedElem(0), { id: 6, len: 5 });
});

Deno.test("SplitDeviceQueue.push() rejects a head that is not in flight", () => {
  const s = setup();
  assert.throws(() => s.q.push(0, 0), RangeError);
  assert.throws(() => s.q.push(8, 0), RangeError);
});

Deno.test("SplitDeviceQueue indices wrap at 65536", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  for (let i = 0; i < 8; i++) s.ring.setDesc(i, buf, 8, WRITE);
  const rounds = 65536 + 5;
  for (let n = 0; n < rounds; n++) {
    s.ring.publish(n % 8);
    const chain = s.q.pop();
    assert.ok(chain !== null && chain.head === n % 8);
    s.q.push(chain.head, n & 7);
  }
  assert.equal(s.ring.usedIdx(), 5);
  assert.equal(s.q.usedIndex, 5);
  assert.equal(s.q.lastAvailIndex, 5);
  assert.deepEqual(s.ring.usedElem(4), { id: (rounds - 1) % 8, len: (rounds - 1) & 7 });
  assert.deepEqual(s.core.violations, []);
});

Deno.test("SplitDeviceQueue.pop() writes avail_event as it consumes (EVENT_IDX)", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, 0);
  s.ring.setDesc(1, buf, 8, 0);
  s.ring.publish(0);
  s.ring.publish(1);
  s.q.pop();
  assert.equal(s.ring.availEvent(), 1);
  s.q.pop();
  assert.equal(s.ring.availEvent(), 2);
});

Deno.test("VirtioCore.interrupt() honours used_event with EVENT_IDX", () => {
  const s = setup();
  const buf = s.memory.alloc(8);
  for (let i = 0; i < 3; i++) s.ring.setDesc(i, buf, 8, WRITE);
  const cycle = (head: number): void => {
    s.ring.publish(head);
    s.q.push(s.q.pop()!.head, 0);
    s.core.interrupt(0);
  };
  cycle(0);
  assert.equal(s.core.interruptCount, 1, "the first interrupt is always sent");
  s.ring.setUsedEvent(5);
  cycle(1);
  assert.equal(s.core.interruptCount, 1, "used_event 5 not reached by used idx 2");
  s.ring.setUsedEvent(2);
  cycle(2);
  assert.equal(s.core.interruptCount, 2, "used idx passed used_event 2");
  assert.equal(s.core.interruptStatus & 1, 1);
});

Deno.test("VirtioCore.interrupt() honours NO_INTERRUPT without EVENT_IDX", () => {
  const s = setup(ECHO_FEATURES & ~(1n << 29n));
  const buf = s.memory.alloc(8);
  s.ring.setDesc(0, buf, 8, WRITE);
  s.ring.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
  s.ring.publish(0);
  s.q.push(s.q.pop()!.head, 0);
  s.core.interrupt(0);
  assert.equal(s.core.interruptCount, 0);
  assert.equal(s.core.interruptStatus, 0);
  s.ring.setAvailFlags(0);
  s.core.interrupt(0);
  assert.equal(s.core.interruptCount, 1);
});

Deno.test("VirtioCore.interrupt() records avail.flags set with EVENT_IDX", () => {
  const s = setup();
  s.ring.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
  s.core.interrupt(0);
  assert.match(s.core.violations[0], /§2\.7\.7\.1: avail\.flags is 1 .*EVENT_IDX/);
});
