/** PackedVirtqueue event suppression (§2.8.10): ENABLE/DISABLE, DESC with EVENT_IDX. */

import assert from "node:assert/strict";
import {
  eventOffWrap,
  passedEvent,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
} from "../spec/packed_ring.ts";
import { add2, rig, serveOne } from "./_packed_queue.ts";

// ---- Event suppression (§2.8.10) ---------------------------------------------------------

Deno.test("PackedVirtqueue.publish() follows the device's ENABLE/DISABLE both ways", () => {
  const r = rig(8);
  assert.equal(r.vq.publish(), false, "nothing added: no notification");
  add2(r);
  assert.equal(r.vq.publish(), true, "zeroed device area: ENABLE");
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DISABLE);
  add2(r, 64);
  assert.equal(r.vq.publish(), false);
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_ENABLE);
  add2(r, 128);
  assert.equal(r.vq.publish(), true);
  // DESC without EVENT_IDX is not meaningful: notify rather than risk a lost wake-up.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(7, 0));
  add2(r, 192, 8, 0);
  assert.equal(r.vq.publish(), true);
  r.vq.destroy();
});

Deno.test("PackedVirtqueue.publish() with EVENT_IDX notifies only past the device's event descriptor", () => {
  const r = rig(8, { eventIdx: true });
  // The device waits at slot 2 (wrap 1); one buffer at slots 0-1 does not reach it.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(2, 1));
  add2(r);
  assert.equal(r.vq.publish(), false);
  add2(r, 64);
  assert.equal(r.vq.publish(), true, "slots 2-3 include the event descriptor");
  add2(r, 128);
  assert.equal(r.vq.publish(), false, "slots 4-5 are past it");
  // Across the end: slots 6, 7 then 0 (wrap 0); an event at slot 0 of wrap 0 is passed.
  r.dev.setDeviceEvent(RING_EVENT_FLAGS_DESC, eventOffWrap(0, 0));
  for (let i = 0; i < 3; i++) serveOne(r, 4);
  for (let i = 0; i < 3; i++) r.vq.popUsed();
  add2(r, 0, 8, 0);
  add2(r, 64);
  assert.equal(r.vq.publish(), true);
  r.vq.destroy();
});

Deno.test("passedEvent() is vring_need_event over ring positions and wrap counters", () => {
  // Mover went from 3 to 6 in its current lap (wrap 1), ring of 8.
  assert.equal(passedEvent(eventOffWrap(3, 1), 1, 3, 6, 8), true);
  assert.equal(passedEvent(eventOffWrap(5, 1), 1, 3, 6, 8), true);
  assert.equal(passedEvent(eventOffWrap(6, 1), 1, 3, 6, 8), false);
  assert.equal(passedEvent(eventOffWrap(2, 1), 1, 3, 6, 8), false);
  // An event of the other wrap lies one lap back: from 6 (old, previous lap = −2) to 1.
  assert.equal(passedEvent(eventOffWrap(7, 0), 1, -2, 1, 8), true);
  assert.equal(passedEvent(eventOffWrap(5, 0), 1, -2, 1, 8), false);
  // The largest ring: a full lap of 32768 is still told apart.
  assert.equal(passedEvent(eventOffWrap(0, 1), 1, 0, 32767, 32768), true);
  assert.equal(passedEvent(eventOffWrap(32767, 1), 1, 0, 32767, 32768), false);
});

Deno.test("PackedVirtqueue.setInterrupts() writes ENABLE/DISABLE, or DESC at the next used slot with EVENT_IDX", () => {
  const plain = rig(8);
  assert.equal(plain.vq.setInterrupts(true), true);
  assert.equal(plain.dev.driverEvent().flags, RING_EVENT_FLAGS_ENABLE);
  assert.equal(plain.vq.setInterrupts(false), true);
  assert.equal(plain.dev.driverEvent().flags, RING_EVENT_FLAGS_DISABLE);
  plain.vq.destroy();

  const r = rig(4, { eventIdx: true });
  assert.equal(r.vq.setInterrupts(true), true);
  assert.deepEqual(r.dev.driverEvent(), {
    offWrap: eventOffWrap(0, 1),
    flags: RING_EVENT_FLAGS_DESC,
  });
  // Each pop moves the event to the next slot the driver expects used, wrap included.
  for (let i = 0; i < 3; i++) {
    add2(r);
    r.vq.publish();
    serveOne(r, 4);
    r.vq.popUsed();
  }
  assert.deepEqual(r.dev.driverEvent(), {
    offWrap: eventOffWrap(2, 0),
    flags: RING_EVENT_FLAGS_DESC,
  });
  // Something used meanwhile: setInterrupts(true) says "poll first".
  add2(r);
  r.vq.publish();
  serveOne(r, 4);
  assert.equal(r.vq.setInterrupts(true), false);
  assert.equal(r.vq.setInterrupts(false), false);
  assert.equal(r.dev.driverEvent().flags, RING_EVENT_FLAGS_DISABLE);
  r.vq.destroy();
});
