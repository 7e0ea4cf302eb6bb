/**
 * RequestQueue.sendAlone() itself, below the driver: what the fast path relies on. A request
 * alone in the ring that the device answers during its notification comes back as the
 * outcome (null or the request's error) and its completion is never called; a request not
 * answered yet is tracked, and its completion runs once, when the device answers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { beginInit, finishInit } from "../driver/virtio/init.ts";
import { RequestQueue } from "../driver/iommu/request_queue.ts";
import { encodeAttach } from "../driver/iommu/requests.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import { ATTACH_SIZE } from "../spec/iommu.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { featureBit, VIRTIO_F_RING_PACKED } from "../spec/features.ts";
import { SUPPORTED_FEATURES } from "../mod.ts";
import { BUSES, busTest, plug, ringOf, ScriptedDevice } from "./_fixtures.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  t(
    "sendAlone() settles an answer given during the notification without its completion",
    async () => {
      const memory = new SimulatedMemory();
      const ring = ringOf(kind);
      const scripted = new ScriptedDevice(new MockIommuDevice({ packed: ring === "packed" }));
      const { transport } = plug(kind, scripted, memory);
      const features = ring === "packed"
        ? SUPPORTED_FEATURES
        : SUPPORTED_FEATURES & ~featureBit(VIRTIO_F_RING_PACKED);
      const negotiated = await beginInit(transport, { supported: features });
      const q = new RequestQueue(transport, memory, 16, {
        timeoutMs: 1000,
        eventIdx: false,
        indirect: false,
        layout: ring,
      });
      q.enable();
      finishInit(transport);
      assert.ok(negotiated !== 0n);
      const calls: (Error | null)[] = [];
      const done = (error: Error | null): void => void calls.push(error);
      const attach = (domain: number): number => {
        const slot = q.tryTakeSlot();
        encodeAttach(q.view(slot), q.offset(slot), domain, 0x08, 0);
        return slot;
      };

      // Answered OK during the notification: null, no completion, nothing left in flight.
      assert.equal(q.sendAlone(attach(1), ATTACH_SIZE, done), null);
      assert.deepEqual(calls, []);
      assert.equal(q.inFlight, 0);
      assert.equal(q.answered, 1);

      // Refused during the notification: the request's error, still no completion.
      scripted.script = () => ({ do: "status", status: 7 }); // S_FAULT
      const refused = q.sendAlone(attach(2), ATTACH_SIZE, done);
      assert.ok(refused instanceof IommuError, String(refused));
      assert.equal(refused.status, "FAULT");
      assert.match(refused.message, /ATTACH/);
      assert.deepEqual(calls, []);

      // Not answered yet: tracked, settled through its completion once the device answers.
      scripted.script = () => ({ do: "hold" });
      assert.equal(q.sendAlone(attach(3), ATTACH_SIZE, done), undefined);
      assert.equal(q.inFlight, 1);
      assert.deepEqual(calls, []);
      scripted.script = null;
      scripted.releaseHeld();
      assert.equal(q.collect(), 1);
      assert.deepEqual(calls, [null]);
      assert.equal(q.inFlight, 0);

      // Every slot came back: all of them can be taken again.
      const slots = Array.from({ length: q.slots }, () => q.tryTakeSlot());
      assert.ok(slots.every((s) => s >= 0), String(slots));
      for (const s of slots) q.release(s);
      q.destroy();
    },
  );
}
