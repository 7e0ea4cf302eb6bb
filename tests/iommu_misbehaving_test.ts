/**
 * The virtio-iommu driver against a device that misbehaves: statuses of our choosing, used
 * lengths of 0, short and too long, used ids never submitted or returned twice, requests never
 * answered, DEVICE_NEEDS_RESET in the middle of a batch, hand-written PROBE properties and
 * fault reports. The device is the mock wrapped in {@link ScriptedDevice}.
 */

import assert from "node:assert/strict";
import { MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import {
  DeviceResetError,
  IommuError,
  RequestTimeoutError,
  statusName,
} from "../driver/iommu/errors.ts";
import { decodeFault } from "../driver/iommu/events.ts";
import {
  FAULT_SIZE,
  STATUS_NAMES,
  VIRTIO_IOMMU_T_MAP,
  VIRTIO_IOMMU_T_PROBE,
} from "../spec/iommu.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { type Bus, BUSES, type Fixture, NO_RING_RESET, ringOf, setup } from "./_fixtures.ts";

const RW = MAP_READ | MAP_WRITE;

/** Settles `p` and returns the rejection reason, or "resolved". */
function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "resolved", (e: unknown) => e);
}

/** Calls `run` and requires a promise back (a synchronous throw fails the test). */
function mustReturnPromise(run: () => Promise<unknown>): Promise<unknown> {
  let p: Promise<unknown>;
  try {
    p = run();
  } catch (e) {
    assert.fail(`expected a rejected promise, but the call threw synchronously: ${e}`);
  }
  return outcome(p);
}

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

/** {@link withFixture} with VIRTIO_F_RING_RESET left out: a broken queue stays broken. */
function withoutQueueReset(kind: Bus, body: (f: Fixture) => Promise<void> | void): Promise<void> {
  return withFixture(kind, body, {}, { features: NO_RING_RESET });
}

async function withFixture(
  kind: Bus,
  body: (f: Fixture) => Promise<void> | void,
  mockOptions: Parameters<typeof setup>[1] = {},
  driverOptions: Parameters<typeof setup>[2] = {},
): Promise<void> {
  const f = await setup(kind, mockOptions, driverOptions);
  try {
    await body(f);
  } finally {
    await f.iommu.close();
  }
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

Deno.test("statusName() names the nine statuses and marks unknown ones", () => {
  assert.equal(STATUS_NAMES.length, 9);
  assert.equal(statusName(0), "OK");
  assert.equal(statusName(8), "NOMEM");
  assert.equal(statusName(42), "UNKNOWN(42)");
});

for (const kind of BUSES) {
  const t = (name: string, fn: () => Promise<void>): void => {
    Deno.test(`[${kind}] ${name}`, fn);
  };

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

  // ---- Ring protocol violations -----------------------------------------------------------
  // Without VIRTIO_F_RING_RESET a broken ring stays broken until reset(); with it the driver
  // resets the queue by itself (tests/queue_reset_test.ts).

  t(
    "a used length larger than the writable part breaks the queue with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "len", len: 100, run: true });
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        // The queue stays broken: later calls reject with the same error.
        const later = await outcome(iommu.attach(2, 0x10));
        assert.ok(later instanceof VirtqueueError, String(later));
        // iommu.reset() recovers.
        await iommu.reset();
        await iommu.map(1, 0x2000, 0x2000, 0x1000, RW);
      }),
  );

  t(
    "map()/unmap() on a broken queue return a rejected promise (they must not throw)",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = () => ({ do: "len", len: 100 });
        await outcome(iommu.attach(1, 0x10));
        scripted.script = null;
        const m = await mustReturnPromise(() => iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(m instanceof VirtqueueError, String(m));
        const u = await mustReturnPromise(() => iommu.unmap(1, 0x1000, 0x1000));
        assert.ok(u instanceof VirtqueueError, String(u));
      }),
  );

  t(
    "a used id never submitted rejects the pending request with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        scripted.script = (r) =>
          r.type === VIRTIO_IOMMU_T_MAP ? { do: "bogusId", id: 5 } : { do: "pass" };
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        assert.ok((await outcome(iommu.attach(1, 0x10))) instanceof VirtqueueError);
        assert.equal(iommu.pending, 0);
      }),
  );

  t(
    "a used element posted with nothing in flight breaks the queue at the next request",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        await iommu.attach(1, 0x08);
        assert.equal(iommu.pending, 0);
        // The driver has nothing out, so it does not read the used ring until it sends again;
        // then the element is there before any answer (the device holds the MAP). Id 7 is odd:
        // never the head of a direct 2-descriptor chain.
        scripted.rawUsed(7, 4);
        scripted.script = () => ({ do: "hold" });
        const e = await outcome(iommu.map(1, 0x1000, 0x1000, 0x1000, RW));
        assert.ok(e instanceof VirtqueueError, String(e));
        // Split: the element is read before any answer. Packed: the MAP's buffer goes into
        // the very slot the element was written to, which the driver sees it does not own.
        assert.match(
          e.message,
          ringOf(kind) === "split"
            ? /used id 7 .* not the head of a chain/
            : /wrote a descriptor into ring slot 2/,
        );
        assert.equal(iommu.mappings(1).length, 0, "the MAP the device never answered is undone");
      }),
  );

  t(
    "a used id out of range (>= queue size) rejects with VirtqueueError",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        scripted.script = () => ({ do: "bogusId", id: 0xffff_fff0 });
        const e = await outcome(iommu.attach(1, 0x08));
        assert.ok(e instanceof VirtqueueError, String(e));
      }),
  );

  t(
    "a used id returned twice breaks the queue with VirtqueueError; later calls reject",
    () =>
      withoutQueueReset(kind, async ({ iommu, scripted }) => {
        scripted.script = () => ({ do: "duplicate" });
        // Split: both used entries are there when the driver looks (more entries than chains
        // in flight). Packed: the driver stops at the answer, and finds the duplicate in the
        // slot it reuses for the next request.
        const e = await outcome(iommu.attach(1, 0x08));
        if (ringOf(kind) === "split") assert.ok(e instanceof VirtqueueError, String(e));
        scripted.script = null;
        const later = await outcome(iommu.attach(1, 0x10));
        assert.ok(later instanceof VirtqueueError, String(later));
        await iommu.reset();
        await iommu.attach(1, 0x10);
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
