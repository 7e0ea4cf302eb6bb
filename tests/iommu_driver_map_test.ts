/** VirtioIommu map() and unmap() on the mock, on every bus: each outcome, the driver's refusals. */

import assert from "node:assert/strict";
import { MAP_MMIO, MAP_READ } from "../driver/iommu/device.ts";
import {
  MAP_VIRT_START,
  UNMAP_VIRT_END,
  VIRTIO_IOMMU_F_MMIO,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_UNMAP,
} from "../spec/iommu.ts";
import { QEMU_IOMMU_FEATURES } from "../mock/iommu/options.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { MSI_END, MSI_START, read, refused, rejectsWith, RW, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- MAP --------------------------------------------------------------------------------

  t(
    "VirtioIommu.map() OK: the mock translates through the mapping",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x3000, MAP_READ);
        assert.deepEqual(device.mappings(1), [
          { start: 0x10000n, end: 0x12fffn, phys: 0x20000n, flags: MAP_READ },
        ]);
        assert.deepEqual(iommu.mappings(1), [
          { iova: 0x10000n, last: 0x12fffn, phys: 0x20000n, flags: MAP_READ },
        ]);
        assert.equal(read(device, 0x08, 0x12ffcn), 0x22ffcn);
        // READ only: a write faults.
        assert.equal(device.translate(0x08, 0x10000n, "write").ok, false);
        assert.equal(iommu.iovaToPhys(1, 0x11008), 0x21008n);
        assert.equal(iommu.iovaToPhys(1, 0x13000), null);
      }),
  );

  t(
    "VirtioIommu.map() takes 64-bit bigint addresses",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        const iova = 0xffff_ffff_ffff_0000n;
        await iommu.map(1, iova, 0x1234_5678_9000n, 0x10000n, RW);
        assert.deepEqual(device.mappings(1), [
          { start: iova, end: 0xffff_ffff_ffff_ffffn, phys: 0x1234_5678_9000n, flags: RW },
        ]);
        assert.equal(read(device, 0x08, 0xffff_ffff_ffff_fff8n), 0x1234_5679_8ff8n);
      }),
  );

  t(
    "VirtioIommu.map() on a domain unknown to the driver is sent and rejects with NOENT",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        const before = device.requestsHandled;
        await rejectsWith(iommu.map(7, 0x1000, 0x1000, 0x1000, RW), "NOENT");
        assert.equal(device.requestsHandled, before + 1);
        assert.deepEqual(iommu.mappings(7), []);
      }),
  );

  t(
    "VirtioIommu.map() refuses bad alignment, zero size and wrap-around (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        const { iommu } = f;
        await iommu.attach(1, 0x08);
        await refused(f, () => iommu.map(1, 0x1001, 0x1000, 0x1000, RW));
        await refused(f, () => iommu.map(1, 0x1000, 0x1800, 0x1000, RW));
        await refused(f, () => iommu.map(1, 0x1000, 0x1000, 0x800, RW));
        await refused(f, () => iommu.map(1, 0x1000, 0x1000, 0, RW));
        await refused(f, () => iommu.map(1, 0xffff_ffff_ffff_f000n, 0x1000, 0x2000, RW));
        await refused(f, () => iommu.map(1, 0x1000, 0xffff_ffff_ffff_f000n, 0x2000, RW));
        assert.deepEqual(iommu.mappings(1), []);
        // Bad argument values are refused before sending too, with the same class.
        await refused(f, () => iommu.map(1, -4096, 0x1000, 0x1000, RW));
        await refused(f, () => iommu.map(1, 2 ** 53 + 4096, 0x1000, 0x1000, RW));
        await refused(f, () => iommu.map(1, 0x1000, 0x1000, 0x1000, 0x10));
        // The very last page is fine.
        await iommu.map(1, 0xffff_ffff_ffff_f000n, 0x1000, 0x1000, RW);
        assert.equal(f.device.mappings(1).length, 1);
      }),
  );

  t(
    "VirtioIommu.map() honours the granule (page_size_mask 0x10000)",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        const e = await refused(f, () => f.iommu.map(1, 0x1000, 0x10000, 0x10000, RW));
        assert.match(e.message, /0x10000/);
        await refused(f, () => f.iommu.map(1, 0x10000, 0x10000, 0x1000, RW));
        await f.iommu.map(1, 0x20000, 0x10000, 0x20000, RW);
        assert.equal(f.device.mappings(1).length, 1);
      }, { pageSizeMask: 0xffff_ffff_ffff_0000n }),
  );

  t(
    "VirtioIommu.map() refuses iovas outside input_range (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await refused(f, () => f.iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        await refused(f, () => f.iommu.map(1, 0xfff000, 0x1000, 0x2000, RW));
        await f.iommu.map(1, 0x10000, 0x1000, 0x1000, RW);
        await f.iommu.map(1, 0xfff000, 0x1000, 0x1000, RW);
        assert.equal(f.device.mappings(1).length, 2);
      }, { inputRange: { start: 0x10000n, end: 0xffffffn } }),
  );

  t(
    "VirtioIommu.map() refuses a domain outside domain_range (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await refused(f, () => f.iommu.map(11, 0x1000, 0x1000, 0x1000, RW));
        await refused(f, () => f.iommu.unmap(0, 0x1000, 0x1000));
      }, { domainRange: { start: 1, end: 10 } }),
  );

  t(
    "VirtioIommu.map() refuses MAP_MMIO without F_MMIO (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await refused(f, () => f.iommu.map(1, 0x1000, 0x1000, 0x1000, MAP_MMIO | RW));
      }, { features: QEMU_IOMMU_FEATURES & ~(1n << VIRTIO_IOMMU_F_MMIO) }),
  );

  t(
    "VirtioIommu.map() sends MAP_MMIO when F_MMIO is negotiated",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x1000, 0x1000, 0x1000, MAP_MMIO | RW);
        assert.equal(device.mappings(1)[0].flags, MAP_MMIO | RW);
      }),
  );

  t(
    "VirtioIommu.map() refuses an overlap with an existing mapping (DRIVER)",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await f.iommu.map(1, 0x10000, 0x20000, 0x4000, RW);
        await refused(f, () => f.iommu.map(1, 0x13000, 0x50000, 0x2000, RW));
        await refused(f, () => f.iommu.map(1, 0xf000, 0x50000, 0x2000, RW));
        await f.iommu.map(1, 0x14000, 0x50000, 0x1000, RW); // adjacent is fine
        assert.equal(f.device.mappings(1).length, 2);
      }),
  );

  t(
    "VirtioIommu.map() surfaces the mock's INVAL for an overlap the driver did not see",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await f.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        const original = f.device.handle.bind(f.device);
        f.device.handle = (chain) => {
          const seg = chain.readable[0];
          if (f.memory.bytes[seg.offset] === VIRTIO_IOMMU_T_MAP) {
            f.memory.view.setUint32(seg.offset + MAP_VIRT_START, 0x10000, true);
            f.memory.view.setUint32(seg.offset + MAP_VIRT_START + 8, 0x10fff, true);
          }
          return original(chain);
        };
        await rejectsWith(f.iommu.map(1, 0x30000, 0x1000, 0x1000, RW), "INVAL");
        // The driver took back its record of the failed mapping.
        assert.deepEqual(f.iommu.mappings(1).map((m) => m.iova), [0x10000n]);
      }),
  );

  t(
    "VirtioIommu.map() surfaces the mock's RANGE for an unaligned MAP on the wire",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        const original = f.device.handle.bind(f.device);
        f.device.handle = (chain) => {
          const seg = chain.readable[0];
          if (f.memory.bytes[seg.offset] === VIRTIO_IOMMU_T_MAP) {
            f.memory.bytes[seg.offset + MAP_VIRT_START] = 0x10; // virt_start 0x…010
          }
          return original(chain);
        };
        await rejectsWith(f.iommu.map(1, 0x30000, 0x1000, 0x1000, RW), "RANGE");
        assert.deepEqual(f.iommu.mappings(1), []);
      }),
  );

  t(
    "VirtioIommu.map() after probe() refuses a reserved region (DRIVER); without probe the mock says INVAL",
    () =>
      withIommu(kind, async (f) => {
        const { iommu } = f;
        await iommu.attach(1, 0x08);
        // Not probed yet: the driver does not know the MSI region, the device refuses.
        await rejectsWith(iommu.map(1, MSI_START, MSI_START, 0x1000, RW), "INVAL");
        assert.deepEqual(iommu.mappings(1), []);
        await iommu.probe(0x08);
        await refused(f, () => iommu.map(1, MSI_START - 0x1000n, 0x1000, 0x2000, RW));
        await refused(f, () => iommu.map(1, MSI_END - 0xfffn, 0x1000, 0x1000, RW));
        await iommu.map(1, MSI_END + 1n, 0x1000, 0x1000, RW);
        // The MSI doorbell is identity-mapped by the device.
        assert.equal(read(f.device, 0x08, MSI_START + 4n), MSI_START + 4n);
      }),
  );

  t(
    "VirtioIommu.map() on a domain with no endpoint records it without sending; attach sends it",
    () =>
      withIommu(kind, async ({ iommu, device, scripted }) => {
        const d = iommu.allocateDomain();
        const before = device.requestsHandled;
        const notifies = scripted.notifies[0];
        await iommu.map(d, 0x10000, 0x20000, 0x1000, RW);
        await iommu.map(d, 0x40000, 0x50000, 0x2000, MAP_READ);
        assert.equal(device.requestsHandled, before);
        assert.equal(scripted.notifies[0], notifies);
        assert.deepEqual(device.mappings(d), []);
        assert.equal(iommu.mappings(d).length, 2);
        await iommu.attach(d, 0x10);
        assert.deepEqual(device.mappings(d), [
          { start: 0x10000n, end: 0x10fffn, phys: 0x20000n, flags: RW },
          { start: 0x40000n, end: 0x41fffn, phys: 0x50000n, flags: MAP_READ },
        ]);
        assert.equal(read(device, 0x10, 0x41000n), 0x51000n);
      }),
  );

  t(
    "VirtioIommu.map({split}) uses the page sizes of page_size_mask 0x40201000",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        const iova = 0x3fdff000n;
        const off = 0x1_0000_0000n;
        const size = 0x1000n + 0x200000n + 0x40000000n + 0x1000n;
        await iommu.map(1, iova, iova + off, size, RW, { split: true });
        const got = device.mappings(1).map((m) => [m.start, m.end - m.start + 1n, m.phys]);
        assert.deepEqual(got, [
          [0x3fdff000n, 0x1000n, 0x3fdff000n + off],
          [0x3fe00000n, 0x200000n, 0x3fe00000n + off],
          [0x40000000n, 0x40000000n, 0x40000000n + off],
          [0x80000000n, 0x1000n, 0x80000000n + off],
        ]);
        assert.equal(iommu.mappings(1).length, 4);
        // phys aligned only to 4 KiB: 2 MiB of 4 KiB pages.
        await iommu.map(1, 0x1_0020_0000n, 0x1000n, 0x200000n, RW, { split: true });
        assert.equal(device.mappings(1).length, 4 + 512);
        // Without split: one MAP.
        await iommu.map(1, 0x2_0000_0000n, 0, 0x400000n, RW);
        assert.equal(device.mappings(1).length, 4 + 512 + 1);
      }, { pageSizeMask: 0x40201000n }),
  );

  t("VirtioIommu.map() refuses a bypass domain (DRIVER)", () =>
    withIommu(kind, async (f) => {
      await f.iommu.attach(3, 0x08, { bypass: true });
      await refused(f, () => f.iommu.map(3, 0x1000, 0x1000, 0x1000, RW));
      await refused(f, () => f.iommu.unmap(3, 0x1000, 0x1000));
      // Translation through a bypass domain is the identity.
      const r = f.device.translate(0x08, 0x1234_5678n, "write");
      assert.ok(r.ok);
      assert.equal(r.address, 0x1234_5678n);
    }));

  // ---- UNMAP ------------------------------------------------------------------------------

  t(
    "VirtioIommu.unmap() OK removes every mapping inside the range",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.map(1, 0x11000, 0x30000, 0x2000, RW);
        await iommu.map(1, 0x20000, 0x40000, 0x1000, RW);
        await iommu.unmap(1, 0x10000, 0x3000);
        assert.deepEqual(device.mappings(1).map((m) => m.start), [0x20000n]);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x20000n]);
        // A range with nothing in it is fine too.
        await iommu.unmap(1, 0x100000, 0x1000);
      }),
  );

  t(
    "VirtioIommu.unmap() refuses to split a mapping (DRIVER), nothing removed",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await f.iommu.map(1, 0x10000, 0x20000, 0x2000, RW);
        await refused(f, () => f.iommu.unmap(1, 0x10000, 0x1000));
        await refused(f, () => f.iommu.unmap(1, 0x11000, 0x4000));
        assert.equal(f.device.mappings(1).length, 1);
        assert.equal(f.iommu.mappings(1).length, 1);
      }),
  );

  t(
    "VirtioIommu.unmap() surfaces the mock's RANGE for a split it did not see; nothing removed",
    () =>
      withIommu(kind, async (f) => {
        await f.iommu.attach(1, 0x08);
        await f.iommu.map(1, 0x10000, 0x20000, 0x2000, RW);
        const original = f.device.handle.bind(f.device);
        f.device.handle = (chain) => {
          const seg = chain.readable[0];
          if (f.memory.bytes[seg.offset] === VIRTIO_IOMMU_T_UNMAP) {
            f.memory.view.setUint32(seg.offset + UNMAP_VIRT_END, 0x10fff, true);
          }
          return original(chain);
        };
        await rejectsWith(f.iommu.unmap(1, 0x10000, 0x2000), "RANGE");
        assert.equal(f.device.mappings(1).length, 1, "atomic UNMAP: nothing removed");
      }),
  );

  t(
    "VirtioIommu.unmap() on a domain unknown to the driver rejects with NOENT",
    () =>
      withIommu(kind, async ({ iommu }) => {
        await rejectsWith(iommu.unmap(77, 0x1000, 0x1000), "NOENT");
      }),
  );

  t(
    "VirtioIommu.unmap() on a domain with no endpoint only updates the records",
    () =>
      withIommu(kind, async ({ iommu, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await iommu.map(1, 0x20000, 0x20000, 0x1000, RW);
        await iommu.detach(1, 0x08);
        const before = device.requestsHandled;
        await iommu.unmap(1, 0x10000, 0x1000);
        assert.equal(device.requestsHandled, before);
        await iommu.attach(1, 0x08);
        assert.deepEqual(device.mappings(1).map((m) => m.start), [0x20000n]);
      }),
  );
}
