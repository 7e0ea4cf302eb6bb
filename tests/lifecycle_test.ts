/**
 * Concurrency and lifecycle of the virtio-iommu driver against a device that answers from a
 * timer (tools/fuzz/timer_device.ts), so requests are really in flight: requests racing with
 * detach, reset and close; a batch submitted twice, or reused after a failure; and an attach
 * whose replay the device refuses. Every request settles (resolves or rejects typed), and
 * afterwards the driver's records and the device agree.
 */

import assert from "node:assert/strict";
import { MAP_READ, MAP_WRITE, VirtioIommu } from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../driver/iommu/errors.ts";
import { type FaultPlan, FaultyDevice } from "../mock/iommu/faults.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { TimerDevice } from "../tools/fuzz/timer_device.ts";
import { plug } from "./_fixtures.ts";

const RW = MAP_READ | MAP_WRITE;
const PAGE = 0x1000;

interface Rig {
  iommu: VirtioIommu;
  device: MockIommuDevice;
  faulty: FaultyDevice;
  timer: TimerDevice;
}

async function withRig(
  body: (r: Rig) => Promise<void>,
  options: { plan?: FaultPlan; mock?: MockIommuOptions } = {},
): Promise<void> {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice({ bypass: false, queueSizes: [16, 16], ...options.mock });
  const faulty = new FaultyDevice(device, options.plan ?? { kinds: [] });
  const timer = new TimerDevice(faulty, 1);
  const { transport } = plug("mmio", timer, memory);
  const iommu = await VirtioIommu.create(transport, memory, { timeoutMs: 1000, maxQueueSize: 16 });
  try {
    await body({ iommu, device, faulty, timer });
  } finally {
    await iommu.close();
    timer.stop();
  }
}

/** "ok", or the error a request rejected with; an untyped error fails the test. */
async function outcome(p: Promise<unknown>): Promise<"ok" | Error> {
  try {
    await p;
    return "ok";
  } catch (error) {
    const typed = error instanceof IommuError || error instanceof DeviceResetError ||
      error instanceof RequestTimeoutError;
    assert.ok(typed, `untyped rejection: ${error}`);
    return error as Error;
  }
}

/** The driver's mappings of `domain` and the device's, as comparable text. */
function mappingsOf(r: Rig, domain: number): [string[], string[]] {
  return [
    r.iommu.mappings(domain).map((m) => `${m.iova}-${m.last}>${m.phys}`),
    r.device.mappings(domain).map((m) => `${m.start}-${m.end}>${m.phys}`),
  ];
}

function maps(r: Rig, domain: number, first: number, n: number): Promise<"ok" | Error>[] {
  const out: Promise<"ok" | Error>[] = [];
  for (let i = first; i < first + n; i++) {
    out.push(outcome(r.iommu.map(domain, 0x100_0000 + i * PAGE, 0x4000_0000 + i * PAGE, PAGE, RW)));
  }
  return out;
}

Deno.test("VirtioIommu: MAPs racing with DETACH all settle, and re-attaching replays exactly what was recorded", () =>
  withRig(async (r) => {
    await r.iommu.attach(1, 0x08);
    const first = maps(r, 1, 0, 100);
    const detach = outcome(r.iommu.detach(1, 0x08));
    const second = maps(r, 1, 100, 100);
    const results = await Promise.all([...first, detach, ...second]);
    assert.equal(r.iommu.pending, 0);
    assert.ok(r.timer.wakeups > 0, "the device answered from its timer");
    assert.equal(results[100], "ok", "the detach succeeded");
    assert.ok(results.slice(0, 100).every((x) => x === "ok"), "MAPs sent before the DETACH");
    // A MAP sent while the DETACH was in flight reaches a domain the device has destroyed
    // with its last endpoint: NOENT, and the driver takes its record back.
    const late = results.slice(101);
    for (const x of late) {
      assert.ok(x === "ok" || (x instanceof IommuError && x.status === "NOENT"));
    }
    const remembered = 100 + late.filter((x) => x === "ok").length;
    assert.equal(r.device.endpointDomain(0x08), null);
    assert.equal(r.iommu.mappings(1).length, remembered);
    await r.iommu.attach(1, 0x08);
    const [driver, device] = mappingsOf(r, 1);
    assert.deepEqual(device, driver);
  }));

Deno.test("VirtioIommu: requests in flight during reset() settle (DeviceResetError or done), and the device gets the records back", () =>
  withRig(async (r) => {
    await r.iommu.attach(1, 0x08);
    const inFlight = [...maps(r, 1, 0, 60), outcome(r.iommu.unmap(1, 0x100_0000, PAGE))];
    assert.ok(r.iommu.pending > 0, "requests are in flight when reset() starts");
    await r.iommu.reset();
    const results = await Promise.all(inFlight);
    assert.equal(r.iommu.pending, 0);
    for (const x of results) {
      assert.ok(x === "ok" || x instanceof DeviceResetError, `${x}`);
    }
    assert.ok(results.some((x) => x instanceof DeviceResetError), "some were cut off by reset");
    // A request cut off by the reset took its record back; the rest were replayed.
    const [driver, device] = mappingsOf(r, 1);
    assert.deepEqual(device, driver);
    assert.equal(r.device.endpointDomain(0x08), 1);
  }));

Deno.test("VirtioIommu: close() with requests in flight rejects each with DeviceResetError; calls after it are refused", async () => {
  let after: Array<"ok" | Error> = [];
  let inFlight: Promise<"ok" | Error>[] = [];
  await withRig(async (r) => {
    await r.iommu.attach(1, 0x08);
    inFlight = [...maps(r, 1, 0, 40), outcome(r.iommu.probe(0x08))];
    await r.iommu.close();
    assert.equal(r.iommu.pending, 0);
    after = await Promise.all([
      outcome(r.iommu.attach(2, 0x10)),
      outcome(r.iommu.detach(1, 0x08)),
      outcome(r.iommu.map(1, 0x10000, 0x20000, PAGE, RW)),
      outcome(r.iommu.unmap(1, 0x10000, PAGE)),
      outcome(r.iommu.probe(0x08)),
      outcome(r.iommu.reset()),
    ]);
  });
  const results = await Promise.all(inFlight);
  const closed = (x: "ok" | Error): boolean =>
    x instanceof IommuError && x.status === "DRIVER" && /closed/.test(x.message);
  // In flight: cut off by the reset; the PROBE, queued behind its lock, finds the driver closed.
  assert.ok(results.slice(0, 40).every((x) => x === "ok" || x instanceof DeviceResetError));
  assert.ok(results.some((x) => x instanceof DeviceResetError));
  assert.ok(results[40] === "ok" || results[40] instanceof DeviceResetError || closed(results[40]));
  for (const x of after) assert.ok(closed(x), `${x}`);
});

Deno.test("RequestBatch: submitted twice, it refuses the second while busy and sends nothing again after", () =>
  withRig(async (r) => {
    await r.iommu.attach(1, 0x08);
    const batch = r.iommu.batch();
    for (let i = 0; i < 40; i++) {
      batch.map(1, 0x100_0000 + i * PAGE, 0x20_0000 + i * PAGE, PAGE, RW);
    }
    const first = batch.submit();
    assert.throws(() => batch.submit(), TypeError, "a second submit while the first is in flight");
    assert.throws(() => batch.map(1, 0x900_0000, 0, PAGE, RW), TypeError);
    assert.equal(await first, 0);
    const seen = r.faulty.requests;
    assert.equal(await batch.submit(), 0, "submitting a settled batch again");
    assert.equal(r.faulty.requests, seen, "nothing was sent a second time");
    assert.equal(r.device.mappings(1).length, 40);
  }));

Deno.test("RequestBatch: reused after a failure, the refused request is not resent until queued again (and an undefined status reads IOERR)", () =>
  withRig(async (r) => {
    await r.iommu.attach(1, 0x08);
    const batch = r.iommu.batch();
    for (let i = 0; i < 8; i++) batch.map(1, 0x100_0000 + i * PAGE, 0x20_0000 + i * PAGE, PAGE, RW);
    // The device answers the 4th request with an undefined status: an IOERR failure.
    r.faulty.plan = { kinds: ["badStatus"], after: r.faulty.requests + 3, limit: 1 };
    assert.equal(await batch.submit(), 1);
    assert.equal(batch.status(3), "IOERR");
    assert.ok(batch.error(3) instanceof IommuError);
    assert.equal(r.iommu.mappings(1).length, 7, "the failed MAP's record was taken back");
    assert.deepEqual(...mappingsOf(r, 1));
    const seen = r.faulty.requests;
    assert.equal(await batch.submit(), 0, "a settled failure is not retried by submit()");
    assert.equal(r.faulty.requests, seen);
    batch.clear();
    batch.map(1, 0x100_0000 + 3 * PAGE, 0x20_0000 + 3 * PAGE, PAGE, RW);
    assert.equal(await batch.submit(), 0);
    assert.equal(r.device.mappings(1).length, 8);
    assert.deepEqual(...mappingsOf(r, 1));
  }));

Deno.test("VirtioIommu.attach(): a replay the device refuses detaches the endpoint again; the domain keeps its records", () =>
  withRig(
    async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.map(1, 0x50000, 0x20_0000, PAGE, RW); // inside 0x10's reserved region
      await r.iommu.map(1, 0x60000, 0x30_0000, PAGE, RW);
      await r.iommu.detach(1, 0x08);
      // 0x10 was never probed: the driver cannot know; the device refuses the replayed MAP.
      const e = await outcome(r.iommu.attach(1, 0x10));
      assert.ok(e instanceof IommuError && e.status === "INVAL", `${e}`);
      assert.equal(r.iommu.pending, 0);
      assert.deepEqual(r.iommu.domains().find((d) => d.id === 1)?.endpoints, []);
      assert.equal(r.device.endpointDomain(0x10), null, "not attached on the device either");
      assert.equal(r.iommu.mappings(1).length, 2, "both mappings still remembered");
      assert.ok(!r.device.translate(0x10, 0x60000n, "read").ok, "no half-replayed domain");
      // Another endpoint attaches and gets both.
      await r.iommu.attach(1, 0x08);
      assert.deepEqual(...mappingsOf(r, 1));
      assert.equal(r.device.mappings(1).length, 2);
    },
    {
      mock: {
        endpoints: [
          { id: 0x08, reservedRegions: [] },
          { id: 0x10, reservedRegions: [{ start: 0x50000n, end: 0x50fffn, subtype: "reserved" }] },
        ],
      },
    },
  ));
