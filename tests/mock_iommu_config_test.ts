/** MockIommuDevice config space (§5.13.4) and request framing (§5.13.6), on a raw harness. */

import assert from "node:assert/strict";
import { MockIommuDevice } from "../mock/iommu/device.ts";
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
import { F_BYPASS_CONFIG, map, QEMU_FEATURES } from "./_mock_iommu.ts";

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
