/** VirtioIommu reset() and close() on the mock, on every bus. */

import assert from "node:assert/strict";
import { MAP_READ } from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError } from "../driver/iommu/errors.ts";
import { BUSES, busTest, plug, setup } from "./_fixtures.ts";
import { DeviceInitError } from "../driver/virtio/init.ts";
import { VirtioIommu } from "../driver/iommu/device.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import type { Transport } from "../transport/transport.ts";
import { read, RW, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- Reset and close --------------------------------------------------------------------

  t(
    "VirtioIommu.reset() rejects requests in flight with DeviceResetError, then re-attaches and replays",
    () =>
      withIommu(kind, async ({ iommu, device, scripted }) => {
        await iommu.attach(1, 0x08);
        await iommu.attach(2, 0x10);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.map(2, 0x30000, 0x40000, 0x2000, MAP_READ);
        scripted.script = () => ({ do: "hold" });
        const inFlight = [
          iommu.map(1, 0x50000, 0x60000, 0x1000, RW),
          iommu.attach(3, 0x18),
        ];
        const settled = Promise.allSettled(inFlight);
        await new Promise((r) => setTimeout(r, 5));
        assert.equal(scripted.held.length, 2);
        scripted.script = null;
        await iommu.reset();
        for (const r of await settled) {
          assert.equal(r.status, "rejected");
          assert.ok(r.reason instanceof DeviceResetError, String(r.reason));
        }
        assert.equal(device.endpointDomain(0x08), 1);
        assert.equal(device.endpointDomain(0x10), 2);
        assert.equal(device.endpointDomain(0x18), null, "the rejected ATTACH is not replayed");
        // The rejected MAP is forgotten, the others are replayed.
        assert.deepEqual(device.mappings(1).map((m) => m.start), [0x10000n]);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x10000n]);
        assert.equal(read(device, 0x10, 0x31000n), 0x41000n);
        // And it works afterwards.
        await iommu.map(1, 0x70000, 0x80000, 0x1000, RW);
        assert.equal(device.mappings(1).length, 2);
      }),
  );

  t(
    "VirtioIommu.reset({reattach: false}) leaves endpoints unattached",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.reset({ reattach: false });
        assert.equal(device.endpointDomain(0x08), null);
        assert.deepEqual(device.domains(), []);
        await iommu.attach(1, 0x08);
        assert.equal(device.mappings(1).length, 1);
      }),
  );

  t("VirtioIommu.close() resets the device and every later call rejects", async () => {
    const f = await setup(kind);
    const { iommu, core, memory } = f;
    await iommu.attach(1, 0x08);
    await iommu.close();
    assert.equal(core.status, 0);
    assert.equal(memory.allocated, 0, "all DMA memory is freed");
    const calls: Array<() => Promise<unknown>> = [
      () => iommu.attach(1, 0x10),
      () => iommu.attach(1, 0x08), // already attached: still refused once closed
      () => iommu.detach(1, 0x08),
      () => iommu.map(1, 0x1000, 0x1000, 0x1000, RW),
      () => iommu.unmap(1, 0x1000, 0x1000),
      () => iommu.probe(0x08),
      () => iommu.reset(),
    ];
    for (const call of calls) {
      await assert.rejects(async () => await call(), (e: unknown) => e instanceof IommuError);
    }
    assert.throws(() => iommu.setBypass(true), IommuError);
    await iommu.close(); // twice is fine
    assert.deepEqual(core.violations, []);
  });

  t(
    "VirtioIommu.close() keeps its DMA memory when the device never acknowledges the reset",
    async () => {
      const memory = new SimulatedMemory();
      const { transport } = plug(kind, new MockIommuDevice({ endpoints: [{ id: 8 }] }), memory);
      // The device ignores the reset write: it could still use the rings (§2.4.1).
      let stuck = false;
      const wrapped: Transport = {
        kind: transport.kind,
        deviceId: transport.deviceId,
        getStatus: () => transport.getStatus(),
        setStatus: (status) => {
          if (!(stuck && status === 0)) transport.setStatus(status);
        },
        readDeviceFeatures: () => transport.readDeviceFeatures(),
        writeDriverFeatures: (f) => transport.writeDriverFeatures(f),
        configGeneration: () => transport.configGeneration(),
        readConfig8: (o) => transport.readConfig8(o),
        readConfig16: (o) => transport.readConfig16(o),
        readConfig32: (o) => transport.readConfig32(o),
        writeConfig8: (o, v) => transport.writeConfig8(o, v),
        maxQueueSize: (i) => transport.maxQueueSize(i),
        enableQueue: (i, size, a) => transport.enableQueue(i, size, a),
        notify: (i) => transport.notify(i),
        resetQueue: (i) => transport.resetQueue(i),
        queueResetPending: (i) => transport.queueResetPending(i),
        queueEnabled: (i) => transport.queueEnabled(i),
        takeInterrupt: () => transport.takeInterrupt(),
      };
      const iommu = await VirtioIommu.create(wrapped, memory);
      await iommu.attach(1, 8);
      const held = memory.allocated;
      stuck = true;
      const e = await iommu.close().then(() => null, (error: unknown) => error);
      assert.ok(e instanceof DeviceInitError && e.step === "reset", String(e));
      assert.equal(memory.allocated, held, "nothing freed while the device may still write");
      await assert.rejects(iommu.attach(1, 8), IommuError);
    },
  );
}
