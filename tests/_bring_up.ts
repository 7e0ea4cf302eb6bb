/**
 * A minimal, hand-written init sequence and echo round trip over any {@link Transport}, so the
 * transport tests do not depend on the driver's own init code.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { SimulatedMemory } from "../transport/memory.ts";
import type { Transport } from "../transport/transport.ts";
import { ECHO_FEATURES } from "./_echo_device.ts";
import type { HandRing } from "./_hand_ring.ts";

/** Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue 0 on `ring`, DRIVER_OK. */
export function bringUp(t: Transport, ring: HandRing, wanted: bigint = ECHO_FEATURES): void {
  t.setStatus(0);
  for (let i = 0; t.getStatus() !== 0; i++) assert.ok(i < 100, "reset never completed");
  t.setStatus(1);
  t.setStatus(1 | 2);
  t.writeDriverFeatures(t.readDeviceFeatures() & wanted);
  t.setStatus(1 | 2 | 8);
  assert.equal(t.getStatus() & 8, 8, "device refused FEATURES_OK");
  t.enableQueue(0, ring.size, ring.addresses);
  t.setStatus(1 | 2 | 8 | 4);
}

/** Sends 16 bytes through the echo device on queue 0 and checks they come back. */
export function echoRoundTrip(t: Transport, memory: SimulatedMemory, ring: HandRing): void {
  const input = memory.alloc(16, 16);
  const output = memory.alloc(16, 16);
  for (let i = 0; i < 16; i++) input.bytes[i] = 0xa0 + i;
  const head = ring.availIdx % ring.size;
  const second = (head + 1) % ring.size;
  ring.setDesc(head, input, 16, 1, second); // NEXT
  ring.setDesc(second, output, 16, 2); // WRITE
  const before = ring.usedIdx();
  ring.setUsedEvent(before); // with EVENT_IDX: interrupt me for this very buffer
  ring.publish(head);
  t.notify(0);
  assert.equal(ring.usedIdx(), (before + 1) & 0xffff);
  assert.deepEqual(ring.usedElem(before), { id: head, len: 16 });
  assert.deepEqual([...output.bytes], [...input.bytes]);
  assert.equal(t.takeInterrupt() & 1, 1);
  memory.free(input);
  memory.free(output);
}
