/** VirtioIommu on a ScriptedDevice: chosen statuses, timeouts, DEVICE_NEEDS_RESET, bookkeeping. */

import assert from "node:assert/strict";
import {
  DeviceResetError,
  IommuError,
  RequestTimeoutError,
  statusName,
} from "../driver/iommu/errors.ts";
import { STATUS_NAMES, VIRTIO_IOMMU_T_MAP } from "../spec/iommu.ts";
import { BUSES, busTest } from "./_fixtures.ts";
import { outcome, RW, withFixture } from "./_iommu_misbehaving.ts";

Deno.test("statusName() names the nine statuses and marks unknown ones", () => {
  assert.equal(STATUS_NAMES.length, 9);
  assert.equal(statusName(0), "OK");
  assert.equal(statusName(8), "NOMEM");
  assert.equal(statusName(42), "UNKNOWN(42)");
});

for (const kind of BUSES) {
  const t = busTest(kind);

  // ---- Statuses ---------------------------------------------------------------------------

  t(
    "a device answering each of the nine statuses (and 42) gets the matching IommuError",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        const expected = [
          "OK",
          "IOERR",
          "UNSUPP",
          "DEVERR",
          "INVAL",
          "RANGE",
          "NOENT",
          "FAULT",
          "NOMEM",
        ];
        for (let status = 0; status < 9; status++) {
          scripted.script = () => ({ do: "status", status });
          const result = await outcome(iommu.attach(100 + status, 0x08));
          if (status === 0) {
            assert.equal(result, "resolved");
            continue;
          }
          assert.ok(result instanceof IommuError, String(result));
          assert.equal(result.status, expected[status]);
          assert.equal(result.code, status);
          assert.match(result.message, new RegExp(`VIRTIO_IOMMU_S_${expected[status]}`));
          // A failed ATTACH is not recorded.
          assert.ok(!iommu.domains().some((d) => d.id === 100 + status && d.endpoints.length > 0));
        }
        scripted.script = () => ({ do: "status", status: 42 });
        const e = await outcome(iommu.map(100, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof IommuError);
        assert.equal(e.status, "IOERR");
        assert.equal(e.code, 42);
        assert.deepEqual(iommu.mappings(100), [], "a failed MAP is taken back");
      }),
  );

  t(
    "a used length of 0 is an IOERR failure, not a success",
    () =>
      withFixture(kind, async ({ iommu, scripted, device }) => {
        // The device even performs the ATTACH, but says it wrote nothing.
        scripted.script = () => ({ do: "len", len: 0, run: true });
        const e = await outcome(iommu.attach(1, 0x08));
        assert.ok(e instanceof IommuError, String(e));
        assert.equal(e.status, "IOERR");
        assert.equal(e.code, -1);
        assert.match(e.message, /used length 0/);
        assert.equal(device.endpointDomain(0x08), 1);
        assert.deepEqual(iommu.domains().filter((d) => d.endpoints.length > 0), []);
      }),
  );

  t(
    "a short used length (2 of 4 bytes) is an IOERR failure",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        scripted.script = () => ({ do: "status", status: 0, len: 2 });
        const e = await outcome(iommu.attach(1, 0x08));
        assert.ok(e instanceof IommuError, String(e));
        assert.equal(e.status, "IOERR");
        assert.match(e.message, /2 of 4/);
        // PROBE: used length must cover probe_size + tail.
        scripted.script = () => ({ do: "status", status: 0, len: 4 });
        const p = await outcome(iommu.probe(0x08));
        assert.ok(p instanceof IommuError, String(p));
        assert.equal(p.status, "IOERR");
      }),
  );

  t(
    "a tail left unwritten with a full used length is not read as OK",
    () =>
      withFixture(kind, async ({ iommu, scripted }) => {
        // Claims 4 bytes written but writes nothing: the driver's poison (0xff) stays.
        scripted.script = () => ({ do: "len", len: 4 });
        const e = await outcome(iommu.attach(1, 0x08));
        assert.ok(e instanceof IommuError, String(e));
        assert.equal(e.status, "IOERR");
        assert.equal(e.code, 0xff);
      }),
  );

  // ---- Timeouts and DEVICE_NEEDS_RESET ----------------------------------------------------

  t(
    "a request never answered rejects with RequestTimeoutError (no hang, no leaked timer)",
    () =>
      withFixture(
        kind,
        async ({ iommu, scripted }) => {
          scripted.script = () => ({ do: "hold" });
          const started = performance.now();
          const e = await outcome(iommu.attach(1, 0x08));
          assert.ok(e instanceof RequestTimeoutError, String(e));
          assert.match(e.message, /ATTACH/);
          const waited = performance.now() - started;
          assert.ok(waited >= 45 && waited < 1500, `waited ${waited} ms`);
          assert.equal(iommu.pending, 0);
          // Other slots still work.
          scripted.script = null;
          await iommu.attach(1, 0x08);
        },
        {},
        { timeoutMs: 50 },
      ),
  );

  t(
    "a late answer to a timed-out request is absorbed and frees its slot",
    () =>
      withFixture(
        kind,
        async ({ iommu, scripted }) => {
          scripted.script = () => ({ do: "hold" });
          assert.ok((await outcome(iommu.attach(1, 0x08))) instanceof RequestTimeoutError);
          scripted.script = null;
          scripted.releaseHeld();
          // Many requests: they need every slot, including the one the late answer frees.
          const all = [];
          for (let i = 0; i < 40; i++) all.push(iommu.attach(1, 0x08));
          await Promise.all(all);
        },
        { queueSizes: [4, 4] },
        { timeoutMs: 50, maxQueueSize: 4 },
      ),
  );

  t(
    "DEVICE_NEEDS_RESET mid-batch rejects the pending requests with DeviceResetError; reset() recovers",
    () =>
      withFixture(kind, async ({ iommu, scripted, device }) => {
        await iommu.attach(1, 0x08);
        let seen = 0;
        scripted.script = () => (++seen <= 3 ? { do: "pass" } : { do: "needsReset" });
        const all = [];
        for (let i = 0; i < 6; i++) {
          all.push(outcome(iommu.map(1, 0x10000 * (i + 1), 0, 0x1000, RW)));
        }
        const results = await Promise.all(all);
        assert.deepEqual(results.slice(0, 3), ["resolved", "resolved", "resolved"]);
        for (const r of results.slice(3)) assert.ok(r instanceof DeviceResetError, String(r));
        scripted.script = null;
        await iommu.reset();
        assert.equal(device.endpointDomain(0x08), 1);
        assert.deepEqual(device.mappings(1).map((m) => m.start), [0x10000n, 0x20000n, 0x30000n]);
        await iommu.map(1, 0x100000, 0, 0x1000, RW);
        assert.equal(device.mappings(1).length, 4);
      }),
  );

  // ---- Bookkeeping under failures (regressions) ------------------------------------------

  t(
    "map() refused by the device takes back its own record only (regression: it took another mapping's)",
    () =>
      withFixture(kind, async ({ iommu, scripted, device }) => {
        await iommu.attach(1, 0x08);
        // The device refuses the first MAP only.
        let maps = 0;
        scripted.script = (r) =>
          r.type === VIRTIO_IOMMU_T_MAP && maps++ === 0
            ? { do: "status", status: 8 }
            : { do: "pass" };
        const a = outcome(iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
        const u = outcome(iommu.unmap(1, 0x10000, 0x1000));
        const b = outcome(iommu.map(1, 0x50000, 0x60000, 0x1000, RW));
        const [ra, ru, rb] = await Promise.all([a, u, b]);
        assert.ok(ra instanceof IommuError, `first map: ${String(ra)}`);
        assert.equal(ra.status, "NOMEM");
        assert.equal(ru, "resolved");
        assert.equal(rb, "resolved");
        // The device holds 0x50000; so must the driver's records (or a replay loses it).
        assert.deepEqual(device.mappings(1).map((m) => m.start), [0x50000n]);
        assert.deepEqual(iommu.mappings(1).map((m) => m.iova), [0x50000n]);
      }),
  );

  t(
    "unmap() refused by the device keeps the mapping in the driver's records (regression: it dropped it)",
    () =>
      withFixture(kind, async ({ iommu, scripted, device }) => {
        await iommu.attach(1, 0x08);
        await iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        scripted.script = () => ({ do: "status", status: 3 });
        const e = await outcome(iommu.unmap(1, 0x10000, 0x1000));
        assert.ok(e instanceof IommuError);
        assert.equal(e.status, "DEVERR");
        scripted.script = null;
        // The device still translates through the mapping; the driver must still know it.
        const r = device.translate(0x08, 0x10000n, "read");
        assert.ok(r.ok && r.address === 0x20000n);
        assert.equal(iommu.iovaToPhys(1, 0x10000), 0x20000n);
      }),
  );
}
