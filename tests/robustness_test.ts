/**
 * Robustness of the virtio-iommu driver (issue 8): one test per fault of
 * {@link FaultyDevice}'s plan (typed error, no hang, keeps working or reset() recovers), a
 * seeded storm of every fault at once in which no request is lost, reset with requests in
 * flight, thousands of concurrent callers on an 8-entry queue each getting their own answer,
 * and caller input refused before anything is sent.
 */

import assert from "node:assert/strict";
import {
  MAP_READ,
  MAP_WRITE,
  VirtioIommu,
  type VirtioIommuOptions,
} from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../driver/iommu/errors.ts";
import { DeviceInitError } from "../driver/virtio/init.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { type FaultKind, type FaultPlan, FaultyDevice } from "../mock/iommu/faults.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import { type Kind, NO_RING_RESET, plug } from "./_fixtures.ts";
import { note } from "./_notes.ts";
import { RING_LAYOUTS, ringMock } from "./_ring_layouts.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";

const RW = MAP_READ | MAP_WRITE;
const NONE: FaultPlan = { kinds: [] };

/** A driver on the mock behind a {@link FaultyDevice}. */
interface Rig {
  iommu: VirtioIommu;
  device: MockIommuDevice;
  faulty: FaultyDevice;
}

async function rigOn(
  ring: RingLayout,
  plan: FaultPlan = NONE,
  mock: MockIommuOptions = {},
  driver: VirtioIommuOptions = {},
  kind: Kind = "mmio",
): Promise<Rig> {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice(ringMock(ring, { bypass: false, ...mock }));
  const faulty = new FaultyDevice(device, plan);
  const { transport } = plug(kind, faulty, memory);
  const iommu = await VirtioIommu.create(transport, memory, { timeoutMs: 100, ...driver });
  return { iommu, device, faulty };
}

async function withRigOn(
  ring: RingLayout,
  body: (r: Rig) => Promise<void>,
  plan: FaultPlan = NONE,
  mock: MockIommuOptions = {},
  driver: VirtioIommuOptions = {},
): Promise<void> {
  const r = await rigOn(ring, plan, mock, driver);
  try {
    await body(r);
  } finally {
    await r.iommu.close();
  }
}

/** Settles `p`: "ok" or the rejection reason. */
function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "ok", (e: unknown) => e);
}

/** Fails unless `p` settles within `ms` (the no-hang guarantee). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** The device and the driver agree on domain 1's mappings. */
function sameMappings(r: Rig, domain = 1): void {
  const device = r.device.mappings(domain).map((m) => [m.start, m.end, m.phys, m.flags]);
  const driver = r.iommu.mappings(domain).map((m) => [m.iova, m.last, m.phys, m.flags]);
  assert.deepEqual(device, driver);
}

/** After a broken device: turn the faults off, reset, and check the driver works again. */
async function recovers(r: Rig): Promise<void> {
  r.faulty.plan = NONE;
  await within(r.iommu.reset(), 2000, "reset()");
  assert.equal(r.iommu.pending, 0);
  await r.iommu.map(1, 0x70_0000, 0x70_0000, 0x1000, RW);
  const t = r.device.translate(0x08, 0x70_0010n, "read");
  assert.ok(t.ok && t.address === 0x70_0010n);
  sameMappings(r);
}

for (const ring of RING_LAYOUTS) {
  /** Registers a test, named with the ring layout unless it is the split one. */
  const test = (name: string, fn: () => Promise<void>): void => {
    Deno.test(ring === "split" ? name : `[packed] ${name}`, fn);
  };
  const rig = (
    plan?: FaultPlan,
    mock?: MockIommuOptions,
    driver?: VirtioIommuOptions,
    kind?: Kind,
  ): Promise<Rig> => rigOn(ring, plan, mock, driver, kind);
  const withRig = (
    body: (r: Rig) => Promise<void>,
    plan?: FaultPlan,
    mock?: MockIommuOptions,
    driver?: VirtioIommuOptions,
  ): Promise<void> => withRigOn(ring, body, plan, mock, driver);

  /**
   * A ring-protocol fault without VIRTIO_F_RING_RESET: the request rejects with
   * VirtqueueError, later ones too, reset() recovers.
   */
  const ringFault = (kind: FaultKind): () => Promise<void> => () =>
    withRig(
      async (r) => {
        await r.iommu.attach(1, 0x08);
        await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        r.faulty.plan = { kinds: [kind], seed: 3 };
        const first = await within(
          outcome(r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW)),
          1000,
          kind,
        );
        const later = await within(
          outcome(r.iommu.map(1, 0x50000, 0x40000, 0x1000, RW)),
          1000,
          kind,
        );
        // Packed sees a duplicate only when it reuses the slot, so the second request reached
        // the device (and got the fault too).
        if (ring === "split" || kind !== "duplicateId") assert.equal(r.faulty.injected[kind], 1);
        // duplicateId answers first, then repeats the id: the first call may have succeeded.
        if (kind !== "duplicateId") assert.ok(first instanceof VirtqueueError, String(first));
        assert.ok(later instanceof VirtqueueError, String(later));
        assert.equal(r.iommu.pending, 0);
        await recovers(r);
        // The mapping made before the fault was replayed on the reset device.
        assert.equal(r.iommu.iovaToPhys(1, 0x10010), 0x20010n);
        assert.ok(r.device.translate(0x08, 0x10010n, "read").ok);
      },
      NONE,
      {},
      { features: NO_RING_RESET },
    );

  /**
   * The same fault with VIRTIO_F_RING_RESET: the driver resets the request queue by itself
   * (no device reset), the device keeps its domains, and the next request goes through.
   */
  const ringFaultRecovered = (kind: FaultKind): () => Promise<void> => () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
      r.faulty.plan = { kinds: [kind], seed: 3, limit: 1 };
      const first = await within(outcome(r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW)), 1000, kind);
      const later = await within(outcome(r.iommu.map(1, 0x50000, 0x60000, 0x1000, RW)), 1000, kind);
      assert.equal(r.faulty.injected[kind], 1);
      if (kind !== "duplicateId") assert.ok(first instanceof VirtqueueError, String(first));
      // duplicateId: split sees the extra element at once; packed only when reusing its slot.
      if (kind !== "duplicateId" || ring === "split") assert.equal(later, "ok");
      assert.equal(r.iommu.queueResets.request, 1);
      assert.equal(r.iommu.pending, 0);
      // Nothing was reset on the device: its domain and first mapping are still there, and
      // what the failed requests touched is back in step with the driver's records.
      assert.equal(r.device.endpointDomain(0x08), 1);
      assert.ok(r.device.translate(0x08, 0x10010n, "read").ok);
      sameMappings(r);
      await r.iommu.map(1, 0x70_0000, 0x70_0000, 0x1000, RW);
      sameMappings(r);
    });

  test(
    "FaultyDevice: a used id never submitted rejects with VirtqueueError; reset() recovers",
    ringFault("unknownId"),
  );
  test(
    "FaultyDevice: a used id already completed breaks the queue with VirtqueueError; reset() recovers",
    ringFault("duplicateId"),
  );
  test(
    "FaultyDevice: a used length beyond the writable part rejects with VirtqueueError; reset() recovers",
    ringFault("longLength"),
  );
  test(
    "FaultyDevice: used.idx jumping (split) or wrong wrap bits (packed) reject with VirtqueueError; reset() recovers",
    ringFault("idxJump"),
  );
  for (const kind of ["unknownId", "duplicateId", "longLength", "idxJump"] as const) {
    test(
      `FaultyDevice with RING_RESET: ${kind} resets the request queue alone; domains stay, the next request works`,
      ringFaultRecovered(kind),
    );
  }

  test("FaultyDevice: a device that never answers gives RequestTimeoutError, and the driver keeps working", () =>
    withRig(
      async (r) => {
        await r.iommu.attach(1, 0x08);
        r.faulty.plan = { kinds: ["silent"], limit: 1 };
        const start = performance.now();
        const e = await within(outcome(r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW)), 1000, "map");
        assert.ok(e instanceof RequestTimeoutError, String(e));
        assert.ok(performance.now() - start >= 90, "the caller's timeout (100 ms) was honoured");
        assert.equal(r.faulty.injected.silent, 1);
        // Only that request was lost by the device: the next one goes through.
        await r.iommu.map(1, 0x30000, 0x40000, 0x1000, RW);
        assert.ok(r.device.translate(0x08, 0x30000n, "read").ok);
      },
      NONE,
      {},
      { timeoutMs: 100 },
    ));

  test(
    "VirtioIommu requests waiting for a slot time out when the device keeps every slot (regression: they hung)",
    () =>
      withRig(
        async (r) => {
          assert.equal(r.iommu.info.requestQueueSize, 8);
          await r.iommu.attach(1, 0x08);
          r.faulty.plan = { kinds: ["silent"] };
          // 8 slots are taken forever; 12 more callers wait for one. Each must still settle.
          const all: Promise<unknown>[] = [];
          for (let i = 0; i < 20; i++) {
            all.push(outcome(r.iommu.map(1, 0x10000 + i * 0x1000, 0x20000, 0x1000, RW)));
          }
          const results = await within(Promise.all(all), 2000, "20 callers on a silent device");
          for (const e of results) assert.ok(e instanceof RequestTimeoutError, String(e));
          assert.equal(r.iommu.pending, 0);
          await recovers(r);
        },
        NONE,
        { queueSizes: [8, 8] },
        { timeoutMs: 50, maxQueueSize: 8 },
      ),
  );

  test("FaultyDevice: DEVICE_NEEDS_RESET in the middle of a batch rejects the rest with DeviceResetError; reset() replays", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      // Request 1 was the ATTACH; the 3rd MAP of the batch meets NEEDS_RESET.
      r.faulty.plan = { kinds: ["needsReset"], after: r.faulty.requests + 2, limit: 1 };
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < 6; i++) {
        batch.push(outcome(r.iommu.map(1, 0x10000 * (i + 1), 0x100000, 0x1000, RW)));
      }
      const results = await within(Promise.all(batch), 1000, "batch");
      assert.deepEqual(results.slice(0, 2), ["ok", "ok"]);
      for (const e of results.slice(2)) assert.ok(e instanceof DeviceResetError, String(e));
      assert.equal(r.faulty.injected.needsReset, 1);
      // New requests refuse until reset (the queue is failed), typed, and never throw.
      assert.ok(
        (await outcome(r.iommu.map(1, 0x90000, 0, 0x1000, RW))) instanceof DeviceResetError,
      );
      await recovers(r);
      // The two mappings that succeeded were replayed; the refused ones were forgotten.
      assert.deepEqual(r.iommu.mappings(1).map((m) => m.iova), [0x10000n, 0x20000n, 0x70_0000n]);
    }));

  test("FaultyDevice: a config generation that never settles fails create() and reset() with DeviceInitError", async () => {
    const memory = new SimulatedMemory();
    const faulty = new FaultyDevice(new MockIommuDevice(), { kinds: ["unstableConfig"] });
    const { transport } = plug("mmio", faulty, memory);
    const e = await within(outcome(VirtioIommu.create(transport, memory)), 1000, "create");
    assert.ok(e instanceof DeviceInitError && e.step === "config", String(e));
    assert.ok(faulty.injected.unstableConfig >= 64);
    // Mid-life: the reset fails typed, and a later reset on a settled device recovers.
    await withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
      r.faulty.plan = { kinds: ["unstableConfig"] };
      const failed = await within(outcome(r.iommu.reset()), 1000, "reset");
      assert.ok(failed instanceof DeviceInitError, String(failed));
      await recovers(r);
      assert.ok(r.device.translate(0x08, 0x10000n, "read").ok);
    });
  });

  test("FaultyDevice: a PROBE property overrunning probe_size ends parsing; what came before is kept", () =>
    withRig(async (r) => {
      r.faulty.plan = { kinds: ["probeOverrun"], seed: 5 };
      const result = await r.iommu.probe(0x08);
      assert.equal(r.faulty.injected.probeOverrun, 1);
      assert.deepEqual(result.regions, [{ kind: "reserved", start: 0x1000n, end: 0x1fffn }]);
      assert.equal(result.ignored, 1);
      // Other requests are not affected (probeOverrun only hits PROBE).
      await r.iommu.attach(1, 0x08);
      await assert.rejects(r.iommu.map(1, 0x1000, 0, 0x1000, RW), IommuError);
    }));

  test("FaultyDevice: PROBE filled with zero-length properties is walked to probe_size and stops", () =>
    withRig(async (r) => {
      r.faulty.plan = { kinds: ["probeLoop"], seed: 9 };
      const result = await within(r.iommu.probe(0x08), 1000, "probe");
      assert.equal(r.faulty.injected.probeLoop, 1);
      assert.deepEqual(result.regions, []);
      assert.equal(result.unknown.length, 512 / 4);
      for (const u of result.unknown) assert.equal(u.length, 0);
    }));

  test("FaultyDevice: fault records with reserved bits are ignored and counted; real faults still arrive", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      r.faulty.plan = { kinds: ["faultReserved"], limit: 3 };
      for (let i = 0; i < 3; i++) await r.iommu.map(1, 0x10000 * (i + 1), 0, 0x1000, RW);
      assert.equal(r.faulty.injected.faultReserved, 3);
      assert.deepEqual(r.iommu.takeFaults(), []);
      assert.equal(r.iommu.ignoredEvents, 3);
      // The buffers were re-posted: a real fault is delivered.
      assert.equal(r.device.translate(0x08, 0x90000n, "read").ok, false);
      const faults = r.iommu.takeFaults();
      assert.equal(faults.length, 1);
      assert.equal(faults[0].reason, "MAPPING");
    }));

  test("FaultyDevice: used length 0 and unknown statuses are IOERR failures; the driver keeps working", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      for (const kind of ["zeroLength", "badStatus"] as const) {
        r.faulty.plan = { kinds: [kind], limit: 1, seed: 11 };
        const e = await outcome(r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW));
        assert.ok(e instanceof IommuError && e.status === "IOERR", `${kind}: ${e}`);
        assert.equal(r.faulty.injected[kind], 1);
        assert.deepEqual(r.iommu.mappings(1), []); // the refused MAP left no record
        await r.iommu.map(1, 0x10000, 0x20000, 0x1000, RW);
        await r.iommu.unmap(1, 0x10000, 0x1000);
      }
    }));

  test("FaultyDevice: a seeded storm of every fault loses no request (each settles typed)", async () => {
    const kinds: FaultKind[] = [
      "unknownId",
      "duplicateId",
      "longLength",
      "idxJump",
      "silent",
      "needsReset",
      "probeOverrun",
      "probeLoop",
      "faultReserved",
      "zeroLength",
      "badStatus",
    ];
    const r = await rig(
      { kinds, rate: 0.02, seed: 2026 },
      { queueSizes: [8, 8] },
      { timeoutMs: 20, maxQueueSize: 8 },
    );
    let issued = 0, settled = 0, ok = 0, resets = 0;
    const typed = [IommuError, VirtqueueError, RequestTimeoutError, DeviceResetError];
    try {
      for (let round = 0; round < 40; round++) {
        const calls: Promise<unknown>[] = [];
        for (let i = 0; i < 50; i++) {
          const iova = 0x100_0000 + ((round * 50 + i) % 512) * 0x1000;
          const op = i % 10 === 9
            ? r.iommu.probe(0x08)
            : i % 2 === 0
            ? r.iommu.map(1, iova, iova, 0x1000, RW)
            : r.iommu.unmap(1, iova - 0x1000, 0x1000);
          issued++;
          calls.push(op.then(() => {
            settled++;
            ok++;
          }, (e: unknown) => {
            settled++;
            assert.ok(typed.some((T) => e instanceof T), `untyped rejection: ${e}`);
          }));
        }
        await within(Promise.all(calls), 5000, `round ${round}`);
        assert.equal(r.iommu.pending, 0);
        if (round % 5 === 4 || r.faulty.held.length > 4) {
          // Recover: a reset with faults still on may itself fail; a typed error then.
          for (let tries = 0;; tries++) {
            resets++;
            const e = await within(outcome(r.iommu.reset()), 5000, "reset");
            if (e === "ok") break;
            assert.ok(typed.some((T) => e instanceof T), `untyped reset failure: ${e}`);
            if (tries > 5) r.faulty.plan = NONE;
          }
          if (r.iommu.domains().length === 0) await r.iommu.attach(1, 0x08).catch(() => {});
        } else if (r.iommu.domains().every((d) => d.endpoints.length === 0)) {
          await r.iommu.attach(1, 0x08).catch(() => {});
        }
      }
      assert.equal(settled, issued, "requests lost");
      assert.ok(r.faulty.total > 10, `only ${r.faulty.total} faults injected`);
      assert.ok(ok > issued / 4, `only ${ok} of ${issued} succeeded`);
      note(
        `storm: ${issued} requests, ${settled} settled, ${ok} ok, ${resets} resets, ` +
          `${r.faulty.total} faults injected ${JSON.stringify(r.faulty.injected)}, lost ${
            issued - settled
          }`,
      );
    } finally {
      await r.iommu.close();
    }
  });

  test("VirtioIommu.reset() with requests in flight rejects each with DeviceResetError, re-attaches and replays", () =>
    withRig(async (r) => {
      await r.iommu.attach(1, 0x08);
      await r.iommu.attach(2, 0x10);
      await r.iommu.map(1, 0x10000, 0x20000, 0x2000, RW);
      await r.iommu.map(2, 0x40000, 0x50000, 0x1000, MAP_READ);
      r.faulty.plan = { kinds: ["silent"] };
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < 10; i++) {
        pending.push(outcome(r.iommu.map(1, 0x100000 + i * 0x1000, 0, 0x1000, RW)));
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.ok(r.iommu.pending >= 10);
      r.faulty.plan = NONE;
      const reset = r.iommu.reset();
      const results = await within(Promise.all(pending), 1000, "pending requests");
      for (const e of results) assert.ok(e instanceof DeviceResetError, String(e));
      await within(reset, 1000, "reset");
      assert.equal(r.iommu.pending, 0);
      assert.equal(r.device.endpointDomain(0x08), 1);
      assert.equal(r.device.endpointDomain(0x10), 2);
      sameMappings(r, 1);
      sameMappings(r, 2);
      assert.deepEqual(r.device.mappings(1).map((m) => m.start), [0x10000n]);
      const t = r.device.translate(0x10, 0x40008n, "read");
      assert.ok(t.ok && t.address === 0x50008n);
    }));

  test("VirtioIommu: 3000 concurrent callers on an 8-entry queue each get their own answer", () =>
    withRig(
      async (r) => {
        assert.equal(r.iommu.info.requestQueueSize, 8);
        await r.iommu.attach(1, 0x08);
        // Callers i % 3 == 0 map into domain 2, which exists on neither side: NOENT from the
        // device. The others succeed. Every caller must see its own outcome, in any interleaving.
        const n = 3000;
        const calls: Promise<unknown>[] = [];
        for (let i = 0; i < n; i++) {
          const domain = i % 3 === 0 ? 2 : 1;
          calls.push(
            outcome(
              r.iommu.map(domain, 0x100_0000 + i * 0x1000, 0x8000_0000 + i * 0x1000, 0x1000, RW),
            ),
          );
        }
        const results = await within(Promise.all(calls), 10_000, "3000 callers");
        for (let i = 0; i < n; i++) {
          if (i % 3 === 0) {
            const e = results[i];
            assert.ok(e instanceof IommuError && e.status === "NOENT", `caller ${i}: ${e}`);
          } else {
            assert.equal(results[i], "ok", `caller ${i}`);
          }
        }
        assert.equal(r.iommu.pending, 0);
        const m = r.device.mappings(1);
        assert.equal(m.length, n - n / 3);
        for (const x of m) assert.equal(x.phys - x.start, 0x8000_0000n - 0x100_0000n);
      },
      NONE,
      { queueSizes: [8, 8] },
      { maxQueueSize: 8 },
    ));

  test("VirtioIommu refuses bad caller input before anything is sent", () =>
    withRig(
      async (r) => {
        await r.iommu.attach(2, 0x08);
        const before = r.faulty.requests;
        const refused = async (what: string, call: () => Promise<unknown>): Promise<void> => {
          const e = await outcome(call());
          const clear = e instanceof IommuError && e.status === "DRIVER";
          assert.ok(clear, `${what}: ${e}`);
          assert.ok((e as Error).message.length > 10, `${what}: message says what failed`);
        };
        // Endpoint IDs out of range (32-bit unsigned).
        for (const ep of [-1, 2 ** 32, 1.5, NaN]) {
          await refused(`attach endpoint ${ep}`, () => r.iommu.attach(2, ep));
          await refused(`detach endpoint ${ep}`, () => r.iommu.detach(2, ep));
          await refused(`probe endpoint ${ep}`, () => r.iommu.probe(ep));
        }
        // Domains outside domain_range 2..9, or not integers.
        for (const d of [0, 1, 10, 2 ** 32, -1, 2.5, NaN]) {
          await refused(`attach domain ${d}`, () => r.iommu.attach(d, 0x10));
          await refused(`detach domain ${d}`, () => r.iommu.detach(d, 0x08));
          await refused(`map domain ${d}`, () => r.iommu.map(d, 0x10000, 0, 0x1000, RW));
          await refused(`unmap domain ${d}`, () => r.iommu.unmap(d, 0x10000, 0x1000));
        }
        // Flags the device did not offer (MMIO without F_MMIO), unknown bits, not integers.
        for (const flags of [4, 8, 0x100, -1, 1.5, 2 ** 32]) {
          await refused(`flags ${flags}`, () => r.iommu.map(2, 0x10000, 0, 0x1000, flags));
        }
        // Unaligned, empty, overflowing and out-of-input_range ranges.
        const ranges: Array<[bigint, bigint, bigint]> = [
          [0x10001n, 0n, 0x1000n],
          [0x10000n, 0x1n, 0x1000n],
          [0x10000n, 0n, 0xfffn],
          [0x10000n, 0n, 0n],
          [0xffff_ffff_ffff_f000n, 0n, 0x2000n],
          [0x10000n, 0xffff_ffff_ffff_f000n, 0x2000n],
          [1n << 64n, 0n, 0x1000n],
          [0x10000n, 0n, 1n << 64n],
          [-0x1000n, 0n, 0x1000n],
          [0x1000n, 0n, 0x1000n], // below input_range
          [0xfff_f000n, 0n, 0x2000n], // past input_range
        ];
        for (const [iova, phys, size] of ranges) {
          await refused(`map ${iova} ${phys} ${size}`, () => r.iommu.map(2, iova, phys, size, RW));
          if (phys === 0n) {
            await refused(`unmap ${iova} ${size}`, () => r.iommu.unmap(2, iova, size));
          }
        }
        await refused(
          "map a fractional number",
          () => r.iommu.map(2, 0x10000 + 0.5, 0, 0x1000, RW),
        );
        assert.equal(r.faulty.requests, before, "nothing was sent");
        assert.deepEqual(r.iommu.mappings(2), []);
      },
      NONE,
      {
        domainRange: { start: 2, end: 9 },
        inputRange: { start: 0x10000n, end: 0xfff_ffffn },
      },
      { features: ~(1n << 5n) },
    ));
}
