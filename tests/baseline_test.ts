/**
 * The benchmarks' hand-written request loop ("the limit", also run against QEMU's device in
 * the peer benchmark as "device alone") must send what the driver sends: requests the mock
 * accepts without a rule broken, and nothing left mapped.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Baseline } from "../bench/_setup.ts";
import { RING_LAYOUTS } from "./_ring_layouts.ts";
import { MmioTransport } from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

for (const ring of RING_LAYOUTS) {
  Deno.test(`Baseline (${ring} ring): pairs, batches and range UNMAPs leave the mock clean and unviolated`, async () => {
    const memory = new SimulatedMemory({ size: 16 * 1024 * 1024 });
    const device = new MockIommuDevice({ endpoints: [{ id: 0x18 }], packed: ring === "packed" });
    const mmio = new MmioDevice(device, memory);
    const base = await Baseline.overFor(ring, MmioTransport.create(mmio), memory, {
      size: 128,
      endpoint: 0x18,
      iovaBase: 0x400_0000,
    });
    assert.equal(device.endpointDomain(0x18), 1);
    assert.equal(mmio.core.packedQueue(0) !== null, ring === "packed");
    const handled = device.requestsHandled;
    for (let i = 0; i < 40; i++) base.pairOneAtATime(i);
    // More than a lap of the ring, so the packed loop's wrap counters turn over.
    for (let i = 0; i < 3; i++) base.batch(64);
    base.batchRange(32);
    assert.equal(device.requestsHandled - handled, 80 + 3 * 64 + 33);
    assert.equal(device.lastStatus, 0, "the range UNMAP succeeded");
    assert.deepEqual(device.mappings(1), [], "every MAP was undone");
    assert.throws(() => base.batchRange(64), RangeError, "64 + 1 chains do not fit 128 / 2");
    assert.deepEqual(mmio.core.violations, []);
    await base.close();
    assert.equal(memory.allocated, 0, "close() frees the rings and slots");
  });
}
