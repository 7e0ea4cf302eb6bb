/** PCI MSI-X: the capability, vector assignment and read-back (§4.1.5.1.2), masking. */

import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import { NOTIFY_USED_BUFFER, VirtioInterrupts } from "../transport/interrupts.ts";
import { TransportError } from "../transport/transport.ts";
import { PciFunction } from "../mock/pci_device.ts";
import { MSIX_BAR } from "../mock/pci_interrupts.ts";
import {
  MSIX_CONTROL_ENABLE,
  MSIX_CONTROL_MASK_ALL,
  MSIX_ENTRY_SIZE,
  MsixCap,
  MsixEntry,
  PCI_CAP_ID_MSIX,
  VIRTIO_MSI_NO_VECTOR,
} from "../spec/interrupts.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import { rig, roundTrip } from "./_interrupts.ts";

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
