import assert from "node:assert/strict";
import { fdtCells, fdtPciEndpoint, fdtTopology, parseFdt } from "../driver/topology/fdt.ts";
import { TopologyError, type TopologyErrorCode } from "../driver/topology/errors.ts";
import { FdtBuilder, virtLikeFdt } from "../tools/topology/fdt.ts";

function assertCode(fn: () => unknown, code: TopologyErrorCode): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof TopologyError && e.code === code && e.source === "fdt",
  );
}

function setWord(blob: Uint8Array, offset: number, value: number): Uint8Array {
  new DataView(blob.buffer, blob.byteOffset).setUint32(offset, value);
  return blob;
}

Deno.test("parseFdt() builds nodes with paths and properties", () => {
  const root = parseFdt(virtLikeFdt());
  assert.equal(root.path, "/");
  assert.deepEqual(root.children.map((c) => c.path), [
    "/virtio_mmio@a000000",
    "/pcie@10000000",
    "/ethernet@9000000",
  ]);
  assert.deepEqual(fdtCells(root.children[0], "#iommu-cells"), [1]);
});

Deno.test("fdtTopology() extracts the IOMMU, the host bridge iommu-map and a platform device's iommus", () => {
  const topo = fdtTopology(virtLikeFdt());
  assert.deepEqual(topo.iommus, [{
    path: "/virtio_mmio@a000000",
    phandle: 1,
    cells: 1,
    compatible: ["virtio,mmio"],
  }]);
  assert.deepEqual(topo.hostBridges, [{
    path: "/pcie@10000000",
    segment: 0,
    mask: 0xffffffff,
    map: [
      { ridBase: 0, iommu: 1, iommuBase: 0, length: 8 },
      { ridBase: 9, iommu: 1, iommuBase: 9, length: 0xfff7 },
    ],
  }]);
  assert.deepEqual(topo.clients, [{
    path: "/ethernet@9000000",
    address: 0x9000000n,
    iommus: [{ iommu: 1, ids: [0x20] }],
  }]);
  assert.deepEqual(fdtPciEndpoint(topo, { segment: 0, rid: 0x18 }), { endpointId: 0x18, iommu: 1 });
  assert.equal(
    fdtPciEndpoint(topo, { segment: 0, rid: 8 }),
    null,
    "the IOMMU's own RID is left out",
  );
  assert.equal(fdtPciEndpoint(topo, { segment: 1, rid: 0x18 }), null);
});

Deno.test("fdtPciEndpoint() applies iommu-map-mask and the entry offset", () => {
  const blob = new FdtBuilder().begin("")
    .begin("iommu").cells("#iommu-cells", 1).cells("phandle", 5).end()
    .begin("pci").str("device_type", "pci").cells("linux,pci-domain", 3)
    .cells("iommu-map-mask", 0xfff8)
    .cells("iommu-map", 0x100, 5, 0x4000, 0x100)
    .begin("bridge").str("device_type", "pci").end() // a nested PCI node is not a host bridge
    .end()
    .end().finish();
  const topo = fdtTopology(blob);
  assert.equal(topo.hostBridges.length, 1);
  // Functions of one device share an ID: 0x10f & 0xfff8 = 0x108.
  assert.deepEqual(fdtPciEndpoint(topo, { segment: 3, rid: 0x10f }), {
    endpointId: 0x4008,
    iommu: 5,
  });
  assert.equal(fdtPciEndpoint(topo, { segment: 3, rid: 0x200 }), null);
});

Deno.test("parseFdt() accepts NOPs and rejects bad magic, versions and sizes", () => {
  const nop = new FdtBuilder().nop().begin("").nop().cells("x", 1).end().nop().finish();
  assert.deepEqual(fdtCells(parseFdt(nop), "x"), [1]);
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 0, 0xfeedd00d)), "bad-magic");
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 20, 16)), "bad-version");
  assertCode(() => parseFdt(new Uint8Array(12)), "truncated");
  assertCode(() => parseFdt(virtLikeFdt().subarray(0, 100)), "truncated");
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 4, 8)), "bad-length");
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 8, 0xfffffff0)), "overrun");
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 36, 0xfffffff0)), "overrun");
  assertCode(() => parseFdt(setWord(virtLikeFdt(), 8, 58)), "misaligned");
});

Deno.test("parseFdt() rejects malformed structure blocks", () => {
  assertCode(() => parseFdt(new FdtBuilder().begin("").finish()), "bad-token");
  assertCode(() => parseFdt(new FdtBuilder().begin("").end().finish({ end: false })), "truncated");
  assertCode(() => parseFdt(new FdtBuilder().end().finish()), "bad-token");
  assertCode(() => parseFdt(new FdtBuilder().cells("x", 1).finish()), "bad-token");
  assertCode(
    () => parseFdt(new FdtBuilder().begin("").end().begin("").end().finish()),
    "bad-token",
  );
  const unknown = new FdtBuilder().begin("").end().finish();
  setWord(unknown, 56, 7);
  assertCode(() => parseFdt(unknown), "bad-token");
  const deep = new FdtBuilder();
  for (let i = 0; i < 70; i++) deep.begin(`n${i}`);
  for (let i = 0; i < 70; i++) deep.end();
  assertCode(() => parseFdt(deep.finish()), "too-deep");
});

Deno.test("parseFdt() rejects property lengths and name offsets that overrun", () => {
  const blob = new FdtBuilder().begin("").cells("x", 1).end().finish();
  // Layout: header 40, rsvmap 16, BEGIN_NODE @56, name @60, PROP @64, len @68, nameoff @72.
  assertCode(() => parseFdt(setWord(blob.slice(), 68, 0xffffffff)), "overrun");
  assertCode(() => parseFdt(setWord(blob.slice(), 72, 0x1000)), "bad-string");
  const unterminated = blob.slice();
  unterminated[unterminated.length - 1] = 0x41; // strings block "x\0" → "xA"
  assertCode(() => parseFdt(unterminated), "bad-string");
  const name = new FdtBuilder().begin("abc").end().finish();
  setWord(name, 32, 0);
  name.fill(0x41, 60, 64);
  setWord(name, 36, 8); // struct block now ends inside the unterminated name
  assertCode(() => parseFdt(name), "bad-string");
});

Deno.test("fdtTopology() rejects unknown phandles, bad cell counts and duplicates", () => {
  const base = (): FdtBuilder =>
    new FdtBuilder().begin("").begin("iommu").cells("#iommu-cells", 1).cells("phandle", 1).end();
  assertCode(
    () =>
      fdtTopology(
        base().begin("pci").str("device_type", "pci").cells("iommu-map", 0, 2, 0, 1).end().end()
          .finish(),
      ),
    "unknown-reference",
  );
  assertCode(
    () =>
      fdtTopology(
        base().begin("pci").str("device_type", "pci").cells("iommu-map", 0, 1, 0).end().end()
          .finish(),
      ),
    "bad-length",
  );
  assertCode(
    () =>
      fdtTopology(
        base().begin("pci").str("device_type", "pci").cells(
          "iommu-map",
          0xffff0000,
          1,
          0,
          0x10000000,
        ).end().end()
          .finish(),
      ),
    "overflow",
  );
  assertCode(
    () => fdtTopology(base().begin("dev").cells("iommus", 1).end().end().finish()),
    "truncated",
  );
  assertCode(
    () => fdtTopology(base().begin("dev").cells("iommus", 9, 1).end().end().finish()),
    "unknown-reference",
  );
  assertCode(
    () => fdtTopology(base().begin("other").cells("phandle", 1).end().end().finish()),
    "duplicate",
  );
  assertCode(
    () => fdtTopology(base().begin("dev").prop("iommus", [0, 0, 1]).end().end().finish()),
    "bad-length",
  );
});
