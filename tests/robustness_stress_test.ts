/** VirtioIommu under stress: a fault storm, reset in flight, 3000 callers, bad caller input. */

import assert from "node:assert/strict";
import { MAP_READ } from "../driver/iommu/device.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../driver/iommu/errors.ts";
import { VirtqueueError } from "../driver/virtio/virtqueue.ts";
import type { FaultKind } from "../mock/iommu/faults.ts";
import { note } from "./_notes.ts";
import { RING_LAYOUTS } from "./_ring_layouts.ts";
import { NONE, onRing, outcome, RW, sameMappings, within } from "./_robustness.ts";

for (const ring of RING_LAYOUTS) {
  const { test, rig, withRig } = onRing(ring);

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
