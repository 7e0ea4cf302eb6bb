/** MockIommuDevice PROBE (§5.13.6.7) and device reset, on a raw harness. */

import assert from "node:assert/strict";
import { mapRequest, probeRequest, RawHarness, S, SENTINEL } from "./_raw_requests.ts";
import { attached, F_PROBE, map, QEMU_FEATURES, READ } from "./_mock_iommu.ts";

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
