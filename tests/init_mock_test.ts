/** Device initialisation over the mock through both transports, whose core records violations. */

import assert from "node:assert/strict";
import { beginInit, DeviceInitError, finishInit } from "../driver/virtio/init.ts";
import { STATUS_FAILED } from "../spec/status.ts";
import { IommuConfigError } from "../driver/iommu/config.ts";
import { VirtioIommu } from "../driver/iommu/device.ts";
import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { QEMU_IOMMU_FEATURES } from "../mock/iommu/options.ts";
import { KINDS, plug } from "./_fixtures.ts";
import { ACK, DOK, DRV, FOK, V1 } from "./_init.ts";

// ---- Over the mock device, through both transports ------------------------------------------

for (const kind of KINDS) {
  Deno.test(`[${kind}] beginInit()/finishInit() on the mock leave no violations`, async () => {
    const memory = new SimulatedMemory();
    const { transport, core } = plug(kind, new MockIommuDevice(), memory);
    // The mock's stale reads return the status from before the reset; give it a non-zero one so
    // that a driver that does not wait for the reset is caught (see the report on resetReads).
    transport.setStatus(ACK);
    core.faults.resetReads = 3; // the driver must wait for the reset
    const negotiated = await beginInit(transport, { supported: QEMU_IOMMU_FEATURES });
    finishInit(transport);
    assert.equal(negotiated, QEMU_IOMMU_FEATURES);
    assert.equal(core.negotiated, QEMU_IOMMU_FEATURES);
    assert.equal(core.status, ACK | DRV | FOK | DOK);
    assert.deepEqual(core.violations, []);
    // A second init (reset while running) is just as clean.
    core.faults.resetReads = 2;
    await beginInit(transport, { supported: V1 | 4n });
    finishInit(transport);
    assert.equal(core.negotiated, V1 | 4n);
    assert.deepEqual(core.violations, []);
  });

  Deno.test(`[${kind}] beginInit() on a mock that refuses FEATURES_OK sets FAILED`, async () => {
    const { transport, core } = plug(kind, new MockIommuDevice(), new SimulatedMemory());
    core.faults.refuseFeatures = true;
    await assert.rejects(
      beginInit(transport, { supported: QEMU_IOMMU_FEATURES }),
      (e: unknown) => e instanceof DeviceInitError && e.step === "features-ok",
    );
    assert.equal(core.status & STATUS_FAILED, STATUS_FAILED);
    assert.equal(core.status & DOK, 0);
    assert.deepEqual(core.violations, []);
  });

  Deno.test(`[${kind}] beginInit() on a mock without VERSION_1 fails before FEATURES_OK`, async () => {
    const device = new MockIommuDevice({ features: QEMU_IOMMU_FEATURES & ~V1 });
    const { transport, core } = plug(kind, device, new SimulatedMemory());
    await assert.rejects(
      beginInit(transport, { supported: QEMU_IOMMU_FEATURES }),
      (e: unknown) => e instanceof DeviceInitError && e.step === "features",
    );
    assert.equal(core.status & STATUS_FAILED, STATUS_FAILED);
    assert.equal(core.status & FOK, 0);
    assert.deepEqual(core.violations, []);
  });

  Deno.test(`[${kind}] the mock records notify before DRIVER_OK`, async () => {
    const memory = new SimulatedMemory();
    const { transport, core } = plug(kind, new MockIommuDevice(), memory);
    await beginInit(transport, { supported: QEMU_IOMMU_FEATURES });
    const vq = new SplitVirtqueue(0, 8, memory, { eventIdx: false, indirect: false });
    transport.enableQueue(0, 8, vq.addresses);
    assert.deepEqual(core.violations, []);
    transport.notify(0);
    assert.equal(core.violations.length, 1);
    assert.match(core.violations[0], /before DRIVER_OK/);
  });

  Deno.test(`[${kind}] the mock records features written after FEATURES_OK`, async () => {
    const { transport, core } = plug(kind, new MockIommuDevice(), new SimulatedMemory());
    await beginInit(transport, { supported: QEMU_IOMMU_FEATURES });
    transport.writeDriverFeatures(V1);
    assert.ok(core.violations.length >= 1);
    assert.match(core.violations[0], /driver features written/);
    // Negotiation is not changed by the late write.
    assert.equal(core.negotiated, QEMU_IOMMU_FEATURES);
  });

  Deno.test(`[${kind}] the mock records a cleared status bit and DRIVER without ACKNOWLEDGE`, () => {
    const { transport, core } = plug(kind, new MockIommuDevice(), new SimulatedMemory());
    transport.setStatus(0);
    transport.setStatus(DRV);
    assert.match(core.violations[0], /DRIVER set without ACKNOWLEDGE/);
    core.clearViolations();
    transport.setStatus(0);
    transport.setStatus(ACK);
    transport.setStatus(ACK | DRV);
    transport.setStatus(ACK);
    assert.equal(core.violations.length, 1);
    assert.match(core.violations[0], /cleared status bit/);
  });

  Deno.test(`[${kind}] the mock records a status write before the reset read back 0`, () => {
    const { transport, core } = plug(kind, new MockIommuDevice(), new SimulatedMemory());
    core.faults.resetReads = 2;
    transport.setStatus(ACK); // something for a slow reset to leave visible
    core.clearViolations();
    transport.setStatus(0);
    transport.setStatus(ACK); // without waiting
    assert.equal(core.violations.length, 1);
    assert.match(core.violations[0], /before a read returned 0/);
  });

  Deno.test(`[${kind}] the mock refuses FEATURES_OK for a feature it did not offer`, () => {
    const device = new MockIommuDevice({ features: V1 | 4n });
    const { transport, core } = plug(kind, device, new SimulatedMemory());
    transport.setStatus(0);
    transport.setStatus(ACK);
    transport.setStatus(ACK | DRV);
    transport.writeDriverFeatures(V1 | 4n | 1n);
    transport.setStatus(ACK | DRV | FOK);
    assert.equal(transport.getStatus() & FOK, 0);
    assert.match(core.violations[0], /did not offer/);
  });

  Deno.test(`[${kind}] VirtioIommu.create() refuses a device without MAP_UNMAP and sets FAILED`, async () => {
    const device = new MockIommuDevice({ features: QEMU_IOMMU_FEATURES & ~4n });
    const memory = new SimulatedMemory();
    const { transport, core } = plug(kind, device, memory);
    await assert.rejects(
      VirtioIommu.create(transport, memory),
      (e: unknown) => e instanceof DeviceInitError && e.step === "features",
    );
    assert.equal(core.status & STATUS_FAILED, STATUS_FAILED);
    assert.deepEqual(core.violations, []);
  });

  Deno.test(`[${kind}] VirtioIommu.create() refuses page_size_mask 0 and sets FAILED`, async () => {
    const device = new MockIommuDevice({ pageSizeMask: 0n });
    const memory = new SimulatedMemory();
    const { transport, core } = plug(kind, device, memory);
    await assert.rejects(VirtioIommu.create(transport, memory), IommuConfigError);
    assert.equal(core.status & STATUS_FAILED, STATUS_FAILED);
    assert.equal(core.status & DOK, 0);
  });

  Deno.test(`[${kind}] VirtioIommu.create() on a good device leaves no violations`, async () => {
    const memory = new SimulatedMemory();
    const { transport, core } = plug(kind, new MockIommuDevice(), memory);
    transport.setStatus(ACK);
    core.faults.resetReads = 4;
    const iommu = await VirtioIommu.create(transport, memory);
    assert.equal(core.status, ACK | DRV | FOK | DOK);
    assert.deepEqual(core.violations, []);
    await iommu.close();
    assert.equal(core.status, 0);
    assert.deepEqual(core.violations, []);
  });
}
