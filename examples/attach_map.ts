/**
 * Attach and map: put an endpoint in a domain, map one page of IOVA space onto a page of
 * memory, and watch the endpoint's DMA land there (virtio 1.3 §5.13.6.3, §5.13.6.5).
 *
 * Run: `deno run examples/attach_map.ts`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { MAP_READ, MAP_WRITE, PciTransport, regionAddress, VirtioIommu } from "../mod.ts";
import { MockIommuDevice, PciFunction, SimulatedMemory } from "../testing.ts";

// The mock mirrors QEMU q35's virtio-iommu-pci; endpoint 0x08 is the PCI function 00:01.0.
const memory = new SimulatedMemory();
const device = new MockIommuDevice();
const fn = new PciFunction(device, memory);
const iommu = await VirtioIommu.create(PciTransport.create(fn.config, (i) => fn.bar(i)), memory);

const endpoint = 0x08;
const domain = iommu.allocateDomain();
await iommu.attach(domain, endpoint);

// One 4 KiB page of (simulated) RAM for the device to write into, mapped at IOVA 0x100000.
const page = memory.alloc(0x1000);
const iova = 0x10_0000n;
await iommu.map(domain, iova, regionAddress(page), 0x1000, MAP_READ | MAP_WRITE);

const dma = device.translate(endpoint, iova + 0x80n, "write");
if (!dma.ok) throw new Error(`unexpected fault ${dma.fault.reason}`);
console.log(`domain ${domain}: endpoint 0x08 writes iova ${hex(iova + 0x80n)}`);
console.log(`  -> lands at physical ${hex(dma.address)}`);
for (const m of iommu.mappings(domain)) {
  console.log(
    `  mapping: iova ${hex(m.iova)}-${hex(m.last)} -> ${hex(m.phys)}`,
  );
}

// After UNMAP the same DMA faults.
await iommu.unmap(domain, iova, 0x1000);
const after = device.translate(endpoint, iova + 0x80n, "write");
console.log(`after unmap: ${after.ok ? "still mapped" : `fault ${after.fault.reason}`}`);

await iommu.close();
