/**
 * RequestBatch: many MAP/UNMAP requests, one notification per ring-full, one await; every
 * request settles with its own status, and the driver's records follow the device's answers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { IommuError, MAP_READ, MAP_WRITE } from "../mod.ts";
import { BUSES, setup } from "./_fixtures.ts";

const RW = MAP_READ | MAP_WRITE;

for (const kind of BUSES) {
  Deno.test(`[${kind}] RequestBatch.submit() sends 1000 requests through a queue of 8 and all settle`, async () => {
    const { iommu, device, core } = await setup(kind, { queueSizes: [8, 8] }, { maxQueueSize: 8 });
    await iommu.attach(1, 0x08);
    const batch = iommu.batch();
    for (let i = 0; i < 1000; i++) batch.map(1, i * 0x1000, 0x100000 + i * 0x1000, 0x1000, RW);
    assert.equal(batch.length, 1000);
    assert.equal(batch.status(999), "PENDING");
    const failed = await batch.submit();
    assert.equal(failed, 0);
    assert.equal(batch.status(999), "OK");
    assert.equal(device.mappings(1).length, 1000);
    assert.equal(iommu.mappings(1).length, 1000);
    // Unmap them all in a second round of the same (cleared) batch.
    batch.clear();
    for (let i = 0; i < 1000; i++) batch.unmap(1, i * 0x1000, 0x1000);
    assert.equal(await batch.submit(), 0);
    assert.equal(device.mappings(1).length, 0);
    assert.deepEqual(core.violations, []);
    await iommu.close();
  });

  Deno.test(`[${kind}] RequestBatch.submit() waits in line while other callers hold every slot (regression: it stalled)`, async () => {
    const { iommu, scripted, device } = await setup(kind, { queueSizes: [8, 8] }, {
      maxQueueSize: 8,
    });
    await iommu.attach(1, 0x08);
    // Eight one-at-a-time MAPs take every slot (and wait for one if slots are fewer); the
    // device sits on them. The batch then has none of its own out, so no answer of its own
    // will wake it: it must wait in the line like any other caller.
    scripted.script = () => ({ do: "hold" });
    const held = [];
    for (let i = 0; i < 8; i++) held.push(iommu.map(1, 0x100000 + i * 0x1000, 0, 0x1000, RW));
    await new Promise((resolve) => setTimeout(resolve, 1));
    const batch = iommu.batch();
    for (let i = 0; i < 20; i++) batch.map(1, i * 0x1000, 0x100000 + i * 0x1000, 0x1000, RW);
    const submitted = batch.submit();
    await new Promise((resolve) => setTimeout(resolve, 5));
    scripted.script = null;
    scripted.releaseHeld(); // answered OK without running them: the device maps only the batch
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise((resolve) => timer = setTimeout(() => resolve("stalled"), 1000));
    const result = await Promise.race([submitted, stalled]);
    clearTimeout(timer);
    assert.equal(result, 0, "the batch settled");
    await Promise.all(held);
    assert.equal(device.mappings(1).length, 20);
    assert.equal(iommu.mappings(1).length, 28);
    await iommu.close();
  });

  Deno.test(`[${kind}] RequestBatch notifies once per ring-full, not once per request`, async () => {
    const { iommu, scripted } = await setup(kind);
    await iommu.attach(1, 0x08);
    const before = scripted.notifies[0];
    const batch = iommu.batch();
    for (let i = 0; i < 100; i++) batch.map(1, i * 0x1000, 0x100000, 0x1000, MAP_READ);
    await batch.submit();
    // 100 requests fit the 256-entry ring (indirect descriptors): one notification.
    assert.equal(scripted.notifies[0] - before, 1);
    await iommu.close();
  });

  Deno.test(`[${kind}] RequestBatch reports each device refusal and keeps records in step`, async () => {
    const { iommu, scripted, device } = await setup(kind);
    await iommu.attach(1, 0x08);
    await iommu.map(1, 0x9000, 0x9000, 0x1000, RW);
    // The device refuses the 2nd MAP (NOMEM) and the UNMAP (DEVERR); the rest pass.
    let maps = 0;
    scripted.script = (r) =>
      r.type === 3 && maps++ === 1
        ? { do: "status", status: 8 }
        : r.type === 4
        ? { do: "status", status: 3 }
        : { do: "pass" };
    const batch = iommu.batch();
    batch.map(1, 0x1000, 0x1000, 0x1000, RW);
    batch.map(1, 0x2000, 0x2000, 0x1000, RW);
    batch.unmap(1, 0x9000, 0x1000);
    batch.map(1, 0x3000, 0x3000, 0x1000, RW);
    assert.equal(await batch.submit(), 2);
    assert.deepEqual([0, 1, 2, 3].map((i) => batch.status(i)), ["OK", "NOMEM", "DEVERR", "OK"]);
    assert.ok(batch.error(1) instanceof IommuError);
    assert.equal(batch.error(0), null);
    const driver = iommu.mappings(1).map((m) => m.iova);
    const dev = device.mappings(1).map((m) => m.start);
    assert.deepEqual(driver, [0x1000n, 0x3000n, 0x9000n]);
    assert.deepEqual(dev, driver);
    await iommu.close();
  });

  Deno.test(`[${kind}] RequestBatch.map() refuses bad input at once, before anything is sent`, async () => {
    const { iommu, scripted } = await setup(kind);
    await iommu.attach(1, 0x08);
    const batch = iommu.batch();
    const notifies = scripted.notifies[0];
    assert.throws(
      () => batch.map(1, 0x1001, 0, 0x1000, RW),
      (e) => e instanceof IommuError && e.status === "DRIVER",
    );
    batch.map(1, 0x1000, 0, 0x1000, RW);
    assert.throws(() => batch.map(1, 0x1000, 0, 0x1000, RW), /overlaps/);
    assert.throws(() => batch.unmap(1, 0x800, 0x1000), /not aligned/);
    assert.throws(() => batch.map(1, 0x5000, 0, 0x1000, 0x40), /flags/);
    assert.equal(batch.length, 1);
    assert.equal(scripted.notifies[0], notifies);
    assert.equal(await batch.submit(), 0);
    assert.equal(scripted.notifies[0], notifies + 1);
    await iommu.close();
  });
}
