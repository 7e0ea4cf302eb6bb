import assert from "node:assert/strict";
import { parseViot, viotMmioEndpoint, viotPciEndpoint } from "../driver/topology/viot.ts";
import { TopologyError, type TopologyErrorCode } from "../driver/topology/errors.ts";
import {
  buildViot,
  fixChecksum,
  qemuQ35Viot,
  viotMmioEndpoint as mmioNode,
  viotMmioIommu,
  viotPciIommu,
  viotPciRange,
} from "../tools/topology/viot.ts";

function assertCode(fn: () => unknown, code: TopologyErrorCode): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof TopologyError && e.code === code && e.source === "viot",
  );
}

Deno.test("parseViot() reads QEMU's default q35 VIOT: 88 bytes, IOMMU at 00:02.0, range 0x00-0xff", () => {
  const bytes = qemuQ35Viot();
  assert.equal(bytes.length, 88);
  const viot = parseViot(bytes);
  assert.equal(viot.oemId, "BOCHS ");
  assert.equal(viot.oemTableId, "BXPC    ");
  assert.deepEqual(viot.iommus, [{ kind: "virtio-pci", offset: 48, segment: 0, bdf: 0x10 }]);
  assert.deepEqual(viot.pciRanges, [{
    offset: 64,
    endpointStart: 0,
    segmentStart: 0,
    segmentEnd: 0,
    bdfStart: 0,
    bdfEnd: 0xff,
    outputNode: 48,
  }]);
  assert.deepEqual(viot.mmioEndpoints, []);
  // Endpoint ID = BDF there; the IOMMU itself is never translated.
  assert.equal(viotPciEndpoint(viot, { segment: 0, bdf: 0x18 })!.endpointId, 0x18);
  assert.equal(viotPciEndpoint(viot, { segment: 0, bdf: 0x10 }), null);
  assert.equal(viotPciEndpoint(viot, { segment: 0, bdf: 0x100 }), null);
});

Deno.test("parseViot() reads all four node types and maps segments and MMIO endpoints", () => {
  const viot = parseViot(buildViot([
    viotMmioIommu({ baseAddress: 0xa000000n }), // offset 48
    viotPciIommu({ segment: 1, bdf: 0x08 }), // offset 64
    viotPciRange({
      endpointStart: 0x100,
      segmentStart: 1,
      segmentEnd: 2,
      bdfStart: 0x10,
      bdfEnd: 0xffff,
      outputNode: 64,
    }),
    mmioNode({ endpoint: 0x77, baseAddress: 0xa000200n, outputNode: 48 }),
  ]));
  assert.equal(viot.iommus.length, 2);
  assert.deepEqual(viot.iommus[0], { kind: "virtio-mmio", offset: 48, baseAddress: 0xa000000n });
  assert.equal(viotPciEndpoint(viot, { segment: 1, bdf: 0x20 })!.endpointId, 0x110);
  assert.equal(viotPciEndpoint(viot, { segment: 2, bdf: 0x10 })!.endpointId, 0x10100);
  assert.equal(viotPciEndpoint(viot, { segment: 1, bdf: 0x08 }), null);
  const mmio = viotMmioEndpoint(viot, 0xa000200n)!;
  assert.equal(mmio.endpointId, 0x77);
  assert.equal(mmio.iommu.offset, 48);
});

Deno.test("parseViot() skips unknown node types", () => {
  const unknown = new Uint8Array(8);
  unknown[0] = 0x80;
  unknown[2] = 8;
  const viot = parseViot(buildViot([viotPciIommu({ bdf: 8 }), unknown]));
  assert.equal(viot.skipped, 1);
  assert.equal(viot.iommus.length, 1);
});

Deno.test("parseViot() rejects a bad checksum unless asked not to verify", () => {
  const bytes = qemuQ35Viot();
  bytes[60] ^= 1;
  assertCode(() => parseViot(bytes), "bad-checksum");
  assert.equal(parseViot(bytes, { verifyChecksum: false }).iommus.length, 1);
});

Deno.test("parseViot() rejects a wrong signature and short or overlong headers", () => {
  const bad = qemuQ35Viot();
  bad[0] = 0x58;
  assertCode(() => parseViot(bad), "bad-signature");
  assertCode(() => parseViot(new Uint8Array(20)), "truncated");
  assertCode(() => parseViot(qemuQ35Viot().subarray(0, 80)), "truncated");
  const short = qemuQ35Viot().slice(0, 40);
  new DataView(short.buffer).setUint32(4, 40, true);
  assertCode(() => parseViot(fixChecksum(short)), "bad-length");
});

Deno.test("parseViot() rejects node walks that overrun the table or stand still", () => {
  assertCode(() => parseViot(buildViot([viotPciIommu({ bdf: 8 })], { nodeCount: 2 })), "overrun");
  const zero = buildViot([viotPciIommu({ bdf: 8 })]);
  new DataView(zero.buffer).setUint16(48 + 2, 0, true);
  assertCode(() => parseViot(fixChecksum(zero)), "bad-length");
  const long = buildViot([viotPciIommu({ bdf: 8 })]);
  new DataView(long.buffer).setUint16(48 + 2, 0xfff0, true);
  assertCode(() => parseViot(fixChecksum(long)), "overrun");
  assertCode(() => parseViot(buildViot([viotPciIommu({ bdf: 8 })], { nodeOffset: 12 })), "overrun");
  assertCode(
    () => parseViot(buildViot([viotPciIommu({ bdf: 8 })], { nodeOffset: 0xfff0 })),
    "overrun",
  );
});

Deno.test("parseViot() rejects nodes shorter than their type", () => {
  const short = viotPciRange({ endpointStart: 0, bdfStart: 0, bdfEnd: 1, outputNode: 48 }).slice(
    0,
    16,
  );
  new DataView(short.buffer).setUint16(2, 16, true);
  assertCode(() => parseViot(buildViot([viotPciIommu({ bdf: 8 }), short])), "truncated");
});

Deno.test("parseViot() rejects output_node references to nothing, to a range, or into a node", () => {
  for (const outputNode of [0, 40, 52, 64, 0xffff]) {
    assertCode(
      () =>
        parseViot(buildViot([
          viotPciIommu({ bdf: 8 }),
          viotPciRange({ endpointStart: 0, bdfStart: 0, bdfEnd: 0xff, outputNode }),
        ])),
      "unknown-reference",
    );
  }
  assertCode(
    () => parseViot(buildViot([mmioNode({ endpoint: 1, baseAddress: 0n, outputNode: 48 })])),
    "unknown-reference",
  );
});

Deno.test("parseViot() rejects inverted ranges and endpoint IDs that overflow 32 bits", () => {
  assertCode(
    () =>
      parseViot(buildViot([
        viotPciIommu({ bdf: 8 }),
        viotPciRange({ endpointStart: 0, bdfStart: 0x20, bdfEnd: 0x10, outputNode: 48 }),
      ])),
    "invalid-range",
  );
  assertCode(
    () =>
      parseViot(buildViot([
        viotPciIommu({ bdf: 8 }),
        viotPciRange({
          endpointStart: 0xffff0000,
          segmentEnd: 1,
          bdfStart: 0,
          bdfEnd: 0,
          outputNode: 48,
        }),
      ])),
    "overflow",
  );
});

Deno.test("viotPciEndpoint() is first match wins", () => {
  const viot = parseViot(buildViot([
    viotPciIommu({ bdf: 8 }),
    viotPciRange({ endpointStart: 0x1000, bdfStart: 0x100, bdfEnd: 0x1ff, outputNode: 48 }),
    viotPciRange({ endpointStart: 0, bdfStart: 0, bdfEnd: 0xffff, outputNode: 48 }),
  ]));
  assert.equal(viotPciEndpoint(viot, { segment: 0, bdf: 0x101 })!.endpointId, 0x1001);
  assert.equal(viotPciEndpoint(viot, { segment: 0, bdf: 0x201 })!.endpointId, 0x201);
});
