import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import { HandDriver } from "./_iommu_hand_driver.ts";
import {
  attachRequest,
  detachRequest,
  type FakeQueue,
  mapRequest,
  probeRequest,
  RawHarness,
  S,
  SENTINEL,
  unmapRequest,
} from "./_raw_requests.ts";

// Literal feature masks (virtio 1.3 §5.13.3), not imported, on purpose.
const F_INPUT_RANGE = 1n << 0n;
const F_DOMAIN_RANGE = 1n << 1n;
const F_MAP_UNMAP = 1n << 2n;
const F_BYPASS = 1n << 3n;
const F_PROBE = 1n << 4n;
const F_MMIO = 1n << 5n;
const F_BYPASS_CONFIG = 1n << 6n;
const QEMU_FEATURES = 0x0000010130000077n;
const READ = 1;
const WRITE = 2;
const MMIO = 4;

function map(
  start: bigint,
  end: bigint,
  phys = start,
): { start: bigint; end: bigint; phys: bigint } {
  return { start, end, phys };
}

/** A harness with one endpoint (id 1) without reserved regions, granule 1, bypass off. */
function byteHarness(extra: ConstructorParameters<typeof MockIommuDevice>[0] = {}): RawHarness {
  return new RawHarness({ pageSizeMask: 1n, bypass: false, endpoints: [{ id: 1 }], ...extra });
}

// ---------------------------------------------------------------------------------------------
// Config space (virtio 1.3 §5.13.4)

Deno.test("MockIommuDevice config presents QEMU 7.2 defaults at the spec's offsets", () => {
  const h = new RawHarness();
  const d = h.device;
  assert.equal(d.deviceId, 23);
  assert.equal(d.features, QEMU_FEATURES);
  assert.deepEqual([...d.queueSizes], [256, 256]);
  assert.equal(d.configSize, 40);
  assert.equal(d.readConfig(0, 4), 0xfffff000); // page_size_mask low
  assert.equal(d.readConfig(4, 4), 0xffffffff); // page_size_mask high
  assert.equal(d.readConfig(8, 4), 0); // input_range.start
  assert.equal(d.readConfig(12, 4), 0);
  assert.equal(d.readConfig(16, 4), 0xffffffff); // input_range.end
  assert.equal(d.readConfig(20, 4), 0xffffffff);
  assert.equal(d.readConfig(24, 4), 0); // domain_range.start
  assert.equal(d.readConfig(28, 4), 0xffffffff); // domain_range.end
  assert.equal(d.readConfig(32, 4), 512); // probe_size
  assert.equal(d.readConfig(36, 1), 1); // bypass
  assert.equal(d.readConfig(37, 1), 0);
  assert.equal(d.readConfig(36, 4), 1);
});

Deno.test("MockIommuDevice config reflects custom ranges and page size mask", () => {
  const d = new MockIommuDevice({
    pageSizeMask: 0x1_0000_1000n,
    inputRange: { start: 0x1000n, end: 0x7f_ffff_ffffn },
    domainRange: { start: 5, end: 9 },
    probeSize: 64,
    bypass: false,
  });
  assert.equal(d.readConfig(0, 4), 0x1000);
  assert.equal(d.readConfig(4, 4), 1);
  assert.equal(d.readConfig(8, 2), 0x1000);
  assert.equal(d.readConfig(16, 4), 0xffffffff);
  assert.equal(d.readConfig(20, 4), 0x7f);
  assert.equal(d.readConfig(24, 4), 5);
  assert.equal(d.readConfig(28, 1), 9);
  assert.equal(d.readConfig(32, 4), 64);
  assert.equal(d.readConfig(36, 1), 0);
});

Deno.test("MockIommuDevice.writeConfig() accepts bypass 0/1 and bumps the generation", () => {
  const h = new RawHarness();
  h.device.writeConfig(36, 1, 0);
  assert.equal(h.device.bypass, false);
  assert.equal(h.device.readConfig(36, 1), 0);
  assert.equal(h.ctx.configChanges, 1);
  h.device.writeConfig(36, 1, 0); // no change, no new generation
  assert.equal(h.ctx.configChanges, 1);
  h.device.writeConfig(36, 1, 1);
  assert.equal(h.device.bypass, true);
  assert.equal(h.ctx.configChanges, 2);
  assert.deepEqual(h.ctx.violations, []);
});

Deno.test("MockIommuDevice.writeConfig() records a write to a field other than bypass", () => {
  const h = new RawHarness();
  h.device.writeConfig(32, 4, 4096);
  h.device.writeConfig(0, 4, 0);
  assert.equal(h.device.readConfig(32, 4), 512);
  assert.equal(h.device.readConfig(0, 4), 0xfffff000);
  assert.equal(h.ctx.violations.length, 2);
  assert.match(h.ctx.violations[0], /§5\.13\.4/);
});

Deno.test("MockIommuDevice.writeConfig() records a bypass write wider than 8 bits", () => {
  const h = new RawHarness();
  h.device.writeConfig(36, 4, 0);
  assert.equal(h.device.bypass, true);
  assert.equal(h.ctx.violations.length, 1);
});

Deno.test("MockIommuDevice.writeConfig() records a bypass write before FEATURES_OK", () => {
  const h = new RawHarness();
  h.ctx.status = 3; // ACKNOWLEDGE | DRIVER
  h.device.writeConfig(36, 1, 0);
  assert.equal(h.device.bypass, true);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /FEATURES_OK/);
});

Deno.test("MockIommuDevice.writeConfig() records a bypass write without BYPASS_CONFIG", () => {
  const h = new RawHarness({}, QEMU_FEATURES & ~F_BYPASS_CONFIG);
  h.device.writeConfig(36, 1, 0);
  assert.equal(h.device.bypass, true);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /BYPASS_CONFIG/);
  assert.deepEqual(h.ctx.resets, [], "spec-strict mode only ignores the write");
  const q = new RawHarness({ qemuCompat: true }, QEMU_FEATURES & ~F_BYPASS_CONFIG);
  q.device.writeConfig(36, 1, 0);
  assert.equal(q.ctx.resets.length, 1, "QEMU raises virtio_error (NEEDS_RESET)");
});

Deno.test("MockIommuDevice.writeConfig() records a bypass value other than 0 or 1", () => {
  const h = new RawHarness({ bypass: false });
  h.device.writeConfig(36, 1, 2);
  assert.equal(h.device.readConfig(36, 1), 0);
  assert.equal(h.ctx.violations.length, 1);
  assert.deepEqual(h.ctx.resets, []);
  const q = new RawHarness({ qemuCompat: true });
  q.device.writeConfig(36, 1, 0xff);
  assert.equal(q.device.bypass, true);
  assert.equal(q.ctx.resets.length, 1);
});

Deno.test("MockIommuDevice rejects options that cannot be represented", () => {
  assert.throws(() => new MockIommuDevice({ probeSize: 16 }), RangeError);
  assert.throws(() => new MockIommuDevice({ endpoints: [{ id: 1 }, { id: 1 }] }), RangeError);
  assert.throws(
    () =>
      new MockIommuDevice({
        endpoints: [{ id: 1, reservedRegions: [{ start: 5n, end: 4n, subtype: 0 }] }],
      }),
    RangeError,
  );
  assert.throws(() => new MockIommuDevice({ pageSizeMask: 1n << 64n }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Framing (virtio 1.3 §5.13.6)

Deno.test("MockIommuDevice returns a request without a head unwritten and records it", () => {
  const h = new RawHarness();
  const a = h.send(new Uint8Array([1, 0, 0]));
  assert.equal(a.used, 0);
  assert.deepEqual([...a.writable], [SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
  assert.equal(h.ctx.violations.length, 1);
  assert.deepEqual(h.ctx.interrupts, [0]);
});

Deno.test("MockIommuDevice returns a request without a writable tail unwritten", () => {
  const h = new RawHarness();
  assert.equal(h.send(attachRequest(1, 8), { writable: 0 }).used, 0);
  const a = h.send(attachRequest(1, 8), { writable: 3 });
  assert.equal(a.used, 0);
  assert.deepEqual([...a.writable], [SENTINEL, SENTINEL, SENTINEL]);
  assert.equal(h.ctx.violations.length, 2);
  assert.equal(h.device.endpointDomain(8), null, "nothing was executed");
});

Deno.test("MockIommuDevice answers a request shorter than its struct with used length 0", () => {
  const h = new RawHarness();
  const a = h.send(attachRequest(1, 8).subarray(0, 16));
  assert.equal(a.used, 0);
  assert.equal(a.writable[0], SENTINEL);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /ATTACH/);
  for (
    const req of [
      detachRequest(1, 8),
      mapRequest(1, map(0n, 0xfffn), 3),
      unmapRequest(1, 0n, 1n),
      probeRequest(8),
    ]
  ) {
    assert.equal(h.send(req.subarray(0, req.length - 1), { writable: 516 }).used, 0);
  }
  assert.equal(h.ctx.violations.length, 5);
});

Deno.test("MockIommuDevice in QEMU mode answers a short request with S_INVAL", () => {
  const h = new RawHarness({ qemuCompat: true });
  const a = h.send(attachRequest(1, 8).subarray(0, 16));
  assert.equal(a.used, 4);
  assert.equal(a.status, S.INVAL);
});

Deno.test("MockIommuDevice reads a request split across many descriptors", () => {
  const h = new RawHarness();
  const a = h.send(mapRequest(0, map(0n, 0xfffn), 3), { splitReadable: [1, 4, 9, 17, 30] });
  assert.equal(a.status, S.NOENT); // domain 0 does not exist yet: the fields were decoded
  assert.equal(h.send(attachRequest(7, 8), { splitReadable: [2, 3, 13] }).status, S.OK);
  const b = h.send(mapRequest(7, map(0x1_0000_0000n, 0x1_0000_ffffn, 0x2000n), 3), {
    splitReadable: [10, 11, 26],
    splitWritable: [1, 3],
  });
  assert.equal(b.used, 4);
  assert.deepEqual([...b.writable], [S.OK, 0, 0, 0]);
  assert.deepEqual(h.device.mappings(7), [{
    start: 0x1_0000_0000n,
    end: 0x1_0000_ffffn,
    phys: 0x2000n,
    flags: 3,
  }]);
});

Deno.test("MockIommuDevice zeroes the tail's reserved bytes", () => {
  const h = new RawHarness();
  const a = h.send(attachRequest(1, 8));
  assert.deepEqual([...a.writable], [S.OK, 0, 0, 0]);
});

Deno.test("MockIommuDevice answers an unknown request type with used length 0 (spec)", () => {
  const h = new RawHarness();
  for (const type of [0, 6, 0xff]) {
    const req = new Uint8Array(64);
    req[0] = type;
    const a = h.send(req);
    assert.equal(a.used, 0);
    assert.deepEqual([...a.writable], [SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
  }
  assert.equal(h.device.lastStatus, -1);
  assert.deepEqual(h.ctx.violations, []);
  assert.equal(h.device.requestsHandled, 3);
});

Deno.test("MockIommuDevice answers an unknown request type with S_UNSUPP (QEMU)", () => {
  for (const options of [{ unknownRequest: "qemu" as const }, { qemuCompat: true }]) {
    const h = new RawHarness(options);
    const req = new Uint8Array(20);
    req[0] = 9;
    const a = h.send(req);
    assert.equal(a.used, 4);
    assert.deepEqual([...a.writable], [S.UNSUPP, 0, 0, 0]);
  }
});

Deno.test("MockIommuDevice processes every pending request on one notify", () => {
  const h = new RawHarness();
  const q = h.ctx.queues[0] as FakeQueue;
  q.available.push(h.chain(attachRequest(1, 0)).chain, h.chain(attachRequest(1, 8)).chain);
  h.device.notify(0);
  assert.equal(q.used.length, 2);
  assert.deepEqual(h.ctx.interrupts, [0], "one interrupt for the batch");
  assert.deepEqual(h.device.domains(), [{ id: 1, bypass: false, endpoints: [0, 8], mappings: 0 }]);
});

// ---------------------------------------------------------------------------------------------
// ATTACH (virtio 1.3 §5.13.6.3)

Deno.test("ATTACH attaches an endpoint and creates the domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10)), S.OK);
  assert.equal(h.device.endpointDomain(0x10), 3);
  assert.deepEqual(h.device.domains(), [{ id: 3, bypass: false, endpoints: [0x10], mappings: 0 }]);
});

Deno.test("ATTACH with non-zero reserved is S_INVAL (QEMU accepts it)", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10, 0, 1)), S.INVAL);
  assert.equal(h.device.endpointDomain(0x10), null);
  const q = new RawHarness({ qemuCompat: true });
  assert.equal(q.status(attachRequest(3, 0x10, 0, 0x01000000)), S.OK);
});

Deno.test("ATTACH with an unknown flag bit is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10, 2)), S.INVAL);
  assert.equal(h.status(attachRequest(3, 0x10, 0x80000001)), S.INVAL);
  assert.deepEqual(h.device.domains(), []);
});

Deno.test("ATTACH_F_BYPASS without BYPASS_CONFIG negotiated is S_INVAL and a violation", () => {
  const h = new RawHarness({}, QEMU_FEATURES & ~F_BYPASS_CONFIG);
  assert.equal(h.status(attachRequest(3, 0x10, 1)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
  assert.equal(h.device.endpointDomain(0x10), null);
});

Deno.test("ATTACH of an unknown endpoint is S_NOENT", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x11)), S.NOENT);
  assert.deepEqual(h.device.domains(), []);
});

Deno.test("ATTACH to a domain outside domain_range is S_RANGE when DOMAIN_RANGE is negotiated", () => {
  const h = new RawHarness({ domainRange: { start: 10, end: 20 } });
  assert.equal(h.status(attachRequest(9, 0)), S.RANGE);
  assert.equal(h.status(attachRequest(21, 0)), S.RANGE);
  assert.equal(h.ctx.violations.length, 2);
  assert.equal(h.status(attachRequest(10, 0)), S.OK);
  assert.equal(h.status(attachRequest(20, 8)), S.OK);
  const n = new RawHarness(
    { domainRange: { start: 10, end: 20 } },
    QEMU_FEATURES & ~F_DOMAIN_RANGE,
  );
  assert.equal(n.status(attachRequest(9, 0)), S.OK, "without DOMAIN_RANGE any domain is valid");
});

Deno.test("ATTACH with a bypass flag that mismatches the domain is S_INVAL without side effect", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 8, 1)), S.OK);
  // Endpoint 0 asks to join bypass domain 2 without the flag, then domain 1 with it.
  assert.equal(h.status(attachRequest(2, 0)), S.INVAL);
  assert.equal(h.status(attachRequest(1, 0, 1)), S.INVAL);
  assert.equal(h.device.endpointDomain(0), 1, "no implicit detach happened");
  assert.equal(h.device.mappings(1).length, 1, "domain 1 and its mapping survive");
});

Deno.test("ATTACH bypass mismatch in QEMU mode detaches first (QEMU 7.2 side effect)", () => {
  const h = new RawHarness({ qemuCompat: true });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 8, 1)), S.OK);
  assert.equal(h.status(attachRequest(2, 0)), S.INVAL);
  assert.equal(h.device.endpointDomain(0), null);
  assert.deepEqual(h.device.domains().map((d) => d.id), [2], "domain 1 was destroyed");
});

Deno.test("ATTACH of an attached endpoint detaches it implicitly and destroys an emptied domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 0)), S.OK);
  assert.equal(h.device.endpointDomain(0), 2);
  assert.deepEqual(h.device.domains(), [{ id: 2, bypass: false, endpoints: [0], mappings: 0 }]);
  // The ID is reusable and the old mappings are gone.
  assert.equal(h.status(attachRequest(1, 8)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("ATTACH to the domain the endpoint is already in keeps the domain and its mappings", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.device.mappings(1).length, 1);
});

Deno.test("ATTACH of a second endpoint shares the domain; the domain outlives the first leaving", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(attachRequest(1, 8)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(5, 0)), S.OK);
  assert.deepEqual(h.device.domains(), [
    { id: 1, bypass: false, endpoints: [8], mappings: 1 },
    { id: 5, bypass: false, endpoints: [0], mappings: 0 },
  ]);
});

Deno.test("ATTACH with ATTACH_F_BYPASS creates and joins a bypass domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(4, 0, 1)), S.OK);
  assert.equal(h.status(attachRequest(4, 8, 1)), S.OK);
  assert.deepEqual(h.device.domains(), [{ id: 4, bypass: true, endpoints: [0, 8], mappings: 0 }]);
});

// ---------------------------------------------------------------------------------------------
// DETACH (virtio 1.3 §5.13.6.4)

Deno.test("DETACH of the last endpoint makes the domain cease to exist", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(detachRequest(1, 0)), S.OK);
  assert.equal(h.device.endpointDomain(0), null);
  assert.deepEqual(h.device.domains(), []);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.NOENT);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.deepEqual(h.device.mappings(1), [], "a re-created domain starts empty");
});

Deno.test("DETACH of an unknown endpoint is S_NOENT", () => {
  const h = new RawHarness();
  assert.equal(h.status(detachRequest(1, 0x11)), S.NOENT);
});

Deno.test("DETACH from a domain the endpoint is not attached to is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(detachRequest(1, 0)), S.INVAL, "not attached at all");
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(detachRequest(2, 0)), S.INVAL, "attached elsewhere");
  assert.equal(h.device.endpointDomain(0), 1);
});

Deno.test("DETACH ignores its reserved field", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(detachRequest(1, 0, 0xffffffff)), S.OK);
  assert.deepEqual(h.ctx.violations, []);
});

// ---------------------------------------------------------------------------------------------
// MAP (virtio 1.3 §5.13.6.5)

function attached(
  options: ConstructorParameters<typeof MockIommuDevice>[0] = {},
  negotiated?: bigint,
): RawHarness {
  const h = new RawHarness(options, negotiated);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  return h;
}

Deno.test("MAP records a mapping with its phys address and flags", () => {
  const h = attached();
  assert.equal(
    h.status(mapRequest(1, map(0x2_0000_0000n, 0x2_0000_3fffn, 0x9000_0000n), READ | WRITE)),
    S.OK,
  );
  assert.deepEqual(h.device.mappings(1), [
    { start: 0x2_0000_0000n, end: 0x2_0000_3fffn, phys: 0x9000_0000n, flags: 3 },
  ]);
});

Deno.test("MAP not aligned to the granule is S_RANGE (start, phys, end+1)", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1800n, 0x2fffn, 0x1000n), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn, 0x1001n), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1ffen), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x2000n), READ)), S.RANGE);
  // A granule above 4 GiB: bit 33 is the lowest set bit.
  const big = attached({ pageSizeMask: 0x2_0000_0000n });
  assert.equal(big.status(mapRequest(1, map(0x1_0000_0000n, 0x2_ffff_ffffn, 0n), READ)), S.RANGE);
  assert.equal(big.status(mapRequest(1, map(0x2_0000_0000n, 0x3_ffff_ffffn, 0n), READ)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("MAP up to virt_end = 2^64-1 is aligned and accepted", () => {
  const h = attached();
  assert.equal(
    h.status(mapRequest(1, map(0xffff_ffff_ffff_f000n, 0xffff_ffff_ffff_ffffn, 0x5000n), WRITE)),
    S.OK,
  );
  assert.equal(h.device.mappings(1)[0].end, 0xffff_ffff_ffff_ffffn);
});

Deno.test("MAP with virt_end before virt_start is S_INVAL and a violation", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x2000n, 0x1fffn), READ)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
});

Deno.test("MAP with virt_end == virt_start is S_INVAL unless the granule is one byte", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1000n), READ)), S.INVAL);
  const b = attached({ pageSizeMask: 1n, endpoints: [{ id: 0 }] });
  assert.equal(b.status(mapRequest(1, map(0x1001n, 0x1001n), READ)), S.OK);
});

Deno.test("MAP outside input_range is S_RANGE", () => {
  const h = attached({ inputRange: { start: 0x10000n, end: 0xff_ffff_ffffn } });
  assert.equal(h.status(mapRequest(1, map(0xf000n, 0x10fffn), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0xff_ffff_f000n, 0x100_0000_0fffn), READ)), S.RANGE);
  assert.equal(h.ctx.violations.length, 2, "INPUT_RANGE negotiated: the driver broke a MUST");
  assert.equal(h.status(mapRequest(1, map(0x10000n, 0x10fffn), READ)), S.OK);
  const n = attached(
    { inputRange: { start: 0x10000n, end: 0xffffffffn } },
    QEMU_FEATURES & ~F_INPUT_RANGE,
  );
  assert.equal(n.status(mapRequest(1, map(0n, 0xfffn), READ)), S.RANGE);
  assert.deepEqual(n.ctx.violations, []);
});

Deno.test("MAP with an unknown flag bit is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | 8)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), 0x80000000)), S.INVAL);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("MAP with MAP_F_MMIO needs F_MMIO negotiated", () => {
  const h = attached({}, QEMU_FEATURES & ~F_MMIO);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | WRITE | MMIO)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /MMIO/);
  const ok = attached();
  assert.equal(ok.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | WRITE | MMIO)), S.OK);
  assert.equal(ok.device.mappings(1)[0].flags, 7);
});

Deno.test("MAP on an unknown domain is S_NOENT", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(2, map(0x1000n, 0x1fffn), READ)), S.NOENT);
});

Deno.test("MAP on a bypass domain is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(2, 0, 1)), S.OK);
  assert.equal(h.status(mapRequest(2, map(0x1000n, 0x1fffn), READ)), S.INVAL);
});

Deno.test("MAP overlapping an existing mapping is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x3fffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x3000n, 0x4fffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x0n, 0x1fffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x0n, 0xffffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x4000n, 0x4fffn), READ)), S.OK, "touching is fine");
  assert.equal(h.device.mappings(1).length, 2);
});

Deno.test("MAP overlapping a reserved region of an attached endpoint is S_INVAL", () => {
  const h = new RawHarness({
    endpoints: [
      { id: 0, reservedRegions: [{ start: 0xfee00000n, end: 0xfeefffffn, subtype: "msi" }] },
      { id: 1, reservedRegions: [{ start: 0x8000_0000n, end: 0x8000_ffffn, subtype: "reserved" }] },
      { id: 2 },
    ],
  });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(attachRequest(2, 2)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0xfee00000n, 0xfee00fffn), WRITE)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0xfed00000n, 0xfee00fffn), WRITE)), S.INVAL);
  assert.equal(
    h.status(mapRequest(1, map(0x8000_0000n, 0x8000_0fffn), WRITE)),
    S.OK,
    "endpoint 1 not attached",
  );
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x8000_f000n, 0x8001_0fffn), WRITE)), S.INVAL);
  assert.equal(
    h.status(mapRequest(2, map(0xfee00000n, 0xfee00fffn), WRITE)),
    S.OK,
    "no regions in domain 2",
  );
});

Deno.test("MAP in QEMU mode skips alignment, input-range and reserved-region checks", () => {
  const h = attached({ qemuCompat: true, inputRange: { start: 0n, end: 0xffff_ffffn } });
  assert.equal(h.status(mapRequest(1, map(0x1800n, 0x27ffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1_0000_0000n, 0x1_0000_0fffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0xfee00000n, 0xfee00fffn), READ)), S.OK);
  assert.equal(
    h.status(mapRequest(1, map(0x2000n, 0x2fffn), READ)),
    S.INVAL,
    "overlap still refused",
  );
});

Deno.test("MAP and UNMAP without MAP_UNMAP negotiated are unknown requests and violations", () => {
  const h = attached({}, QEMU_FEATURES & ~F_MAP_UNMAP);
  assert.equal(h.send(mapRequest(1, map(0x1000n, 0x1fffn), READ)).used, 0);
  assert.equal(h.send(unmapRequest(1, 0x1000n, 0x1fffn)).used, 0);
  assert.equal(h.ctx.violations.length, 2);
  assert.deepEqual(h.device.mappings(1), []);
});

// ---------------------------------------------------------------------------------------------
// UNMAP (virtio 1.3 §5.13.6.6)

Deno.test("UNMAP follows the spec's seven examples", () => {
  const cases: {
    maps: [bigint, bigint][];
    unmap: [bigint, bigint];
    status: number;
    left: bigint[];
  }[] = [
    { maps: [], unmap: [0n, 4n], status: S.OK, left: [] },
    { maps: [[0n, 9n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 9n]], unmap: [0n, 4n], status: S.RANGE, left: [0n] },
    { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 4n], status: S.OK, left: [5n] },
    { maps: [[0n, 4n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 4n], [10n, 14n]], unmap: [0n, 14n], status: S.OK, left: [] },
  ];
  for (const [i, c] of cases.entries()) {
    const h = byteHarness();
    assert.equal(h.status(attachRequest(1, 1)), S.OK);
    for (const [s, e] of c.maps) assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
    assert.equal(h.status(unmapRequest(1, c.unmap[0], c.unmap[1])), c.status, `example ${i + 1}`);
    assert.deepEqual(h.device.mappings(1).map((m) => m.start), c.left, `example ${i + 1}`);
  }
});

Deno.test("UNMAP that would split a mapping removes nothing (atomic)", () => {
  const h = byteHarness();
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  for (const [s, e] of [[0n, 4n], [5n, 9n], [10n, 19n]]) {
    assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
  }
  assert.equal(h.status(unmapRequest(1, 0n, 14n)), S.RANGE);
  assert.equal(h.status(unmapRequest(1, 3n, 19n)), S.RANGE);
  assert.deepEqual(h.device.mappings(1).map((m) => m.start), [0n, 5n, 10n]);
});

Deno.test("UNMAP in QEMU mode is not atomic", () => {
  const h = byteHarness({ qemuCompat: true });
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  for (const [s, e] of [[0n, 4n], [5n, 9n], [10n, 19n]]) {
    assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
  }
  assert.equal(h.status(unmapRequest(1, 0n, 14n)), S.RANGE);
  assert.deepEqual(h.device.mappings(1).map((m) => m.start), [10n], "earlier removals stay");
});

Deno.test("UNMAP on an unknown domain is S_NOENT, on a bypass domain S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(unmapRequest(1, 0n, 0xfffn)), S.NOENT);
  assert.equal(h.status(attachRequest(2, 0, 1)), S.OK);
  assert.equal(h.status(unmapRequest(2, 0n, 0xfffn)), S.INVAL);
});

Deno.test("UNMAP with non-zero reserved is S_INVAL and unmaps nothing", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(unmapRequest(1, 0x1000n, 0x1fffn, 1)), S.INVAL);
  assert.equal(h.device.mappings(1).length, 1);
  assert.equal(h.status(unmapRequest(1, 0x1000n, 0x1fffn)), S.OK);
  assert.equal(h.device.mappings(1).length, 0);
});

Deno.test("UNMAP with virt_end before virt_start is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(unmapRequest(1, 0x2000n, 0x1fffn)), S.INVAL);
});

Deno.test("UNMAP of the whole 64-bit space removes everything", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(
    h.status(mapRequest(1, map(0xffff_ffff_ffff_f000n, 0xffff_ffff_ffff_ffffn, 0n), READ)),
    S.OK,
  );
  assert.equal(h.status(unmapRequest(1, 0n, 0xffff_ffff_ffff_ffffn)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});

// ---------------------------------------------------------------------------------------------
// PROBE (virtio 1.3 §5.13.6.7)

Deno.test("PROBE writes one RESV_MEM property per region, zero-fills the rest, tail last", () => {
  const h = new RawHarness();
  const a = h.send(probeRequest(0x08), { writable: 516 });
  assert.equal(a.used, 516);
  const v = new DataView(a.writable.buffer);
  // Property at request offset 72 = writable offset 0.
  assert.equal(v.getUint16(0, true), 1, "type RESV_MEM");
  assert.equal(v.getUint16(2, true), 20, "length excludes the header");
  assert.equal(v.getUint8(4), 1, "subtype MSI");
  assert.deepEqual([...a.writable.subarray(5, 8)], [0, 0, 0]);
  assert.equal(v.getBigUint64(8, true), 0xfee00000n);
  assert.equal(v.getBigUint64(16, true), 0xfeefffffn);
  assert.ok(a.writable.subarray(24, 512).every((b) => b === 0), "unused bytes are zero");
  assert.deepEqual([...a.writable.subarray(512, 516)], [S.OK, 0, 0, 0], "tail at 72 + probe_size");
  assert.deepEqual(h.ctx.violations, []);
});

Deno.test("PROBE lists several regions in order with their subtypes", () => {
  const h = new RawHarness({
    probeSize: 64,
    endpoints: [{
      id: 0x100,
      reservedRegions: [
        { start: 0x1_0000_0000n, end: 0x1_0000_ffffn, subtype: "reserved" },
        { start: 0x8000000n, end: 0x80fffffn, subtype: 7 },
      ],
    }],
  });
  const a = h.send(probeRequest(0x100), { writable: 68, splitWritable: [10, 30, 47] });
  assert.equal(a.used, 68);
  const v = new DataView(a.writable.buffer);
  assert.equal(v.getUint16(0, true), 1);
  assert.equal(v.getUint8(4), 0);
  assert.equal(v.getBigUint64(8, true), 0x1_0000_0000n);
  assert.equal(v.getBigUint64(16, true), 0x1_0000_ffffn);
  assert.equal(v.getUint16(24, true), 1, "next property at cur + 4 + length");
  assert.equal(v.getUint16(26, true), 20);
  assert.equal(v.getUint8(28), 7);
  assert.equal(v.getBigUint64(32, true), 0x8000000n);
  assert.equal(v.getBigUint64(40, true), 0x80fffffn);
  assert.ok(a.writable.subarray(48, 64).every((b) => b === 0));
  assert.equal(a.status, S.OK);
});

Deno.test("PROBE with a properties area smaller than probe_size is S_INVAL with no property", () => {
  const h = new RawHarness();
  const a = h.send(probeRequest(0x08), { writable: 260 });
  assert.equal(a.used, 260);
  assert.ok(a.writable.subarray(0, 256).every((b) => b === 0), "no property written");
  assert.deepEqual([...a.writable.subarray(256)], [S.INVAL, 0, 0, 0]);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /probe_size/);
});

Deno.test("PROBE with a properties area larger than probe_size answers but is a violation", () => {
  const h = new RawHarness();
  const a = h.send(probeRequest(0x08), { writable: 604 });
  assert.equal(a.used, 604);
  assert.equal(new DataView(a.writable.buffer).getUint16(0, true), 1);
  assert.equal(a.status, S.OK);
  assert.equal(h.ctx.violations.length, 1);
});

Deno.test("PROBE of an unknown endpoint is S_NOENT", () => {
  const h = new RawHarness();
  const a = h.send(probeRequest(0x09), { writable: 516 });
  assert.equal(a.used, 516);
  assert.equal(a.status, S.NOENT);
  assert.ok(a.writable.subarray(0, 512).every((b) => b === 0));
});

Deno.test("PROBE ignores its reserved bytes", () => {
  const h = new RawHarness();
  assert.equal(h.send(probeRequest(0x10, 0xff), { writable: 516 }).status, S.OK);
  assert.deepEqual(h.ctx.violations, []);
});

Deno.test("PROBE without F_PROBE negotiated is returned unwritten and recorded", () => {
  const h = new RawHarness({}, QEMU_FEATURES & ~F_PROBE);
  const a = h.send(probeRequest(0x08), { writable: 516 });
  assert.equal(a.used, 0);
  assert.ok(a.writable.every((b) => b === SENTINEL));
  assert.equal(h.ctx.violations.length, 1);
});

// ---------------------------------------------------------------------------------------------
// Reset

Deno.test("MockIommuDevice.reset() clears domains and attachments and keeps bypass", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  h.device.writeConfig(36, 1, 0);
  h.device.reset();
  assert.deepEqual(h.device.domains(), []);
  assert.equal(h.device.endpointDomain(0), null);
  assert.equal(h.device.bypass, false, "bypass is sticky across device reset");
  assert.equal(h.device.readConfig(36, 1), 0);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.NOENT);
  h.device.systemReset();
  assert.equal(h.device.bypass, true, "system reset restores the boot value");
});

// ---------------------------------------------------------------------------------------------
// Translation (reference §1.6, §2)

Deno.test("translate() lets an unattached endpoint bypass when BYPASS_CONFIG is offered and bypass=1", () => {
  const h = new RawHarness();
  assert.deepEqual(h.device.translate(0x08, 0x1234n, "write"), {
    ok: true,
    address: 0x1234n,
    bypass: true,
  });
  // Even when the driver did not accept BYPASS_CONFIG (rule a).
  const old = new RawHarness({}, 0n);
  assert.deepEqual(old.device.translate(0x08, 0x1234n, "read"), {
    ok: true,
    address: 0x1234n,
    bypass: true,
  });
});

Deno.test("translate() ignores the bypass field when BYPASS_CONFIG is not offered", () => {
  const h = new RawHarness({ features: QEMU_FEATURES & ~F_BYPASS_CONFIG, bypass: true });
  const r = h.device.translate(0x08, 0x1234n, "read");
  assert.equal(r.ok, false);
  // Rule c: legacy BYPASS negotiated.
  const legacy = new RawHarness({
    features: (QEMU_FEATURES & ~F_BYPASS_CONFIG) | F_BYPASS,
    bypass: false,
  });
  assert.deepEqual(legacy.device.translate(0x08, 0x10n, "read"), {
    ok: true,
    address: 0x10n,
    bypass: true,
  });
});

Deno.test("translate() faults DOMAIN for an unattached endpoint with bypass off", () => {
  const h = new RawHarness({ bypass: false });
  assert.deepEqual(h.device.translate(0x08, 0x1234n, "write"), {
    ok: false,
    fault: { reason: "DOMAIN", flags: 0x102, endpoint: 0x08, address: 0x1234n },
  });
});

Deno.test("translate() faults UNKNOWN for an unknown endpoint unless bypassing", () => {
  const h = new RawHarness({ bypass: false });
  const r = h.device.translate(0x42, 0x1000n, "read");
  assert.deepEqual(r, {
    ok: false,
    fault: { reason: "UNKNOWN", flags: 0x101, endpoint: 0x42, address: 0x1000n },
  });
  const b = new RawHarness();
  assert.deepEqual(b.device.translate(0x42, 0x1000n, "read"), {
    ok: true,
    address: 0x1000n,
    bypass: true,
  });
});

Deno.test("translate() lets MSI regions through by identity and faults RESERVED regions", () => {
  const h = new RawHarness({
    bypass: false,
    endpoints: [{
      id: 3,
      reservedRegions: [
        { start: 0xfee00000n, end: 0xfeefffffn, subtype: "msi" },
        { start: 0x1000n, end: 0x1fffn, subtype: "reserved" },
      ],
    }],
  });
  assert.deepEqual(h.device.translate(3, 0xfee00004n, "write"), {
    ok: true,
    address: 0xfee00004n,
    bypass: false,
  });
  const r = h.device.translate(3, 0x1800n, "read");
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.fault.reason, "MAPPING");
});

Deno.test("translate() maps through a domain and enforces permissions", () => {
  const h = new RawHarness({ bypass: false });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(
    h.status(mapRequest(1, map(0x1_0000_0000n, 0x1_0000_ffffn, 0x8000_0000n), READ)),
    S.OK,
  );
  assert.equal(h.status(mapRequest(1, map(0x2000n, 0x2fffn, 0x4000n), WRITE)), S.OK);
  assert.deepEqual(h.device.translate(0, 0x1_0000_1234n, "read"), {
    ok: true,
    address: 0x8000_1234n,
    bypass: false,
  });
  assert.deepEqual(h.device.translate(0, 0x1_0000_1234n, "write"), {
    ok: false,
    fault: { reason: "MAPPING", flags: 0x102, endpoint: 0, address: 0x1_0000_1234n },
  });
  assert.deepEqual(h.device.translate(0, 0x2010n, "write"), {
    ok: true,
    address: 0x4010n,
    bypass: false,
  });
  assert.deepEqual(h.device.translate(0, 0x2010n, "read"), {
    ok: false,
    fault: { reason: "MAPPING", flags: 0x101, endpoint: 0, address: 0x2010n },
  });
  assert.deepEqual(h.device.translate(0, 0x3000n, "read"), {
    ok: false,
    fault: { reason: "MAPPING", flags: 0x101, endpoint: 0, address: 0x3000n },
  });
});

Deno.test("translate() passes an endpoint in a bypass domain through", () => {
  const h = new RawHarness({ bypass: false });
  assert.equal(h.status(attachRequest(9, 0x10, 1)), S.OK);
  assert.deepEqual(h.device.translate(0x10, 0x5000n, "write"), {
    ok: true,
    address: 0x5000n,
    bypass: true,
  });
});

Deno.test("translate() after DETACH no longer reaches the domain's mappings", () => {
  const h = new RawHarness({ bypass: false });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.device.translate(0, 0x1000n, "read").ok, true);
  assert.equal(h.status(detachRequest(1, 0)), S.OK);
  const r = h.device.translate(0, 0x1000n, "read");
  assert.equal(r.ok ? "ok" : r.fault.reason, "DOMAIN");
});

Deno.test("translate() in QEMU mode reports QEMU's fault flags", () => {
  const h = new RawHarness({ bypass: false, qemuCompat: true });
  const r = h.device.translate(0x08, 0x1234n, "write");
  assert.equal(r.ok ? -1 : r.fault.flags, 0x100);
});

Deno.test("translate() rejects an address that is not 64-bit", () => {
  const h = new RawHarness();
  assert.throws(() => h.device.translate(0, -1n, "read"), RangeError);
  assert.throws(() => h.device.translate(0, 1n << 64n, "read"), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Event queue (virtio 1.3 §5.13.7)

Deno.test("A fault is posted on the event queue as a 24-byte report with zero reserved fields", () => {
  const h = new RawHarness({ bypass: false });
  const at = h.addEventBuffer(32);
  h.ctx.interrupts.length = 0;
  h.device.translate(0x18, 0x1_2345_6000n, "write");
  const q = h.ctx.queues[1] as FakeQueue;
  assert.equal(q.used.length, 1);
  assert.equal(q.used[0].written, 24);
  assert.deepEqual(h.ctx.interrupts, [1]);
  const bytes = h.ctx.memory.bytes.slice(at, at + 32);
  const v = new DataView(bytes.buffer);
  assert.equal(bytes[0], 1, "reason DOMAIN");
  assert.deepEqual([...bytes.subarray(1, 4)], [0, 0, 0]);
  assert.equal(v.getUint32(4, true), 0x102, "WRITE | ADDRESS");
  assert.equal(v.getUint32(8, true), 0x18);
  assert.equal(v.getUint32(12, true), 0, "reserved1");
  assert.equal(v.getBigUint64(16, true), 0x1_2345_6000n);
  assert.ok(bytes.subarray(24).every((b) => b === SENTINEL), "nothing past 24 bytes");
  assert.equal(h.device.faultsPosted, 1);
  assert.equal(h.device.faultsDropped, 0);
});

Deno.test("A fault with no event buffer is dropped and counted", () => {
  const h = new RawHarness({ bypass: false });
  h.device.translate(0, 0x1000n, "read");
  h.device.translate(0, 0x2000n, "read");
  assert.equal(h.device.faultsDropped, 2);
  assert.equal(h.device.faultsPosted, 0);
  h.ctx.queues[1] = null; // event queue not enabled
  h.device.translate(0, 0x2000n, "read");
  assert.equal(h.device.faultsDropped, 3);
});

Deno.test("A fault before DRIVER_OK is dropped", () => {
  const h = new RawHarness({ bypass: false });
  h.addEventBuffer();
  h.ctx.status = 11;
  h.device.translate(0, 0x1000n, "read");
  assert.equal(h.device.faultsDropped, 1);
  assert.equal((h.ctx.queues[1] as FakeQueue).available.length, 1, "the buffer was not consumed");
});

Deno.test("An event buffer smaller than a fault is returned empty and recorded", () => {
  const h = new RawHarness({ bypass: false });
  h.addEventBuffer(16);
  const at = h.addEventBuffer(24);
  h.device.translate(0, 0x1000n, "read");
  const q = h.ctx.queues[1] as FakeQueue;
  assert.deepEqual(q.used.map((u) => u.written), [0, 24]);
  assert.equal(h.ctx.violations.length, 1);
  assert.equal(h.ctx.memory.bytes[at], 1);
  assert.equal(h.device.faultsPosted, 1);
});

Deno.test("With eventOverflow 'wait' a fault waits for the driver's next buffer", () => {
  const h = new RawHarness({ bypass: false, eventOverflow: "wait" });
  h.device.translate(0, 0x1000n, "read");
  assert.equal(h.device.faultsPending, 1);
  assert.equal(h.device.faultsDropped, 0);
  const at = h.addEventBuffer();
  h.device.notify(1);
  assert.equal(h.device.faultsPending, 0);
  assert.equal(h.device.faultsPosted, 1);
  assert.equal(new DataView(h.ctx.memory.bytes.buffer).getBigUint64(at + 16, true), 0x1000n);
});

// ---------------------------------------------------------------------------------------------
// Through the transports: the real harness (VirtioCore, SplitDeviceQueue) and a hand driver.

const HAND_FEATURES = (1n << 32n) | F_INPUT_RANGE | F_DOMAIN_RANGE | F_MAP_UNMAP | F_PROBE |
  F_MMIO | F_BYPASS_CONFIG;

function viaTransport(
  kind: "mmio" | "pci",
): { driver: HandDriver; device: MockIommuDevice; violations: string[] } {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice({ bypass: false });
  if (kind === "mmio") {
    const mmio = new MmioDevice(device, memory);
    return {
      driver: new HandDriver("mmio", mmio, memory, HAND_FEATURES),
      device,
      violations: mmio.core.violations,
    };
  }
  const pci = new PciFunction(device, memory);
  const bar = pci.bar(4);
  if (bar === null) throw new Error("BAR 4 missing");
  return {
    driver: new HandDriver("pci", bar, memory, HAND_FEATURES),
    device,
    violations: pci.core.violations,
  };
}

for (const kind of ["mmio", "pci"] as const) {
  Deno.test(`MockIommuDevice over ${kind}: attach, map, translate, unmap, probe with no violation`, () => {
    const { driver, device, violations } = viaTransport(kind);
    assert.equal(driver.readConfig32(32), 512);
    assert.deepEqual([...driver.request(attachRequest(1, 0x08)).bytes], [S.OK, 0, 0, 0]);
    const m = driver.request(
      mapRequest(1, map(0x1_0000_0000n, 0x1_0000_ffffn, 0x4000_0000n), READ | WRITE),
    );
    assert.deepEqual([m.used, m.bytes[0]], [4, S.OK]);
    assert.deepEqual(device.translate(0x08, 0x1_0000_0042n, "write"), {
      ok: true,
      address: 0x4000_0042n,
      bypass: false,
    });
    assert.equal(driver.request(unmapRequest(1, 0x1_0000_0000n, 0x1_0000_7fffn)).bytes[0], S.RANGE);
    assert.equal(driver.request(unmapRequest(1, 0x1_0000_0000n, 0x1_0000_ffffn)).bytes[0], S.OK);
    const p = driver.request(probeRequest(0x08), 516);
    assert.equal(p.used, 516);
    assert.equal(new DataView(p.bytes.buffer).getBigUint64(8, true), 0xfee00000n);
    assert.equal(p.bytes[512], S.OK);
    const unknown = new Uint8Array(20);
    unknown[0] = 0x7f;
    assert.equal(driver.request(unknown).used, 0);
    assert.deepEqual(violations, []);
  });

  Deno.test(`MockIommuDevice over ${kind}: a fault arrives on the event queue`, () => {
    const { driver, device, violations } = viaTransport(kind);
    const buf = driver.addEventBuffer();
    const r = device.translate(0x10, 0xdead_b000n, "read");
    assert.equal(r.ok, false);
    assert.deepEqual(driver.takeEvent(), { id: 0, len: 24 });
    assert.equal(buf[0], 1, "reason DOMAIN");
    assert.equal(new DataView(buf.buffer, buf.byteOffset).getUint32(8, true), 0x10);
    assert.equal(device.faultsPosted, 1);
    assert.deepEqual(violations, []);
  });

  Deno.test(`MockIommuDevice over ${kind}: bypass config writes and their violations`, () => {
    const { driver, device, violations } = viaTransport(kind);
    driver.writeConfig8(36, 1);
    assert.equal(device.bypass, true);
    assert.deepEqual(violations, []);
    driver.writeConfig8(36, 3);
    driver.writeConfig8(32, 0);
    assert.equal(device.bypass, true);
    assert.equal(violations.length, 2);
    assert.match(violations[0], /§5\.13\.4\.1/);
  });
}
