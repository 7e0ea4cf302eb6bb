/** VirtioIommu against FaultyDevice, one fault of the plan at a time: typed error, no hang. */

import assert from "node:assert/strict";
import { VirtioIommu } from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../driver/iommu/errors.ts";
import { DeviceInitError } from "../driver/virtio/init.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { type FaultKind, FaultyDevice } from "../mock/iommu/faults.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { NO_RING_RESET, plug } from "./_fixtures.ts";
import { RING_LAYOUTS } from "./_ring_layouts.ts";
import { NONE, onRing, outcome, type Rig, RW, sameMappings, within } from "./_robustness.ts";

/** After a broken device: turn the faults off, reset, and check the driver works again. */
async function recovers(r: Rig): Promise<void> {
  r.faulty.plan = NONE;
  await within(r.iommu.reset(), 2000, "reset()");
  assert.equal(r.iommu.pending, 0);
  await r.iommu.map(1, 0x70_0000, 0x70_0000, 0x1000, RW);
  const t = r.device.translate(0x08, 0x70_0010n, "read");
  assert.ok(t.ok && t.address === 0x70_0010n);
  sameMappings(r);
}

for (const ring of RING_LAYOUTS) {
  const { test, withRig } = onRing(ring);

  /**
   * A ring-protocol fault without VIRTIO_F_RING_RESET: the request rejects with
   * VirtqueueError, later ones too, reset() recovers.
   */
  const ringFault = (kind: FaultKind): () => Promise<void> => () =>
    withRig(
      async (r) => {
        await r.iommu.attach(1, 0x08);
        await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        r.faulty.plan = { kinds: [kind], seed: 3 };
        const first = await within(
          outcome(r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW)),
          1000,
          kind,
        );
        const later = await within(
          outcome(r.iommu.map(1, 0x50000, 0x40000, 0x1000, RW)),
          1000,
          kind,
        );
        // Packed sees a duplicate only when it reuses the slot, so the second request reached
        // the device (and got the fault too).
        if (ring === "split" || kind !== "duplicateId") assert.equal(r.faulty.injected[kind], 1);
        // duplicateId answers first, then repeats the id: the first call may have succeeded.
        if (kind !== "duplicateId") assert.ok(first instanceof VirtqueueError, String(first));
        assert.ok(later instanceof VirtqueueError, String(later));
        assert.equal(r.iommu.pending, 0);
        await recovers(r);
        // The mapping made before the fault was replayed on the reset device.
        assert.equal(r.iommu.iovaToPhys(1, 0x10010), 0x20010n);
        assert.ok(r.device.translate(0x08, 0x10010n, "read").ok);
      },
      NONE,
      {},
      { features: NO_RING_RESET },
    );

  /**
   * The same fault with VIRTIO_F_RING_RESET: the driver resets the request queue by itself
   * (no device reset), the device keeps its domains, and the next request goes through.
   */
  const ringFaultRecovered = (kind: FaultKind): () => Promise<void> => () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
      r.faulty.plan = { kinds: [kind], seed: 3, limit: 1 };
      const first = await within(outcome(r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW)), 1000, kind);
      const later = await within(outcome(r.iommu.map(1, 0x50000, 0x60000, 0x1000, RW)), 1000, kind);
      assert.equal(r.faulty.injected[kind], 1);
      if (kind !== "duplicateId") assert.ok(first instanceof VirtqueueError, String(first));
      // duplicateId: split sees the extra element at once; packed only when reusing its slot.
      if (kind !== "duplicateId" || ring === "split") assert.equal(later, "ok");
      assert.equal(r.iommu.queueResets.request, 1);
      assert.equal(r.iommu.pending, 0);
      // Nothing was reset on the device: its domain and first mapping are still there, and
      // what the failed requests touched is back in step with the driver's records.
      assert.equal(r.device.endpointDomain(0x08), 1);
      assert.ok(r.device.translate(0x08, 0x10010n, "read").ok);
      sameMappings(r);
      await r.iommu.map(1, 0x70_0000, 0x70_0000, 0x1000, RW);
      sameMappings(r);
    });

  test(
    "FaultyDevice: a used id never submitted rejects with VirtqueueError; reset() recovers",
    ringFault("unknownId"),
  );
  test(
    "FaultyDevice: a used id already completed breaks the queue with VirtqueueError; reset() recovers",
    ringFault("duplicateId"),
  );
  test(
    "FaultyDevice: a used length beyond the writable part rejects with VirtqueueError; reset() recovers",
    ringFault("longLength"),
  );
  test(
    "FaultyDevice: used.idx jumping (split) or wrong wrap bits (packed) reject with VirtqueueError; reset() recovers",
    ringFault("idxJump"),
  );
  for (const kind of ["unknownId", "duplicateId", "longLength", "idxJump"] as const) {
    test(
      `FaultyDevice with RING_RESET: ${kind} resets the request queue alone; domains stay, the next request works`,
      ringFaultRecovered(kind),
    );
  }

  test("FaultyDevice: a device that never answers gives RequestTimeoutError, and the driver keeps working", () =>
    withRig(
      async (r) => {
        await r.iommu.attach(1, 0x08);
        r.faulty.plan = { kinds: ["silent"], limit: 1 };
        const start = performance.now();
        const e = await within(outcome(r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW)), 1000, "map");
        assert.ok(e instanceof RequestTimeoutError, String(e));
        assert.ok(performance.now() - start >= 90, "the caller's timeout (100 ms) was honoured");
        assert.equal(r.faulty.injected.silent, 1);
        // Only that request was lost by the device: the next one goes through.
        await r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW);
        assert.ok(r.device.translate(0x08, 0x30000n, "read").ok);
      },
      NONE,
      {},
      { timeoutMs: 100 },
    ));

  test(
    "VirtioIommu requests waiting for a slot time out when the device keeps every slot (regression: they hung)",
    () =>
      withRig(
        async (r) => {
          assert.equal(r.iommu.info.requestQueueSize, 8);
          await r.iommu.attach(1, 0x08);
          r.faulty.plan = { kinds: ["silent"] };
          // 8 slots are taken forever; 12 more callers wait for one. Each must still settle.
          const all: Promise<unknown>[] = [];
          for (let i = 0; i < 20; i++) {
            all.push(outcome(r.iommu.map(1, 0x10000 + i * 0x1000, 0x20000, 0x1000, RW)));
          }
          const results = await within(Promise.all(all), 2000, "20 callers on a silent device");
          for (const e of results) assert.ok(e instanceof RequestTimeoutError, String(e));
          assert.equal(r.iommu.pending, 0);
          await recovers(r);
        },
        NONE,
        { queueSizes: [8, 8] },
        { timeoutMs: 50, maxQueueSize: 8 },
      ),
  );

  test("FaultyDevice: DEVICE_NEEDS_RESET in the middle of a batch rejects the rest with DeviceResetError; reset() replays", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      // Request 1 was the ATTACH; the 3rd MAP of the batch meets NEEDS_RESET.
      r.faulty.plan = { kinds: ["needsReset"], after: r.faulty.requests + 2, limit: 1 };
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < 6; i++) {
        batch.push(outcome(r.iommu.map(1, 0x10000 * (i + 1), 0x100000, 0x1000, RW)));
      }
      const results = await within(Promise.all(batch), 1000, "batch");
      assert.deepEqual(results.slice(0, 2), ["ok", "ok"]);
      for (const e of results.slice(2)) assert.ok(e instanceof DeviceResetError, String(e));
      assert.equal(r.faulty.injected.needsReset, 1);
      // New requests refuse until reset (the queue is failed), typed, and never throw.
      assert.ok(
        (await outcome(r.iommu.map(1, 0x90000, 0, 0x1000, RW))) instanceof DeviceResetError,
      );
      await recovers(r);
      // The two mappings that succeeded were replayed; the refused ones were forgotten.
      assert.deepEqual(r.iommu.mappings(1).map((m) => m.iova), [0x10000n, 0x20000n, 0x70_0000n]);
    }));

  test("FaultyDevice: a config generation that never settles fails create() and reset() with DeviceInitError", async () => {
    const memory = new SimulatedMemory();
    const faulty = new FaultyDevice(new MockIommuDevice(), { kinds: ["unstableConfig"] });
    const { transport } = plug("mmio", faulty, memory);
    const e = await within(outcome(VirtioIommu.create(transport, memory)), 1000, "create");
    assert.ok(e instanceof DeviceInitError && e.step === "config", String(e));
    assert.ok(faulty.injected.unstableConfig >= 64);
    // Mid-life: the reset fails typed, and a later reset on a settled device recovers.
    await withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
      r.faulty.plan = { kinds: ["unstableConfig"] };
      const failed = await within(outcome(r.iommu.reset()), 1000, "reset");
      assert.ok(failed instanceof DeviceInitError, String(failed));
      await recovers(r);
      assert.ok(r.device.translate(0x08, 0x10000n, "read").ok);
    });
  });

  test("FaultyDevice: a PROBE property overrunning probe_size ends parsing; what came before is kept", () =>
    withRig(async (r) => {
      r.faulty.plan = { kinds: ["probeOverrun"], seed: 5 };
      const result = await r.iommu.probe(0x08);
      assert.equal(r.faulty.injected.probeOverrun, 1);
      assert.deepEqual(result.regions, [{ kind: "reserved", start: 0x1000n, end: 0x1fffn }]);
      assert.equal(result.ignored, 1);
      // Other requests are not affected (probeOverrun only hits PROBE).
      await r.iommu.attach(1, 0x08);
      await assert.rejects(r.iommu.map(1, 0x1000, 0, 0x1000, RW), IommuError);
    }));

  test("FaultyDevice: PROBE filled with zero-length properties is walked to probe_size and stops", () =>
    withRig(async (r) => {
      r.faulty.plan = { kinds: ["probeLoop"], seed: 9 };
      const result = await within(r.iommu.probe(0x08), 1000, "probe");
      assert.equal(r.faulty.injected.probeLoop, 1);
      assert.deepEqual(result.regions, []);
      assert.equal(result.unknown.length, 512 / 4);
      for (const u of result.unknown) assert.equal(u.length, 0);
    }));

  test("FaultyDevice: fault records with reserved bits are ignored and counted; real faults still arrive", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      r.faulty.plan = { kinds: ["faultReserved"], limit: 3 };
      for (let i = 0; i < 3; i++) await r.iommu.map(1, 0x10000 * (i + 1), 0, 0x1000, RW);
      assert.equal(r.faulty.injected.faultReserved, 3);
      assert.deepEqual(r.iommu.takeFaults(), []);
      assert.equal(r.iommu.ignoredEvents, 3);
      // The buffers were re-posted: a real fault is delivered.
      assert.equal(r.device.translate(0x08, 0x90000n, "read").ok, false);
      const faults = r.iommu.takeFaults();
      assert.equal(faults.length, 1);
      assert.equal(faults[0].reason, "MAPPING");
    }));

  test("FaultyDevice: used length 0 and unknown statuses are IOERR failures; the driver keeps working", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      for (const kind of ["zeroLength", "badStatus"] as const) {
        r.faulty.plan = { kinds: [kind], limit: 1, seed: 11 };
        const e = await outcome(r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
        assert.ok(e instanceof IommuError && e.status === "IOERR", `${kind}: ${e}`);
        assert.equal(r.faulty.injected[kind], 1);
        assert.deepEqual(r.iommu.mappings(1), []); // the refused MAP left no record
        await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await r.iommu.unmap(1, 0x10000, 0x1000);
      }
    }));
}
