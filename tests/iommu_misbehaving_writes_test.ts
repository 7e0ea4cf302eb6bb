/** decodeFault(), and VirtioIommu reading PROBE properties and fault reports a device wrote. */

import assert from "node:assert/strict";
import { decodeFault } from "../driver/iommu/events.ts";
import { FAULT_SIZE, VIRTIO_IOMMU_T_PROBE } from "../spec/iommu.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { withFixture } from "./_iommu_misbehaving.ts";

/** A fault report: reason, flags, endpoint, address. */
function faultBytes(reason: number, flags: number, endpoint: number, address: bigint): Uint8Array {
  const b = new Uint8Array(FAULT_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, reason);
  v.setUint32(4, flags, true);
  v.setUint32(8, endpoint, true);
  v.setBigUint64(16, address, true);
  return b;
}

/** A RESV_MEM property. */
function resvMem(subtype: number, start: bigint, end: bigint, typeWord = 1): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint16(0, typeWord, true);
  v.setUint16(2, 20, true);
  v.setUint8(4, subtype);
  v.setBigUint64(8, start, true);
  v.setBigUint64(16, end, true);
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- decodeFault, pure ------------------------------------------------------------------

Deno.test("decodeFault() decodes reason, flags, endpoint and address", () => {
  const b = faultBytes(2, 0x102, 0x1234, 0xdead_beef_0000n);
  const view = new DataView(b.buffer);
  assert.deepEqual(decodeFault(view, 0, 24), {
    reason: "MAPPING",
    read: false,
    write: true,
    endpoint: 0x1234,
    address: 0xdead_beef_0000n,
  });
  // Without F_ADDRESS the address is not trusted.
  view.setUint32(4, 1, true);
  assert.equal(decodeFault(view, 0, 24)?.address, null);
  assert.equal(decodeFault(view, 0, 24)?.read, true);
  // Reason 1 is DOMAIN, anything unknown is UNKNOWN.
  view.setUint8(0, 1);
  assert.equal(decodeFault(view, 0, 24)?.reason, "DOMAIN");
  view.setUint8(0, 77);
  assert.equal(decodeFault(view, 0, 24)?.reason, "UNKNOWN");
});

Deno.test("decodeFault() ignores a report with reserved bytes set or shorter than 24 bytes", () => {
  for (const at of [1, 2, 3]) {
    const b = faultBytes(2, 0x100, 8, 0x1000n);
    b[at] = 1;
    assert.equal(decodeFault(new DataView(b.buffer), 0, 24), null, `reserved byte ${at}`);
  }
  const ok = faultBytes(2, 0x100, 8, 0x1000n);
  assert.equal(decodeFault(new DataView(ok.buffer), 0, 23), null);
  assert.equal(decodeFault(new DataView(ok.buffer), 0, 0), null);
  // reserved1 (bytes 12-15) and undefined flags are ignored, not fatal.
  ok[12] = 0xff;
  new DataView(ok.buffer).setUint32(4, 0x100 | 0x8000, true);
  assert.equal(decodeFault(new DataView(ok.buffer), 0, 24)?.address, 0x1000n);
});

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- PROBE properties written by the device ---------------------------------------------

  const probeWith = (bytes: Uint8Array) => (r: { type: number }) =>
    r.type === VIRTIO_IOMMU_T_PROBE
      ? { do: "write" as const, bytes, status: 0 }
      : { do: "pass" as const };

  t(
    "probe() ignores a property whose length overruns probe_size and keeps what came before",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        const bad = new Uint8Array(8);
        new DataView(bad.buffer).setUint16(0, 1, true);
        new DataView(bad.buffer).setUint16(2, 0xfff0, true);
        scripted.script = probeWith(concat(resvMem(1, 0x1000n, 0x1fffn), bad));
        const r = await iommu.probe(0x08);
        assert.deepEqual(r.regions, [{ kind: "msi", start: 0x1000n, end: 0x1fffn }]);
        assert.equal(r.ignored, 1);
      }, { probeSize: 64, endpoints: [{ id: 8 }] }),
  );

  t(
    "probe() walks a stream of zero-length unknown properties to probe_size and stops",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        const bytes = new Uint8Array(64);
        for (let i = 0; i < 64; i += 4) new DataView(bytes.buffer).setUint16(i, 0x7ff, true);
        scripted.script = probeWith(bytes);
        const r = await iommu.probe(0x08);
        assert.equal(r.unknown.length, 16);
        assert.deepEqual(r.unknown[0], { type: 0x7ff, length: 0 });
        assert.deepEqual(r.regions, []);
      }, { probeSize: 64, endpoints: [{ id: 8 }] }),
  );

  t(
    "probe() ignores reserved type bits, skips unknown types, reads unknown subtypes as reserved",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        const unknown = new Uint8Array(12);
        new DataView(unknown.buffer).setUint16(0, 9, true);
        new DataView(unknown.buffer).setUint16(2, 8, true);
        scripted.script = probeWith(concat(
          resvMem(1, 0x1000n, 0x1fffn, 0x1001), // reserved bit 12 set: ignored
          unknown,
          resvMem(9, 0x5000n, 0x5fffn), // unknown subtype: reserved
          resvMem(0, 0x9000n, 0x8000n), // end < start: ignored
          resvMem(1, 0xfee00000n, 0xfeefffffn),
        ));
        const r = await iommu.probe(0x08);
        assert.deepEqual(r.regions, [
          { kind: "reserved", start: 0x5000n, end: 0x5fffn },
          { kind: "msi", start: 0xfee00000n, end: 0xfeefffffn },
        ]);
        assert.deepEqual(r.unknown, [{ type: 9, length: 8 }]);
        assert.equal(r.ignored, 2);
        assert.deepEqual(iommu.reservedRegions(0x08), r.regions);
      }, { probeSize: 256, endpoints: [{ id: 8 }] }),
  );

  // ---- Fault reports written by the device ------------------------------------------------

  t(
    "a fault report with reserved bits set is ignored and counted; its buffer is re-posted",
    () =>
      withFixture(kind, ({ iommu, scripted }) => {
        const bad = faultBytes(2, 0x100, 8, 0x1000n);
        bad[2] = 1;
        assert.ok(scripted.postRawEvent(bad));
        assert.deepEqual(iommu.takeFaults(), []);
        assert.equal(iommu.ignoredEvents, 1);
        assert.ok(scripted.postRawEvent(faultBytes(2, 0x100, 8, 0x2000n), 16)); // too short
        assert.deepEqual(iommu.takeFaults(), []);
        assert.equal(iommu.ignoredEvents, 2);
        // Every buffer is back: a whole queue's worth of good reports gets through.
        for (let i = 0; i < 8; i++) assert.ok(scripted.postRawEvent(faultBytes(1, 0, 9, 0n)));
        const faults = iommu.takeFaults();
        assert.equal(faults.length, 8);
        assert.deepEqual(faults[0], {
          reason: "DOMAIN",
          read: false,
          write: false,
          endpoint: 9,
          address: null,
        });
      }, { queueSizes: [8, 8] }),
  );
}
