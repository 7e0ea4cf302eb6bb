/**
 * Interrupts end to end below the virtio-iommu driver: the mock's MMIO line, PCI INTx and PCI
 * MSI-X raise interrupts per the spec, honour the driver's suppression (VRING_AVAIL_F_NO_INTERRUPT
 * and EVENT_IDX `used_event`, virtio 1.3 §2.7.7, §2.7.10) in both directions, and
 * {@link VirtioInterrupts} maps vectors (§4.1.5.1.2), reads the ISR (§4.1.4.5) or
 * InterruptStatus (§4.2.2) and tells used buffers from configuration changes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import {
  type InterruptSource,
  NOTIFY_CONFIG_CHANGE,
  NOTIFY_USED_BUFFER,
  VirtioInterrupts,
} from "../transport/interrupts.ts";
import { TransportError } from "../transport/transport.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import type { MockInterruptSource } from "../mock/interrupts.ts";
import type { VirtioCore } from "../mock/virtio_core.ts";
import { MSIX_BAR, type MsixOptions } from "../mock/pci_interrupts.ts";
import {
  MSIX_CONTROL_ENABLE,
  MSIX_CONTROL_MASK_ALL,
  MSIX_ENTRY_SIZE,
  MsixCap,
  MsixEntry,
  PCI_CAP_ID_MSIX,
  PCI_COMMAND_INTX_DISABLE,
  PCI_STATUS_INTERRUPT,
  VIRTIO_MSI_NO_VECTOR,
} from "../spec/interrupts.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";

/** EchoDevice features without EVENT_IDX. */
const NO_EVENT_IDX = ECHO_FEATURES & ~(1n << 29n);

/** How the rig's device interrupts. */
type Wiring = "mmio" | "intx" | "msix";
const WIRINGS: readonly Wiring[] = ["mmio", "intx", "msix"];

interface Rig {
  transport: Transport;
  core: VirtioCore;
  device: EchoDevice;
  memory: SimulatedMemory;
  source: MockInterruptSource;
  irq: VirtioInterrupts;
  vq: SplitVirtqueue;
  fn: PciFunction | null;
}

/**
 * An echo device (manual: it answers only when the test says) behind `wiring`, brought up by
 * hand with queue 0 as a driver-side SplitVirtqueue and the vectors assigned.
 */
function rig(wiring: Wiring, eventIdx: boolean, msix: MsixOptions = { vectors: 3 }): Rig {
  const memory = new SimulatedMemory();
  const device = new EchoDevice({ manual: true, queueSizes: [8, 4] });
  let transport: Transport;
  let core: VirtioCore;
  let source: MockInterruptSource;
  let fn: PciFunction | null = null;
  if (wiring === "mmio") {
    const regs = new MmioDevice(device, memory);
    source = regs.interrupts();
    transport = MmioTransport.create(regs, { interrupts: source });
    core = regs.core;
  } else {
    fn = new PciFunction(device, memory, { msix });
    const f = fn;
    source = wiring === "msix" ? f.msixInterrupts() : f.intxInterrupts();
    transport = PciTransport.create(f.config, (i) => f.bar(i), { interrupts: source });
    core = f.core;
  }
  const irq = new VirtioInterrupts(transport, source);
  const vq = new SplitVirtqueue(0, 8, memory, { eventIdx });
  transport.setStatus(0);
  transport.setStatus(1 | 2);
  transport.writeDriverFeatures(eventIdx ? ECHO_FEATURES : NO_EVENT_IDX);
  transport.setStatus(1 | 2 | 8);
  irq.assignVectors([0, 1]);
  transport.enableQueue(0, vq.size, vq.addresses);
  transport.setStatus(1 | 2 | 8 | 4);
  return { transport, core, device, memory, source, irq, vq, fn };
}

/** Sends one chain on queue 0 and lets the device answer it; returns the head. */
function roundTrip(r: Rig): number {
  const buf = r.memory.alloc(32, 16);
  const head = r.vq.add2(buf.addrLo, buf.addrHi, 16, buf.addrLo + 16, buf.addrHi, 16);
  if (r.vq.publish()) r.transport.notify(0);
  r.device.process(0);
  return head;
}

/** Resolves with the source's next wake-up, or "none" when nothing fires within a tick. */
async function nextWake(source: InterruptSource): Promise<number | "none"> {
  const wake = source.wait();
  const none = new Promise<"none">((resolve) => setTimeout(() => resolve("none"), 5));
  const result = await Promise.race([wake, none]);
  if (result === "none") source.cancel();
  return result;
}

for (const wiring of WIRINGS) {
  for (const eventIdx of [false, true]) {
    const name = `${wiring}${eventIdx ? " with EVENT_IDX" : ""}`;

    Deno.test(`${name}: no interrupt is raised while the driver suppresses them`, async () => {
      const r = rig(wiring, eventIdx);
      assert.equal(r.vq.setInterrupts(false), true);
      if (eventIdx) {
        // With EVENT_IDX the device notifies the first used buffer of a fresh queue whatever
        // used_event says (QEMU's signalled_used_valid); the driver tolerates it (§2.7.10).
        roundTrip(r);
        r.vq.popUsed();
        assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
      }
      const before = r.core.interruptCount;
      const fired = r.source.fired;
      for (let i = 0; i < 3; i++) {
        roundTrip(r);
        r.vq.popUsed();
      }
      assert.equal(r.core.interruptCount, before, "the device saw suppression each time");
      assert.equal(r.source.fired, fired);
      assert.equal(await nextWake(r.source), "none");
      assert.deepEqual(r.core.violations, []);
    });

    Deno.test(`${name}: every answer interrupts while enabled, none is lost`, async () => {
      const r = rig(wiring, eventIdx);
      assert.equal(r.vq.setInterrupts(true), true, "nothing used yet");
      for (let i = 0; i < 4; i++) {
        const head = roundTrip(r);
        const bits = await r.irq.next();
        assert.equal(bits, NOTIFY_USED_BUFFER, `round ${i}`);
        assert.equal(r.vq.popUsed(), head);
      }
      assert.equal(r.core.interruptCount, 4);
      assert.equal(r.irq.stats.usedBuffer, 4);
      assert.equal(r.irq.stats.spurious, 0);
      assert.deepEqual(r.core.violations, []);
    });

    Deno.test(`${name}: setInterrupts(true) reports an answer that came while suppressed`, async () => {
      const r = rig(wiring, eventIdx);
      r.vq.setInterrupts(false);
      if (eventIdx) {
        roundTrip(r); // the fresh queue's one notification (see above)
        r.vq.popUsed();
        await r.irq.next();
      }
      const fired = r.source.fired;
      const head = roundTrip(r);
      // The answer raised no interrupt: a driver that now just enables and sleeps would hang.
      assert.equal(r.source.fired, fired);
      assert.equal(r.vq.setInterrupts(true), false, "poll before sleeping");
      assert.equal(r.vq.popUsed(), head);
      assert.equal(r.vq.setInterrupts(true), true);
      roundTrip(r);
      assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
    });

    Deno.test(`${name}: a configuration change comes as NOTIFY_CONFIG_CHANGE`, async () => {
      const r = rig(wiring, eventIdx);
      r.core.configChanged();
      assert.equal(await r.irq.next(), NOTIFY_CONFIG_CHANGE);
      assert.equal(r.irq.stats.configChange, 1);
    });
  }
}

Deno.test("MMIO: the line stays masked until unmasked, and InterruptACK is written", async () => {
  const r = rig("mmio", false);
  r.vq.setInterrupts(true);
  roundTrip(r);
  r.core.configChanged();
  // Two events, one line: one wake-up, both bits in InterruptStatus, both acknowledged.
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER | NOTIFY_CONFIG_CHANGE);
  assert.equal(r.source.fired, 1);
  assert.equal(r.core.interruptStatus, 0, "acknowledged through InterruptACK");
  assert.equal(await nextWake(r.source), "none");
});

Deno.test("PCI INTx: Interrupt Status mirrors the ISR, Interrupt Disable masks until unmask", async () => {
  const r = rig("intx", false);
  const fn = r.fn!;
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(fn.config.read16(0x06) & PCI_STATUS_INTERRUPT, PCI_STATUS_INTERRUPT);
  assert.equal(
    fn.config.read16(0x04) & PCI_COMMAND_INTX_DISABLE,
    PCI_COMMAND_INTX_DISABLE,
    "the platform masked INTx when it fired (as uio_pci_generic does)",
  );
  r.vq.popUsed();
  roundTrip(r); // ISR still set, line masked: no second interrupt yet
  assert.equal(r.source.fired, 1);
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER); // ISR read, then unmask
  assert.equal(fn.config.read16(0x06) & PCI_STATUS_INTERRUPT, 0, "the ISR read deasserts");
  assert.equal(fn.config.read16(0x04) & PCI_COMMAND_INTX_DISABLE, 0, "unmasked");
  assert.equal(await nextWake(r.source), "none", "both answers were in the one ISR read");
});

Deno.test("PCI INTx: unmasking with the ISR still set fires again (level-triggered)", async () => {
  const r = rig("intx", false);
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(await r.source.wait(), 1);
  // Unmask without reading the ISR: the line is still asserted and fires at once.
  r.source.unmask();
  assert.equal(r.source.fired, 2);
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
});

Deno.test("PCI INTx: an interrupt with ISR 0 is counted spurious and waited past", async () => {
  const r = rig("intx", false);
  r.source.fire(1); // another function on the shared line
  r.vq.setInterrupts(true);
  const pending = r.irq.next();
  await new Promise((resolve) => setTimeout(resolve, 0));
  roundTrip(r);
  assert.equal(await pending, NOTIFY_USED_BUFFER);
  assert.equal(r.irq.stats.spurious, 1);
});

Deno.test("PCI MSI-X: the function has an MSI-X capability with its table in BAR 1", () => {
  const memory = new SimulatedMemory();
  const fn = new PciFunction(new EchoDevice(), memory, { msix: { vectors: 5 } });
  let ptr = fn.config.read8(0x34);
  let found = -1;
  for (let n = 0; n < 48 && ptr !== 0; n++, ptr = fn.config.read8(ptr + 1)) {
    if (fn.config.read8(ptr) === PCI_CAP_ID_MSIX) found = ptr;
  }
  assert.ok(found > 0, "MSI-X capability in the list");
  assert.equal(fn.config.read16(found + MsixCap.MESSAGE_CONTROL) & 0x7ff, 4, "table size − 1");
  assert.equal(fn.config.read32(found + MsixCap.TABLE) & 7, MSIX_BAR);
  assert.equal(fn.bar(MSIX_BAR)?.read32(MsixEntry.VECTOR_CONTROL), 1, "vectors start masked");
  // The transport still finds its four virtio structures past the MSI-X capability.
  assert.equal(new PciTransport(fn.config, (i) => fn.bar(i)).numQueues, 3);
});

Deno.test("PCI MSI-X: config and each queue get their own vector, read back", () => {
  const r = rig("msix", true, { vectors: 3 });
  assert.equal(r.irq.mode, "msix");
  assert.equal(r.fn!.irq.configVector, 0);
  assert.equal(r.fn!.irq.queueVector(0), 1);
  assert.equal(r.fn!.irq.queueVector(1), 2);
  assert.equal(r.source.delivery, "vectors");
});

Deno.test("PCI MSI-X: each queue's answer fires its own vector and no ISR is read", async () => {
  const r = rig("msix", false, { vectors: 3 });
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(await r.source.wait(), 1 << 1, "queue 0 is on vector 1");
  assert.notEqual(r.core.interruptStatus, 0, "the driver left the ISR alone (§4.1.4.5.2)");
  r.core.configChanged();
  assert.equal(await r.source.wait(), 1 << 0, "the configuration is on vector 0");
});

Deno.test("PCI MSI-X: with too few vectors the queues share one", async () => {
  const r = rig("msix", false, { vectors: 2 });
  assert.equal(r.irq.mode, "msix-shared");
  assert.equal(r.fn!.irq.queueVector(0), 1);
  assert.equal(r.fn!.irq.queueVector(1), 1);
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
});

Deno.test("PCI MSI-X: a device that reads back NO_VECTOR makes the driver retry with fewer", () => {
  // It can map only vectors 0 and 1: per-queue vectors fail on queue 1 (vector 2).
  const r = rig("msix", false, { vectors: 3, mappable: 2 });
  assert.equal(r.irq.mode, "msix-shared");
  assert.equal(r.fn!.irq.queueVector(1), 1);
});

Deno.test("PCI MSI-X: no plan maps: everything is unmapped and TransportError names the refusal", () => {
  const memory = new SimulatedMemory();
  const fn = new PciFunction(new EchoDevice({ queueSizes: [8, 4] }), memory, {
    msix: { vectors: 3, mappable: 1 },
  });
  const source = fn.msixInterrupts();
  const t = PciTransport.create(fn.config, (i) => fn.bar(i), { interrupts: source });
  const irq = new VirtioInterrupts(t, source);
  t.setStatus(1 | 2);
  t.writeDriverFeatures(ECHO_FEATURES);
  t.setStatus(1 | 2 | 8);
  assert.throws(
    () => irq.assignVectors([0, 1]),
    (e: Error) =>
      e instanceof TransportError && /NO_VECTOR for queue 0 \(vector 1\)/.test(e.message),
  );
  assert.equal(fn.irq.configVector, VIRTIO_MSI_NO_VECTOR);
  assert.equal(fn.irq.queueVector(0), VIRTIO_MSI_NO_VECTOR);
});

Deno.test("PCI MSI-X: a device that reads back another vector is refused", () => {
  const memory = new SimulatedMemory();
  const fn = new PciFunction(new EchoDevice(), memory, { msix: { vectors: 3 } });
  const source = fn.msixInterrupts();
  const t = PciTransport.create(fn.config, (i) => fn.bar(i));
  const liar: Transport = Object.assign(Object.create(t), {
    setConfigVector: () => 2,
    setQueueVector: () => 2,
  });
  assert.throws(
    () => new VirtioInterrupts(liar, source).assignVectors([0]),
    /read back vector 2 for the configuration change, not 0/,
  );
});

Deno.test("PCI MSI-X: a vector outside the table is a violation and reads back NO_VECTOR", () => {
  const memory = new SimulatedMemory();
  const fn = new PciFunction(new EchoDevice(), memory, { msix: { vectors: 2 } });
  const t = PciTransport.create(fn.config, (i) => fn.bar(i));
  assert.equal(t.setConfigVector(5), VIRTIO_MSI_NO_VECTOR);
  assert.match(fn.core.violations[0], /§4\.1\.5\.1\.2\.1.*vector 5.*2-entry MSI-X table/);
});

Deno.test("PCI MSI-X: a device reset unmaps every event (§4.1.5.1.2.1)", () => {
  const r = rig("msix", false);
  r.transport.setStatus(0);
  assert.equal(r.transport.setConfigVector!(VIRTIO_MSI_NO_VECTOR), VIRTIO_MSI_NO_VECTOR);
  assert.equal(r.fn!.irq.queueVector(0), VIRTIO_MSI_NO_VECTOR);
  assert.equal(r.fn!.irq.queueVector(1), VIRTIO_MSI_NO_VECTOR);
});

Deno.test("PCI MSI-X: a masked vector sets its pending bit and fires once unmasked", async () => {
  const r = rig("msix", false);
  const bar = r.fn!.bar(MSIX_BAR)!;
  const entry1 = 1 * MSIX_ENTRY_SIZE + MsixEntry.VECTOR_CONTROL;
  bar.write32(entry1, 1);
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(r.source.fired, 0);
  assert.equal(bar.read32(0x800) & 2, 2, "pending bit of vector 1");
  bar.write32(entry1, 0);
  assert.equal(await r.source.wait(), 1 << 1);
  assert.equal(bar.read32(0x800), 0);
});

Deno.test("PCI MSI-X: Function Mask holds every vector; clearing it delivers them", async () => {
  const r = rig("msix", false);
  const cap = r.fn!.irq.capOffset;
  const control = r.fn!.config.read16(cap + MsixCap.MESSAGE_CONTROL);
  r.fn!.config.write16(cap + MsixCap.MESSAGE_CONTROL, control | MSIX_CONTROL_MASK_ALL);
  assert.equal(r.fn!.config.read16(cap + MsixCap.MESSAGE_CONTROL) & 0x7ff, 2, "size read-only");
  r.core.configChanged();
  assert.equal(r.source.fired, 0);
  r.fn!.config.write16(cap + MsixCap.MESSAGE_CONTROL, MSIX_CONTROL_ENABLE);
  assert.equal(await r.source.wait(), 1);
});

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
