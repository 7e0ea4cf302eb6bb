/**
 * Every public method of VirtioIommu and RequestBatch refuses a bad argument the same way
 * (driver/iommu/arguments.ts): an IommuError with status "DRIVER" whose message names the
 * parameter and the value; promise-returning methods reject (never throw), the others throw;
 * nothing reaches the device. Issue 18's cases first: a bigint domain used to throw a raw
 * TypeError, a negative iova a plain RangeError, and MAP with flags 0 succeeded silently.
 */

import assert from "node:assert/strict";
import { MAP_MMIO, MAP_READ, MAP_WRITE, VirtioIommu } from "../driver/iommu/device.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import { FaultyDevice } from "../mock/iommu/faults.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { plug } from "./_fixtures.ts";

const RW = MAP_READ | MAP_WRITE;
// deno-lint-ignore no-explicit-any
type Any = any;

async function withDriver(
  body: (iommu: VirtioIommu, requests: () => number) => Promise<void>,
): Promise<void> {
  const memory = new SimulatedMemory();
  const faulty = new FaultyDevice(new MockIommuDevice(), { kinds: [] });
  const { transport } = plug("mmio", faulty, memory);
  const iommu = await VirtioIommu.create(transport, memory);
  try {
    await iommu.attach(1, 0x08);
    const before = faulty.requests;
    await body(iommu, () => faulty.requests - before);
  } finally {
    await iommu.close();
  }
}

/** The refusal every bad argument gets: IommuError "DRIVER" naming `what`. */
function isRefusal(what: RegExp): (e: unknown) => boolean {
  return (e: unknown): boolean => {
    assert.ok(e instanceof IommuError, `not an IommuError: ${e}`);
    assert.equal(e.status, "DRIVER");
    assert.equal(e.code, -1);
    assert.match(e.message, what);
    return true;
  };
}

/** A promise-returning call with a bad argument: returns a promise that rejects. */
async function rejects(call: () => Promise<unknown>, what: RegExp): Promise<void> {
  let p: Promise<unknown>;
  try {
    p = call();
  } catch (error) {
    assert.fail(`threw synchronously instead of rejecting: ${error}`);
  }
  assert.ok(p instanceof Promise);
  await assert.rejects(p, isRefusal(what));
}

Deno.test("Issue 18's cases: a bigint ID, a negative iova and flags 0 are IommuError DRIVER naming the value", () =>
  withDriver(async (iommu, requests) => {
    await rejects(
      () => iommu.attach(3n as Any, 8),
      /^Invalid domain 3n: expected a 32-bit unsigned integer$/,
    );
    await rejects(
      () => iommu.attach(-1, 8),
      /^Invalid domain -1: expected a 32-bit unsigned integer$/,
    );
    await rejects(() => iommu.map(1, -0x1000, 0x1000, 0x1000, RW), /^Invalid iova -4096: /);
    await rejects(
      () => iommu.map(1, 0x1000, 0x1000, 0x1000, 0),
      /^Invalid flags 0x0: expected MAP_READ, MAP_WRITE/,
    );
    assert.equal(requests(), 0, "nothing was sent");
    assert.deepEqual(iommu.mappings(1), []);
  }));

Deno.test("VirtioIommu request methods reject each bad argument with IommuError DRIVER", () =>
  withDriver(async (iommu, requests) => {
    // IDs: not numbers, not integers, not 32-bit.
    for (
      const [v, text] of [[8n, "8n"], ["8", '"8"'], [1.5, "1.5"], [2 ** 32, "4294967296"], [
        NaN,
        "NaN",
      ], [null, "null"]] as const
    ) {
      await rejects(() => iommu.attach(1, v as Any), new RegExp(`^Invalid endpoint ${text}: `));
      await rejects(() => iommu.detach(1, v as Any), new RegExp(`^Invalid endpoint ${text}: `));
      await rejects(() => iommu.probe(v as Any), new RegExp(`^Invalid endpoint ${text}: `));
      await rejects(() => iommu.detach(v as Any, 8), new RegExp(`^Invalid domain ${text}: `));
      await rejects(
        () => iommu.map(v as Any, 0x1000, 0x1000, 0x1000, RW),
        new RegExp(`^Invalid domain ${text}: `),
      );
      await rejects(
        () => iommu.unmap(v as Any, 0x1000, 0x1000),
        new RegExp(`^Invalid domain ${text}: `),
      );
    }
    // Addresses and sizes: negative, fractional, unsafe numbers, out-of-range bigints, strings.
    await rejects(
      () => iommu.map(1, "0x1000" as Any, 0x1000, 0x1000, RW),
      /^Invalid iova "0x1000": /,
    );
    await rejects(() => iommu.map(1, 0x1000, -1n, 0x1000, RW), /^Invalid phys -1n: /);
    await rejects(
      () => iommu.map(1, 0x1000, 0x1000, 1n << 64n, RW),
      /^Invalid size 18446744073709551616n: /,
    );
    await rejects(
      () => iommu.map(1, 0x1000, 0x1000, 2 ** 53, RW),
      /^Invalid size 9007199254740992: /,
    );
    await rejects(() => iommu.unmap(1, 4096.5, 0x1000), /^Invalid iova 4096.5: /);
    await rejects(() => iommu.unmap(1, 0x1000, -0x1000), /^Invalid size -4096: /);
    // Flags: not numbers, no access bit, unknown bits.
    await rejects(() => iommu.map(1, 0x1000, 0x1000, 0x1000, 3n as Any), /^Invalid flags 3n: /);
    await rejects(() => iommu.map(1, 0x1000, 0x1000, 0x1000, MAP_MMIO), /^Invalid flags 0x4: /);
    await rejects(() => iommu.map(1, 0x1000, 0x1000, 0x1000, 0x10), /Cannot map with flags 0x10/);
    await rejects(() => iommu.map(1, 0x1000, 0x1000, 0x1000, -1), /^Invalid flags -1: /);
    // Options objects: wrong shape, wrong values.
    await rejects(
      () => iommu.map(1, 0x1000, 0x1000, 0x1000, RW, "split" as Any),
      /^Invalid options "split": expected an options object$/,
    );
    await rejects(
      () => iommu.map(1, 0x1000, 0x1000, 0x1000, RW, { split: 1 as Any }),
      /^Invalid options.split 1: /,
    );
    await rejects(
      () => iommu.attach(2, 0x10, { bypass: "yes" as Any }),
      /^Invalid options.bypass "yes": /,
    );
    await rejects(
      () => iommu.attach(2, 0x10, { group: "all" as Any }),
      /^Invalid options.group "all": /,
    );
    await rejects(() => iommu.reset({ reattach: "no" as Any }), /^Invalid options.reattach "no": /);
    await rejects(() => iommu.nextFault(-5), /^Invalid timeoutMs -5: /);
    assert.equal(requests(), 0, "nothing was sent");
  }));

Deno.test("VirtioIommu's synchronous methods and RequestBatch throw IommuError DRIVER for bad arguments", () =>
  withDriver(async (iommu, requests) => {
    const throws = (call: () => unknown, what: RegExp): void =>
      assert.throws(call, isRefusal(what));
    throws(() => iommu.mappings(1.5), /^Invalid domain 1.5: /);
    throws(() => iommu.freeDomain("1" as Any), /^Invalid domain "1": /);
    throws(() => iommu.iovaToPhys(1, -1), /^Invalid iova -1: /);
    throws(() => iommu.iovaToPhys(-1, 0), /^Invalid domain -1: /);
    throws(() => iommu.reservedRegions(2 ** 32), /^Invalid endpoint 4294967296: /);
    throws(() => iommu.setBypass("yes" as Any), /^Invalid enabled "yes": expected true or false$/);
    throws(() => iommu.allocateDomain({ bypass: 0 as Any }), /^Invalid options.bypass 0: /);
    throws(() => iommu.onFault(null as Any), /^Invalid listener null: expected a function$/);
    throws(() => iommu.faults({ idleMs: NaN }), /^Invalid options.idleMs NaN: /);
    throws(
      () => iommu.faults({ signal: {} as Any }),
      /^Invalid options.signal \[object Object\]: /,
    );
    throws(() => iommu.setIsolationGroups(5 as Any), /^Invalid groups 5: /);
    throws(
      () => iommu.setIsolationGroups([{ endpointIds: [8n] } as Any]),
      /^Invalid group endpoint 8n: /,
    );
    const batch = iommu.batch();
    throws(() => batch.map(1, -1, 0, 0x1000, RW), /^Invalid iova -1: /);
    throws(() => batch.map(1, 0x1000, 0, 0x1000, 0), /^Invalid flags 0x0: /);
    throws(() => batch.unmap(1n as Any, 0, 0x1000), /^Invalid domain 1n: /);
    batch.map(1, 0x1000, 0x2000, 0x1000, RW);
    throws(() => batch.status(1), /^Invalid index 1: expected an integer in 0..0$/);
    throws(() => batch.error(-1), /^Invalid index -1: /);
    assert.equal(await batch.submit(), 0);
    assert.equal(batch.status(0), "OK");
    assert.equal(requests(), 1, "only the good MAP was sent");
  }));

Deno.test("VirtioIommu.create() rejects bad options with IommuError DRIVER before touching the device", async () => {
  const memory = new SimulatedMemory();
  const faulty = new FaultyDevice(new MockIommuDevice(), { kinds: [] });
  const { transport } = plug("mmio", faulty, memory);
  const create = (options: Any): Promise<unknown> => VirtioIommu.create(transport, memory, options);
  await rejects(() => create({ timeoutMs: -1 }), /^Invalid options.timeoutMs -1: /);
  await rejects(() => create({ spinMs: Infinity }), /^Invalid options.spinMs Infinity: /);
  await rejects(() => create({ maxQueueSize: 3.5 }), /^Invalid options.maxQueueSize 3.5: /);
  await rejects(() => create({ features: 1 }), /^Invalid options.features 1: expected a bigint/);
  await rejects(() => create({ identitySubtype: 256 }), /^Invalid options.identitySubtype 256: /);
  await rejects(() => create({ allowIdentity: "yes" }), /^Invalid options.allowIdentity "yes": /);
  await rejects(() => create([]), /^Invalid options \[object Array\]: /);
  assert.equal(transport.getStatus(), 0, "the device was not even reset");
});
