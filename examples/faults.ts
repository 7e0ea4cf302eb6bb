/**
 * Fault events: when an endpoint's DMA hits no mapping, the device posts a fault report on the
 * event queue (virtio 1.3 §5.13.7). The driver collects them with takeFaults(), or calls a
 * listener for each with onFault().
 *
 * Run: `deno run examples/faults.ts`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { MAP_READ, MmioTransport, VirtioIommu } from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

const memory = new SimulatedMemory();
// bypass: false, so an endpoint outside any domain faults too (reason DOMAIN).
const device = new MockIommuDevice({ bypass: false });
const iommu = await VirtioIommu.create(
  MmioTransport.create(new MmioDevice(device, memory)),
  memory,
);
const stop = iommu.onFault((f) => console.log(`  listener saw a ${f.reason} fault`));

device.translate(0x18, 0x1000n, "read"); // not attached: DOMAIN
await iommu.attach(1, 0x08);
await iommu.map(1, 0x4000, 0x9000, 0x1000, MAP_READ);
device.translate(0x08, 0x4000n, "write"); // read-only mapping: MAPPING (permission)
device.translate(0x08, 0x7000n, "read"); // nothing mapped: MAPPING

for (const f of iommu.takeFaults()) {
  const access = f.write ? "write" : f.read ? "read" : "access";
  const at = f.address === null ? "" : ` at ${hex(f.address)}`;
  console.log(`fault: ${f.reason} endpoint ${hex(f.endpoint)} ${access}${at}`);
}
stop();
await iommu.close();
