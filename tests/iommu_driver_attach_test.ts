/** VirtioIommu attach(), detach() and domains (replay, allocation) on the mock, on every bus. */

import assert from "node:assert/strict";
import { MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import { VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_T_ATTACH } from "../spec/iommu.ts";
import { QEMU_IOMMU_FEATURES } from "../mock/iommu/options.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { read, refused, rejectsWith, RW, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- ATTACH -----------------------------------------------------------------------------

  t(
    "VirtioIommu.attach() OK: the mock attaches the endpoint",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        assert.equal(device.endpointDomain(0x08), 1);
        assert.deepEqual(iommu.domains(), [{ id: 1, bypass: false, endpoints: [8], mappings: 0 }]);
        // Attaching to the same domain again is harmless.
        await iommu.attach(1, 0x08);
        assert.equal(device.endpointDomain(0x08), 1);
      }),
  );

  t(
    "VirtioIommu.attach() of an unknown endpoint rejects with NOENT and records nothing",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        const e = await rejectsWith(iommu.attach(1, 0x99), "NOENT");
        assert.equal(e.code, 6);
        assert.deepEqual(device.domains(), []);
        assert.ok(iommu.domains().every((d) => d.endpoints.length === 0));
      }),
  );

  t(
    "VirtioIommu.attach() refuses a bypass mismatch with a domain it knows (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await refused(f, () => f.iommu.attach(1, 0x10, { bypass: true }));
        await f.iommu.attach(2, 0x10, { bypass: true });
        await refused(f, () => f.iommu.attach(2, 0x18));
        assert.equal(f.device.endpointDomain(0x18), null);
      }),
  );

  t(
    "VirtioIommu.attach() surfaces the mock's INVAL for a bypass mismatch the driver did not see",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        // Flip ATTACH_F_BYPASS on the wire: the device sees a bypass ATTACH to a mapped domain.
        const original = f.device.handle.bind(f.device);
        f.device.handle = (chain) => {
          const seg = chain.readable[0];
          if (f.memory.bytes[seg.offset] === VIRTIO_IOMMU_T_ATTACH) {
            f.memory.bytes[seg.offset + 12] |= 1; // flags
          }
          return original(chain);
        };
        await rejectsWith(f.iommu.attach(1, 0x10), "INVAL");
        assert.equal(f.device.endpointDomain(0x10), null);
        assert.deepEqual(f.iommu.domains()[0].endpoints, [8], "a failed ATTACH changes nothing");
      }),
  );

  t(
    "VirtioIommu.attach() refuses a domain outside domain_range (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await refused(f, () => f.iommu.attach(0, 0x08));
        await refused(f, () => f.iommu.attach(11, 0x08));
        await refused(f, () => f.iommu.attach(-1, 0x08));
        await refused(f, () => f.iommu.attach(1.5, 0x08));
        await f.iommu.attach(10, 0x08);
        assert.equal(f.device.endpointDomain(0x08), 10);
      }, { domainRange: { start: 1, end: 10 } }),
  );

  t(
    "VirtioIommu.attach() surfaces the mock's RANGE for a domain outside its domain_range",
    () =>
      withIommu(kind, async (f) => {
        // The driver itself never sends such a domain: rewrite it on the wire, as a bug would.
        const original = f.device.handle.bind(f.device);
        f.device.handle = (chain) => {
          const seg = chain.readable[0];
          if (f.memory.bytes[seg.offset] === VIRTIO_IOMMU_T_ATTACH) {
            f.memory.view.setUint32(seg.offset + 4, 1000, true);
          }
          return original(chain);
        };
        await rejectsWith(f.iommu.attach(5, 0x08), "RANGE");
        f.core.clearViolations(); // the mock rightly recorded the out-of-range ATTACH
      }, { domainRange: { start: 1, end: 10 } }),
  );

  t(
    "VirtioIommu.attach() moves an endpoint between domains (implicit detach)",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.attach(2, 0x08);
        assert.equal(device.endpointDomain(0x08), 2);
        // Domain 1 lost its last endpoint: the device destroyed it.
        assert.deepEqual(device.domains().map((d) => d.id), [2]);
        const d = iommu.domains();
        assert.deepEqual(d.find((x) => x.id === 1)?.endpoints, []);
        assert.equal(d.find((x) => x.id === 1)?.mappings, 1, "the driver keeps the mappings");
        assert.deepEqual(d.find((x) => x.id === 2)?.endpoints, [8]);
        // Back to domain 1: its mapping is replayed.
        await iommu.attach(1, 0x08);
        assert.equal(device.mappings(1).length, 1);
        assert.equal(read(device, 0x08, 0x10010n), 0x20010n);
      }),
  );

  t(
    "VirtioIommu.attach() refuses ATTACH_F_BYPASS without BYPASS_CONFIG (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await refused(f, () => f.iommu.attach(1, 0x08, { bypass: true }));
      }, { features: QEMU_IOMMU_FEATURES & ~(1n << VIRTIO_IOMMU_F_BYPASS_CONFIG) }),
  );

  // ---- DETACH -----------------------------------------------------------------------------

  t(
    "VirtioIommu.detach() OK: the domain disappears on the device, the driver keeps mappings",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x2000, RW);
        await iommu.detach(1, 0x08);
        assert.equal(device.endpointDomain(0x08), null);
        assert.deepEqual(device.domains(), []);
        assert.deepEqual(device.mappings(1), []);
        assert.equal(iommu.mappings(1).length, 1);
      }),
  );

  t(
    "VirtioIommu.detach() of an unknown endpoint rejects with NOENT",
    () =>
      withIommu(kind, async ({ iommu }) => {
        await iommu.attach(1, 0x08);
        await rejectsWith(iommu.detach(1, 0x99), "NOENT");
      }),
  );

  t(
    "VirtioIommu.detach() from the wrong domain rejects with INVAL and changes nothing",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await rejectsWith(iommu.detach(2, 0x08), "INVAL");
        await rejectsWith(iommu.detach(1, 0x10), "INVAL"); // 0x10 is not attached at all
        assert.equal(device.endpointDomain(0x08), 1);
        assert.deepEqual(iommu.domains()[0].endpoints, [8]);
      }),
  );

  // ---- Domains ----------------------------------------------------------------------------

  t(
    "VirtioIommu re-attaching an emptied domain replays its mappings",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.map(1, 0x1_0000_0000n, 0x30000, 0x4000, MAP_READ);
        await iommu.map(1, 0x50000, 0x90000, 0x2000, MAP_WRITE);
        const expected = device.mappings(1);
        assert.equal(expected.length, 3);
        await iommu.detach(1, 0x08);
        assert.deepEqual(device.mappings(1), []);
        assert.equal(read(device, 0x08, 0x10000n), 0x10000n, "unattached + bypass 1 = identity");
        await iommu.attach(1, 0x10);
        assert.deepEqual(device.mappings(1), expected);
        assert.equal(read(device, 0x10, 0x1_0000_3000n), 0x33000n);
      }),
  );

  t(
    "VirtioIommu.allocateDomain() stays inside domain_range and runs out cleanly",
    () =>
      withIommu(kind, async ({ iommu }) => {
        const ids = new Set<number>();
        for (let i = 0; i < 6; i++) ids.add(iommu.allocateDomain());
        assert.deepEqual([...ids].sort((a, b) => a - b), [5, 6, 7, 8, 9, 10]);
        assert.throws(() => iommu.allocateDomain(), (e: unknown) => {
          assert.ok(e instanceof IommuError);
          assert.equal(e.status, "DRIVER");
          return true;
        });
        // A mapping recorded in 7 (no endpoint yet) goes with it: the new 7 starts empty.
        await iommu.map(7, 0x1000, 0x2000, 0x1000, MAP_READ);
        assert.equal(iommu.mappings(7).length, 1);
        assert.equal(iommu.freeDomain(7), true);
        assert.equal(iommu.allocateDomain(), 7);
        assert.deepEqual(iommu.mappings(7), []);
        await iommu.map(7, 0x1000, 0x2000, 0x1000, MAP_READ);
        await iommu.attach(7, 0x08);
        assert.equal(iommu.freeDomain(7), false, "a domain with endpoints is not freed");
      }, { domainRange: { start: 5, end: 10 } }),
  );
}
