/** An echo device behind MMIO, INTx or MSI-X with a driver queue, for interrupts_*_test.ts. */

import { SplitVirtqueue } from "../driver/virtio/split_queue.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import { VirtioInterrupts } from "../transport/interrupts.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import type { MockInterruptSource } from "../mock/interrupts.ts";
import type { VirtioCore } from "../mock/virtio_core.ts";
import type { MsixOptions } from "../mock/pci_interrupts.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";

/** EchoDevice features without EVENT_IDX. */
export const NO_EVENT_IDX = ECHO_FEATURES & ~(1n << 29n);

/** How the rig's device interrupts. */
export type Wiring = "mmio" | "intx" | "msix";

export interface Rig {
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
export function rig(wiring: Wiring, eventIdx: boolean, msix: MsixOptions = { vectors: 3 }): Rig {
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
export function roundTrip(r: Rig): number {
  const buf = r.memory.alloc(32, 16);
  const head = r.vq.add2(buf.addrLo, buf.addrHi, 16, buf.addrLo + 16, buf.addrHi, 16);
  if (r.vq.publish()) r.transport.notify(0);
  r.device.process(0);
  return head;
}
