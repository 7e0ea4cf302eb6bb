/**
 * Resetting one queue while the device runs (VIRTIO_F_RING_RESET, virtio 1.3 §2.6.1), over
 * every transport and both ring layouts: the event queue comes back with every buffer posted;
 * the request queue rejects what was in flight with a typed error, loses nothing that waited,
 * and leaves the device in step with the driver's records even for requests the device ran
 * but never answered; a reset that never completes fails typed; without the feature it is
 * refused.
 */

import assert from "node:assert/strict";
import { MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError, QueueResetError } from "../driver/iommu/errors.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { EVENT_QUEUE, VIRTIO_IOMMU_T_ATTACH, VIRTIO_IOMMU_T_MAP } from "../spec/iommu.ts";
import { type Bus, BUSES, type Fixture, NO_RING_RESET, ringOf, setup } from "./_fixtures.ts";

const RW = MAP_READ | MAP_WRITE;

/** Settles `p`: "ok" or the rejection reason. */
function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "ok", (e: unknown) => e);
}

/** Device and driver agree on `domain`'s mappings. */
function sameMappings(f: Fixture, domain: number): void {
  const device = f.device.mappings(domain).map((m) => [m.start, m.end, m.phys, m.flags]);
  const driver = f.iommu.mappings(domain).map((m) => [m.iova, m.last, m.phys, m.flags]);
  assert.deepEqual(device, driver, `domain ${domain}`);
}

async function withIommu(
  kind: Bus,
  body: (f: Fixture) => Promise<void>,
  driver: Parameters<typeof setup>[2] = {},
): Promise<void> {
  const f = await setup(kind, { bypass: false }, { timeoutMs: 500, ...driver });
  try {
    await body(f);
    assert.deepEqual(f.core.violations, []);
  } finally {
    await f.iommu.close();
  }
}

for (const kind of BUSES) {
  const t = (name: string, fn: () => Promise<void>): void => {
    Deno.test(`[${kind}] ${name}`, fn);
  };

  t(
    'VirtioIommu.resetQueue("event") posts every buffer again; faults keep arriving',
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        assert.equal(iommu.info.queueReset, true);
        assert.equal(iommu.info.ring, ringOf(kind));
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        assert.equal(device.translate(0x08, 0x90000n, "read").ok, false);
        assert.equal(iommu.takeFaults().length, 1);
        await iommu.resetQueue("event");
        assert.deepEqual(iommu.queueResets, { request: 0, event: 1 });
        // Nothing else was reset: the domain and its mapping are still on the device.
        assert.ok(device.translate(0x08, 0x10010n, "read").ok);
        for (let i = 0; i < 300; i++) {
          device.translate(0x08, BigInt(0x100000 + i * 0x1000), "write");
        }
        const faults = iommu.takeFaults();
        assert.equal(faults.length, 256, "a full ring of buffers was posted again");
        assert.ok(faults.every((f) => f.reason === "MAPPING" && f.write));
      }),
  );

  t(
    "a device that breaks the event ring gets the event queue reset by itself (wedged queue)",
    () =>
      withIommu(kind, async (f) => {
        const { iommu, device, core } = f;
        await iommu.attach(1, 0x08);
        // An id the driver never posted, at the next used position of the event queue.
        core.queue(EVENT_QUEUE)!.forgeUsed(0x7777, 24);
        assert.equal(iommu.pollEvents(), 0, "no throw: the queue is being reset");
        for (let i = 0; i < 50 && iommu.queueResets.event === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
        assert.equal(iommu.queueResets.event, 1);
        device.translate(0x08, 0x90000n, "read");
        const fault = await iommu.nextFault(500);
        assert.equal(fault?.address, 0x90000n);
        assert.equal(device.endpointDomain(0x08), 1, "the device was not reset");
      }),
  );

  t(
    'VirtioIommu.resetQueue("request"): in flight rejects with QueueResetError, waiting ones go through',
    () =>
      withIommu(kind, async (f) => {
        const { iommu, scripted, device } = f;
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        const slots = iommu.info.requestQueueSize / 2; // direct 2-descriptor chains
        scripted.script = () => ({ do: "hold" });
        const held: Promise<unknown>[] = [];
        for (let i = 0; i < slots; i++) {
          held.push(outcome(iommu.map(1, 0x100000 + i * 0x1000, 0x30000, 0x1000, RW)));
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
        scripted.script = null;
        // These wait for a slot: every one is in flight.
        const waiting: Promise<unknown>[] = [];
        for (let i = 0; i < 10; i++) {
          waiting.push(outcome(iommu.map(1, 0x200000 + i * 0x1000, 0x40000, 0x1000, RW)));
        }
        assert.equal(iommu.pending, slots + 10);
        await iommu.resetQueue("request");
        for (const e of await Promise.all(held)) {
          assert.ok(e instanceof QueueResetError && e instanceof DeviceResetError, String(e));
        }
        assert.deepEqual(await Promise.all(waiting), new Array(10).fill("ok"), "nothing lost");
        assert.equal(iommu.pending, 0);
        assert.deepEqual(iommu.queueResets, { request: 1, event: 0 });
        // The device kept the domain; what was refused left no record, the rest is in step.
        assert.equal(device.endpointDomain(0x08), 1);
        assert.equal(iommu.mappings(1).length, 11);
        sameMappings(f, 1);
      }),
  );

  t(
    "a request queue reset puts the device back in step for requests it ran but never answered",
    () =>
      withIommu(kind, async (f) => {
        const { iommu, scripted, device } = f;
        await iommu.attach(1, 0x08);
        await iommu.attach(2, 0x10);
        await iommu.map(1, 0x10000, 0x20000, 0x2000, RW);
        await iommu.map(1, 0x40000, 0x50000, 0x1000, MAP_READ);
        // The device executes each of these, then says nothing: a MAP (the driver forgets it),
        // an UNMAP (the driver puts its records back) and an ATTACH that moves 0x10 to domain 1.
        scripted.script = () => ({ do: "hold", run: true });
        const map = outcome(iommu.map(1, 0x60000, 0x70000, 0x1000, RW));
        const unmap = outcome(iommu.unmap(1, 0x10000, 0x2000));
        const attach = outcome(iommu.attach(1, 0x10));
        await new Promise((resolve) => setTimeout(resolve, 1));
        assert.equal(device.endpointDomain(0x10), 1, "the device moved the endpoint");
        scripted.script = null;
        await iommu.resetQueue("request");
        for (const e of [await map, await unmap, await attach]) {
          assert.ok(e instanceof QueueResetError, String(e));
        }
        // Records: the MAP and UNMAP and ATTACH failed. The device now says the same.
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x10000n, 0x40000n]);
        sameMappings(f, 1);
        assert.equal(device.endpointDomain(0x10), 2);
        assert.ok(device.translate(0x08, 0x11008n, "write").ok);
        assert.equal(device.translate(0x08, 0x60000n, "read").ok, false);
        // And it works on: requests after the reset are answered.
        await iommu.map(2, 0x80000, 0x90000, 0x1000, RW);
        sameMappings(f, 2);
      }),
  );

  t(
    "the request ring broken by the device resets by itself; a batch in progress loses nothing",
    () =>
      withIommu(kind, async (f) => {
        const { iommu, scripted } = f;
        await iommu.attach(1, 0x08);
        let first = true;
        scripted.script = (r) => {
          if (r.type !== VIRTIO_IOMMU_T_MAP || !first) return { do: "pass" };
          first = false;
          return { do: "bogusId", id: 5 };
        };
        const batch = iommu.batch();
        for (let i = 0; i < 300; i++) batch.map(1, 0x100000 + i * 0x1000, 0x1000, 0x1000, RW);
        const failed = await batch.submit();
        assert.equal(iommu.queueResets.request, 1);
        // The ones in flight when the ring broke failed typed; all others succeeded after.
        let errors = 0;
        for (let i = 0; i < 300; i++) {
          const e = batch.error(i);
          if (e === null) continue;
          errors++;
          assert.ok(e instanceof VirtqueueError, String(e));
        }
        assert.equal(errors, failed);
        assert.ok(failed >= 1 && failed < 300, `${failed} failed`);
        assert.equal(iommu.mappings(1).length, 300 - failed);
        sameMappings(f, 1);
      }),
  );

  t(
    "a queue reset the device never completes fails typed; reset() recovers",
    () =>
      withIommu(kind, async (f) => {
        const { iommu, core } = f;
        await iommu.attach(1, 0x08);
        core.faults.queueResetReads = Infinity;
        const e = await outcome(iommu.resetQueue("request"));
        assert.ok(e instanceof VirtqueueError, String(e));
        assert.match((e as Error).message, /reset did not complete within 500 ms/);
        const later = await outcome(iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
        assert.ok(later instanceof VirtqueueError, String(later));
        core.faults.queueResetReads = 0;
        await iommu.reset();
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        sameMappings(f, 1);
      }),
  );

  t(
    "VirtioIommu.resetQueue() without VIRTIO_F_RING_RESET is refused before touching the device",
    () =>
      withIommu(kind, async ({ iommu, scripted }) => {
        assert.equal(iommu.info.queueReset, false);
        const e = await outcome(iommu.resetQueue("event"));
        assert.ok(e instanceof IommuError && e.status === "DRIVER", String(e));
        // And a broken ring then stays broken, as it did before RING_RESET.
        scripted.script = (r) =>
          r.type === VIRTIO_IOMMU_T_ATTACH ? { do: "bogusId", id: 5 } : { do: "pass" };
        assert.ok((await outcome(iommu.attach(1, 0x08))) instanceof VirtqueueError);
        scripted.script = null;
        assert.ok((await outcome(iommu.attach(1, 0x08))) instanceof VirtqueueError);
        assert.deepEqual(iommu.queueResets, { request: 0, event: 0 });
      }, { features: NO_RING_RESET }),
  );
}
