import assert from "node:assert/strict";
import {
  builtinMmioEndpoint,
  builtinPciEndpoint,
  builtinTopologyLocation,
  DRAFT_F_TOPOLOGY,
  probeBuiltinTopology,
  readBuiltinTopology,
} from "../driver/topology/builtin.ts";
import { TopologyError, type TopologyErrorCode } from "../driver/topology/errors.ts";
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER } from "../spec/status.ts";
import { ConfigSpace, FakeTransport } from "../tools/topology/builtin.ts";

function read(config: ConfigSpace): ReturnType<typeof readBuiltinTopology> {
  return readBuiltinTopology((offset) => config.read32(offset), "draft", {
    configSize: config.bytes.length,
  });
}

function assertCode(fn: () => unknown, code: TopologyErrorCode): void {
  assert.throws(fn, (e: unknown) => e instanceof TopologyError && e.code === code);
}

Deno.test("builtinTopologyLocation() has topo_config at 36 with bit 6 in the draft and nothing in the spec", () => {
  assert.equal(builtinTopologyLocation("spec"), null);
  assert.deepEqual(builtinTopologyLocation("draft"), {
    featureBit: 6n,
    offsetField: 36,
    numItemsField: 40,
    itemLengthField: 44,
  });
});

Deno.test("readBuiltinTopology() decodes PCI_RANGE (12 bytes) and ENDPOINT (16 bytes) items", () => {
  const config = new ConfigSpace(0x100)
    .topo(0x40, 2, 16)
    .pciRange(0x40, { hierarchy: 1, start: 0x0100, end: 0x01ff, endpointStart: 0x10000 })
    .endpoint(0x50, { endpoint: 7, address: 0x1_0a00_0000n });
  const topo = read(config)!;
  assert.deepEqual(topo.items, [
    {
      kind: "pci-range",
      index: 0,
      hierarchy: 1,
      requesterStart: 0x100,
      requesterEnd: 0x1ff,
      endpointStart: 0x10000,
    },
    {
      kind: "endpoint",
      index: 1,
      endpoint: 7,
      addressLo: 0x0a00_0000,
      addressHi: 1,
      address: 0x1_0a00_0000n,
    },
  ]);
  assert.equal(topo.skipped, 0);
});

Deno.test("readBuiltinTopology() uses only aligned 32-bit reads and at most 16 bytes per item", () => {
  const config = new ConfigSpace(0x200).topo(0x40, 2, 64)
    .pciRange(0x40, { start: 0, end: 0xff, endpointStart: 0 })
    .pciRange(0x80, { start: 0x100, end: 0x1ff, endpointStart: 0x100 });
  const topo = read(config)!;
  assert.equal(topo.items.length, 2);
  assert.ok(config.reads.every((offset) => offset % 4 === 0));
  const itemReads = config.reads.filter((offset) => offset >= 0x40);
  assert.deepEqual(itemReads, [0x40, 0x44, 0x48, 0x4c, 0x80, 0x84, 0x88, 0x8c]);
});

Deno.test("readBuiltinTopology() returns null when any topo_config field is zero", () => {
  for (const [offset, num, len] of [[0, 1, 12], [0x40, 0, 12], [0x40, 1, 0]]) {
    const config = new ConfigSpace().topo(offset, num, len).pciRange(0x40, {
      start: 0,
      end: 1,
      endpointStart: 0,
    });
    assert.equal(read(config), null);
  }
});

Deno.test("readBuiltinTopology() returns null for the spec layout without reading", () => {
  const config = new ConfigSpace().topo(0x40, 1, 12);
  assert.equal(readBuiltinTopology((o) => config.read32(o), "spec"), null);
  assert.deepEqual(config.reads, []);
});

Deno.test("readBuiltinTopology() rejects an item_length that is not a multiple of 4", () => {
  assertCode(() => read(new ConfigSpace().topo(0x40, 1, 14)), "misaligned");
});

Deno.test("readBuiltinTopology() rejects a misaligned offset or one inside the config fields", () => {
  assertCode(() => read(new ConfigSpace().topo(0x42, 1, 12)), "misaligned");
  assertCode(() => read(new ConfigSpace().topo(0x20, 1, 12)), "overrun");
});

Deno.test("readBuiltinTopology() rejects arrays that overrun the window, with overflow-proof arithmetic", () => {
  assertCode(() => read(new ConfigSpace(0x100).topo(0x40, 17, 12)), "overrun");
  // num_items * item_length = 0xffffffff * 0xfffffffc would lose precision as a double.
  assertCode(() => read(new ConfigSpace().topo(0x40, 0xffffffff, 0xfffffffc)), "overrun");
  assertCode(() => read(new ConfigSpace().topo(0xfffffffc, 1, 4)), "overrun");
  // Exactly filling the window is fine.
  const config = new ConfigSpace(0x100).topo(0x40, 12, 16);
  for (let i = 0; i < 12; i++) {
    config.pciRange(0x40 + i * 16, { start: i, end: i, endpointStart: i });
  }
  assert.equal(read(config)!.items.length, 12);
});

Deno.test("readBuiltinTopology() skips unknown item types", () => {
  const config = new ConfigSpace().topo(0x40, 3, 16)
    .set16(0x40, 9).set32(0x44, 0xdeadbeef)
    .pciRange(0x50, { start: 0, end: 0xff, endpointStart: 0 })
    .set16(0x60, 0);
  const topo = read(config)!;
  assert.equal(topo.skipped, 2);
  assert.equal(topo.items.length, 1);
  assert.equal(topo.items[0].index, 1);
});

Deno.test("readBuiltinTopology() rejects items shorter than their type, inverted and overflowing ranges", () => {
  assertCode(
    () =>
      read(
        new ConfigSpace().topo(0x40, 1, 8).pciRange(0x40, { start: 0, end: 1, endpointStart: 0 }),
      ),
    "truncated",
  );
  assertCode(
    () => read(new ConfigSpace().topo(0x40, 1, 12).endpoint(0x40, { endpoint: 1, address: 0n })),
    "truncated",
  );
  assertCode(
    () =>
      read(
        new ConfigSpace().topo(0x40, 1, 12).pciRange(0x40, { start: 5, end: 4, endpointStart: 0 }),
      ),
    "invalid-range",
  );
  assertCode(
    () =>
      read(
        new ConfigSpace().topo(0x40, 1, 12).pciRange(0x40, {
          start: 0,
          end: 0xffff,
          endpointStart: 0xffff0001,
        }),
      ),
    "overflow",
  );
});

Deno.test("builtinPciEndpoint() is first match wins, RID − start + endpoint_start, never the IOMMU", () => {
  const topo = read(
    new ConfigSpace().topo(0x40, 3, 12)
      .pciRange(0x40, { start: 0x0010, end: 0x001f, endpointStart: 0x1000 })
      .pciRange(0x4c, { start: 0x0000, end: 0x00ff, endpointStart: 0x2000 })
      .pciRange(0x58, { hierarchy: 1, start: 0x0000, end: 0xffff, endpointStart: 0x30000 }),
  )!;
  assert.equal(builtinPciEndpoint(topo, { segment: 0, rid: 0x0018 }), 0x1008);
  assert.equal(builtinPciEndpoint(topo, { segment: 0, rid: 0x0020 }), 0x2020);
  assert.equal(builtinPciEndpoint(topo, { segment: 1, rid: 0x0020 }), 0x30020);
  assert.equal(builtinPciEndpoint(topo, { segment: 0, rid: 0x0100 }), null);
  assert.equal(builtinPciEndpoint(topo, { segment: 2, rid: 0 }), null);
  assert.equal(
    builtinPciEndpoint(topo, { segment: 0, rid: 0x0010 }, { self: { segment: 0, rid: 0x0010 } }),
    null,
  );
});

Deno.test("builtinMmioEndpoint() finds an ENDPOINT item by address", () => {
  const topo = read(
    new ConfigSpace().topo(0x40, 1, 16).endpoint(0x40, { endpoint: 0x42, address: 0xa000000n }),
  )!;
  assert.equal(builtinMmioEndpoint(topo, 0xa000000n), 0x42);
  assert.equal(builtinMmioEndpoint(topo, 0xa000200n), null);
});

Deno.test("probeBuiltinTopology() does reset, ACKNOWLEDGE, DRIVER, read, reset", () => {
  const config = new ConfigSpace().topo(0x40, 1, 12).pciRange(0x40, {
    start: 0,
    end: 0xff,
    endpointStart: 0,
  });
  const transport = new FakeTransport(config, (1n << DRAFT_F_TOPOLOGY) | (1n << 32n));
  transport.resetLag = 3;
  const topo = probeBuiltinTopology(transport, { layout: "draft" });
  assert.equal(topo!.items.length, 1);
  assert.deepEqual(transport.statusWrites, [
    0,
    STATUS_ACKNOWLEDGE,
    STATUS_ACKNOWLEDGE | STATUS_DRIVER,
    0,
  ]);
  assert.equal(transport.getStatus(), 0);
});

Deno.test("probeBuiltinTopology() returns null without F_TOPOLOGY and still resets", () => {
  const config = new ConfigSpace().topo(0x40, 1, 12);
  const transport = new FakeTransport(config, 1n << 32n);
  assert.equal(probeBuiltinTopology(transport, { layout: "draft" }), null);
  assert.deepEqual(transport.statusWrites, [0, 1, 3, 0]);
  assert.deepEqual(config.reads, []);
});

Deno.test("probeBuiltinTopology() leaves a spec-layout device untouched (bit 6 is BYPASS_CONFIG there)", () => {
  const transport = new FakeTransport(new ConfigSpace(), 1n << 6n);
  assert.equal(probeBuiltinTopology(transport), null);
  assert.deepEqual(transport.statusWrites, []);
});

Deno.test("probeBuiltinTopology() resets even when the topology is malformed", () => {
  const transport = new FakeTransport(new ConfigSpace().topo(0x40, 1, 6), 1n << 6n);
  assertCode(() => probeBuiltinTopology(transport, { layout: "draft" }), "misaligned");
  assert.equal(transport.statusWrites.at(-1), 0);
});

Deno.test("probeBuiltinTopology() reports a device whose reset never completes or config never settles", () => {
  const stuck = new FakeTransport(new ConfigSpace(), 1n << 6n);
  stuck.resetLag = 1_000_000;
  assertCode(() => probeBuiltinTopology(stuck, { layout: "draft", resetPolls: 10 }), "device");
  const config = new ConfigSpace().topo(0x40, 1, 12).pciRange(0x40, {
    start: 0,
    end: 1,
    endpointStart: 0,
  });
  const unstable = new FakeTransport(config, 1n << 6n);
  unstable.unstable = true;
  assertCode(() => probeBuiltinTopology(unstable, { layout: "draft" }), "device");
  assert.equal(unstable.statusWrites.at(-1), 0);
});
