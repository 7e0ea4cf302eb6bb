/** VirtioInterrupts: refused sources, listen()/stop() dispatch, reserved ISR bits. */

import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import type { Transport } from "../transport/transport.ts";
import { type InterruptSource, VirtioInterrupts } from "../transport/interrupts.ts";
import { TransportError } from "../transport/transport.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { EchoDevice } from "./_echo_device.ts";
import { rig, roundTrip } from "./_interrupts.ts";

Deno.test("VirtioInterrupts refuses vectors on virtio-mmio and a line with several vectors", () => {
  const memory = new SimulatedMemory();
  const regs = new MmioDevice(new EchoDevice(), memory);
  const t = MmioTransport.create(regs);
  const vectors: InterruptSource = {
    delivery: "vectors",
    vectors: 3,
    wait: () => Promise.resolve(0),
    cancel() {},
    unmask() {},
    close() {},
  };
  assert.throws(() => new VirtioInterrupts(t, vectors), TransportError);
  assert.throws(() => MmioTransport.create(regs, { interrupts: vectors }), TransportError);
  assert.throws(() => new VirtioInterrupts(t, { ...vectors, delivery: "line" }), RangeError);
  assert.throws(() => new VirtioInterrupts(t, { ...vectors, vectors: 0 }), RangeError);
});

Deno.test("VirtioInterrupts.listen() dispatches until stop(), and can listen again", async () => {
  const r = rig("mmio", false);
  const seen: string[] = [];
  const handlers = {
    usedBuffer: () => seen.push("used"),
    configChange: () => seen.push("config"),
  };
  r.irq.listen(handlers);
  r.vq.setInterrupts(true);
  roundTrip(r);
  await new Promise((resolve) => setTimeout(resolve, 0));
  r.vq.popUsed();
  r.core.configChanged();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(seen, ["used", "config"]);
  r.irq.stop();
  assert.equal(r.irq.listening, false);
  r.core.configChanged();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(seen, ["used", "config"], "nothing dispatched after stop()");
  r.irq.listen(handlers);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(seen, ["used", "config", "config"], "the held interrupt after listen()");
  r.irq.stop();
});

Deno.test("VirtioInterrupts ignores reserved ISR bits: a status of only those is spurious", async () => {
  const r = rig("intx", false);
  const liar: Transport = Object.assign(Object.create(r.transport), {
    takeInterrupt: () => 0xfc, // bits 2-7 are reserved (§4.1.4.5)
  });
  const irq = new VirtioInterrupts(liar, r.source);
  r.source.fire(1);
  const pending = irq.next();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(irq.stats.spurious, 1, "nothing the driver knows in 0xfc");
  irq.stop();
  assert.equal(await pending, 0);
});
