/**
 * Interrupts: a transport that carries an interrupt source lets the driver sleep on it. Here
 * the mock PCI function has an MSI-X table (QEMU's virtio-iommu-pci has none: in a guest its
 * INTx comes through uio_pci_generic, `host.ts`); the driver maps the configuration change and
 * each queue to a vector, fault reports arrive by interrupt with nobody polling, and a
 * configuration change re-reads `bypass`.
 *
 * Run: `deno run examples/interrupts.ts`
 *
 * @module
 */

import { hex, PciTransport, VirtioIommu } from "../mod.ts";
import { MockIommuDevice, PciFunction, SimulatedMemory } from "../testing.ts";

const memory = new SimulatedMemory();
const device = new MockIommuDevice();
const fn = new PciFunction(device, memory, { msix: { vectors: 3 } });
const iommu = await VirtioIommu.create(
  PciTransport.create(fn.config, (i) => fn.bar(i), { interrupts: fn.msixInterrupts() }),
  memory,
);
console.log(`interrupts: ${iommu.info.interrupts.mode}`); // msix: one vector per queue
iommu.onConfigChange((c) => console.log(`configuration change: bypass is now ${c.bypass}`));

await iommu.attach(1, 0x08); // attached, nothing mapped: every access faults
const faults = (async () => {
  // Sleeps between reports: no timer runs while nothing happens.
  for await (const f of iommu.faults({ idleMs: 100 })) {
    console.log(`fault by interrupt: ${f.reason} at ${hex(f.address ?? 0n)}`);
  }
})();
device.translate(0x08, 0x4000n, "read");
await new Promise((resolve) => setTimeout(resolve, 10));
device.translate(0x08, 0x5000n, "write");
device.changeBypass(false); // the device changes its config
await faults;

const stats = iommu.interruptStats!;
console.log(
  `interrupts: ${stats.usedBuffer} used-buffer, ${stats.configChange} configuration change`,
);
await iommu.close();
