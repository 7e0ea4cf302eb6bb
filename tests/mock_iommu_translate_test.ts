/** MockIommuDevice.translate() and the fault reports it posts on the event queue (§5.13.7). */

import assert from "node:assert/strict";
import {
  attachRequest,
  detachRequest,
  type FakeQueue,
  mapRequest,
  RawHarness,
  S,
  SENTINEL,
} from "./_raw_requests.ts";
import { F_BYPASS, F_BYPASS_CONFIG, map, QEMU_FEATURES, READ, WRITE } from "./_mock_iommu.ts";

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
