/** VirtioIommu probe() on the mock, on every bus: reserved regions, NOENT, one call at a time. */

import assert from "node:assert/strict";
import { VIRTIO_IOMMU_F_PROBE } from "../spec/iommu.ts";
import { QEMU_IOMMU_FEATURES } from "../mock/iommu/options.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { MSI_END, MSI_START, refused, rejectsWith, withIommu } from "./_iommu_driver.ts";

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- PROBE ------------------------------------------------------------------------------

  t(
    "VirtioIommu.probe() OK returns QEMU's MSI region exactly",
    () =>
      withIommu(kind, async ({ iommu }) => {
        const result = await iommu.probe(0x08);
        assert.deepEqual(result, {
          endpoint: 8,
          regions: [{ kind: "msi", start: MSI_START, end: MSI_END }],
          unknown: [],
          ignored: 0,
        });
        assert.deepEqual(iommu.reservedRegions(0x08), result.regions);
        assert.deepEqual(iommu.reservedRegions(0x10), []);
      }),
  );

  t(
    "VirtioIommu.probe() reports configured regions of every kind, sorted",
    () =>
      withIommu(kind, async ({ iommu }) => {
        const result = await iommu.probe(0x20);
        assert.deepEqual(result.regions, [
          { kind: "reserved", start: 0x1000n, end: 0x1fffn },
          { kind: "reserved", start: 0x8000n, end: 0x8fffn },
          { kind: "msi", start: 0x1_0000_0000n, end: 0x1_0000_0fffn },
        ]);
      }, {
        endpoints: [{
          id: 0x20,
          reservedRegions: [
            { start: 0x1_0000_0000n, end: 0x1_0000_0fffn, subtype: "msi" },
            { start: 0x8000n, end: 0x8fffn, subtype: 77 },
            { start: 0x1000n, end: 0x1fffn, subtype: "reserved" },
          ],
        }],
      }),
  );

  t(
    "VirtioIommu.probe() of an unknown endpoint rejects with NOENT",
    () =>
      withIommu(kind, async ({ iommu }) => {
        await rejectsWith(iommu.probe(0x99), "NOENT");
        // A later probe still works (the probe buffer is reusable).
        assert.equal((await iommu.probe(0x10)).regions.length, 1);
      }),
  );

  t("VirtioIommu.probe() without F_PROBE is refused (DRIVER)", () =>
    withIommu(kind, async (f) => {
      await refused(f, () => f.iommu.probe(0x08));
    }, { features: QEMU_IOMMU_FEATURES & ~(1n << VIRTIO_IOMMU_F_PROBE) }));

  t(
    "VirtioIommu.probe() calls run one at a time and each gets its own answer",
    () =>
      withIommu(kind, async ({ iommu }) => {
        const results = await Promise.all([0x08, 0x30, 0x10].map((e) => iommu.probe(e)));
        assert.deepEqual(results.map((r) => r.endpoint), [0x08, 0x30, 0x10]);
        assert.deepEqual(results[1].regions, [{ kind: "reserved", start: 0n, end: 0xfffn }]);
        assert.equal(results[0].regions[0].kind, "msi");
        assert.equal(results[2].regions[0].kind, "msi");
      }, {
        endpoints: [
          { id: 0x08, reservedRegions: [{ start: MSI_START, end: MSI_END, subtype: "msi" }] },
          { id: 0x10, reservedRegions: [{ start: MSI_START, end: MSI_END, subtype: "msi" }] },
          { id: 0x30, reservedRegions: [{ start: 0n, end: 0xfffn, subtype: "reserved" }] },
        ],
      }),
  );
}
