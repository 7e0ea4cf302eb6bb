/** SplitVirtqueue notification and interrupt suppression: NO_NOTIFY, NO_INTERRUPT, EVENT_IDX. */

import assert from "node:assert/strict";
import {
  needEvent,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../spec/split_ring.ts";
import { add2, rig } from "./_virtqueue.ts";

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
