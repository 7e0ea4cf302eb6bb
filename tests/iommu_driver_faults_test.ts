/** VirtioIommu bypass and fault reporting on the mock, on every bus. */

import assert from "node:assert/strict";
import { IommuError } from "../driver/iommu/errors.ts";
import { VIRTIO_IOMMU_F_BYPASS_CONFIG } from "../spec/iommu.ts";
import { QEMU_IOMMU_FEATURES } from "../mock/iommu/options.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { read, RW, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- Bypass -----------------------------------------------------------------------------

  t(
    "VirtioIommu.setBypass() switches how the mock treats unattached endpoints",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        assert.equal(iommu.readBypass(), 1);
        assert.equal(read(device, 0x10, 0x5000n), 0x5000n);
        iommu.setBypass(false);
        assert.equal(device.bypass, false);
        assert.equal(iommu.readBypass(), 0);
        assert.equal(read(device, 0x10, 0x5000n), "DOMAIN");
        iommu.setBypass(true);
        assert.equal(device.bypass, true);
        assert.equal(read(device, 0x10, 0x5000n), 0x5000n);
        await Promise.resolve();
      }),
  );

  t(
    "VirtioIommu.setBypass() without BYPASS_CONFIG throws DRIVER and writes nothing",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        assert.throws(() => iommu.setBypass(false), (e: unknown) => {
          assert.ok(e instanceof IommuError);
          assert.equal(e.status, "DRIVER");
          return true;
        });
        assert.equal(iommu.readBypass(), null);
        assert.equal(device.bypass, true);
        await Promise.resolve();
      }, { features: QEMU_IOMMU_FEATURES & ~(1n << VIRTIO_IOMMU_F_BYPASS_CONFIG) }),
  );

  // ---- Faults -----------------------------------------------------------------------------

  t(
    "VirtioIommu.takeFaults() reports a MAPPING fault with its address after unmap",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        assert.equal(read(device, 0x08, 0x10010n), 0x20010n);
        await iommu.unmap(1, 0x10000, 0x1000);
        assert.equal(device.translate(0x08, 0x10010n, "write").ok, false);
        assert.deepEqual(iommu.takeFaults(), [
          { reason: "MAPPING", read: false, write: true, endpoint: 8, address: 0x10010n },
        ]);
        assert.deepEqual(iommu.takeFaults(), [], "faults are taken once");
      }),
  );

  t(
    "VirtioIommu reports a DOMAIN fault for an unattached endpoint with bypass 0",
    () =>
      withIommu(kind, ({ iommu, device }) => {
        iommu.setBypass(false);
        assert.equal(read(device, 0x18, 0xabc000n), "DOMAIN");
        const faults = iommu.takeFaults();
        assert.deepEqual(faults, [
          { reason: "DOMAIN", read: true, write: false, endpoint: 0x18, address: 0xabc000n },
        ]);
      }),
  );

  t(
    "VirtioIommu.onFault() calls listeners until they unsubscribe",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        iommu.setBypass(false);
        const seen: bigint[] = [];
        const off = iommu.onFault((e) => seen.push(e.address ?? -1n));
        device.translate(0x08, 0x1000n, "read");
        device.translate(0x08, 0x2000n, "read");
        iommu.pollEvents();
        assert.deepEqual(seen, [0x1000n, 0x2000n]);
        off();
        device.translate(0x08, 0x3000n, "read");
        assert.equal(iommu.pollEvents(), 1);
        assert.deepEqual(seen, [0x1000n, 0x2000n]);
        await Promise.resolve();
      }),
  );

  t(
    "VirtioIommu.nextFault() resolves null on timeout and the fault when one comes",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        iommu.setBypass(false);
        const started = performance.now();
        assert.equal(await iommu.nextFault(20), null);
        assert.ok(performance.now() - started >= 19);
        const timer = setTimeout(() => device.translate(0x08, 0x7000n, "write"), 5);
        const event = await iommu.nextFault(2000);
        clearTimeout(timer);
        assert.equal(event?.address, 0x7000n);
        assert.equal(event?.reason, "DOMAIN");
      }),
  );

  t(
    "VirtioIommu re-posts event buffers: 40 faults through an 8-entry event queue",
    () =>
      withIommu(kind, ({ iommu, device }) => {
        assert.equal(iommu.info.eventQueueSize, 8);
        iommu.setBypass(false);
        const got: bigint[] = [];
        for (let round = 0; round < 5; round++) {
          for (let i = 0; i < 8; i++) device.translate(0x08, BigInt(round * 8 + i) << 12n, "read");
          for (const f of iommu.takeFaults()) got.push(f.address ?? -1n);
        }
        assert.equal(got.length, 40);
        assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => BigInt(i) << 12n));
        assert.equal(device.faultsDropped, 0);
      }, { queueSizes: [8, 8] }),
  );

  t(
    "VirtioIommu delivers faults the device held while the event queue was full",
    () =>
      withIommu(kind, ({ iommu, device }) => {
        iommu.setBypass(false);
        for (let i = 0; i < 20; i++) device.translate(0x08, BigInt(i) << 12n, "read");
        assert.equal(device.faultsPending, 12);
        const got: bigint[] = [];
        for (let i = 0; i < 10 && got.length < 20; i++) {
          for (const f of iommu.takeFaults()) got.push(f.address ?? -1n);
        }
        assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => BigInt(i) << 12n));
        assert.equal(device.faultsDropped, 0);
      }, { queueSizes: [8, 8], eventOverflow: "wait" }),
  );
}
