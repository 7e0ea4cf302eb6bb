/**
 * Reserved regions: PROBE tells which IOVA ranges of an endpoint are not ordinary memory
 * (virtio 1.3 §5.13.6.6, RESV_MEM). On x86 every endpoint has the MSI doorbell
 * 0xfee00000-0xfeefffff: DMA there is an interrupt, passed through untranslated, and the
 * device refuses a MAP over it.
 *
 * Run: `deno run examples/reserved_regions.ts`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { IommuError, MAP_READ, MmioTransport, VirtioIommu } from "../mod.ts";
import { MmioDevice, MockIommuDevice, SimulatedMemory } from "../testing.ts";

const memory = new SimulatedMemory();
// Endpoint 0x20 has, besides the MSI doorbell, a firmware-reserved window the guest must avoid.
const device = new MockIommuDevice({
  endpoints: [{
    id: 0x20,
    reservedRegions: [
      { start: 0xfee00000n, end: 0xfeefffffn, subtype: "msi" },
      { start: 0x8000_0000n, end: 0x8fff_ffffn, subtype: "reserved" },
    ],
  }],
});
const iommu = await VirtioIommu.create(
  MmioTransport.create(new MmioDevice(device, memory)),
  memory,
);

const { regions } = await iommu.probe(0x20);
for (const r of regions) {
  console.log(`reserved region: ${r.kind} ${hex(r.start)}-${hex(r.end)}`);
}

await iommu.attach(1, 0x20);
// MSI writes pass through even though nothing is mapped there.
const msi = device.translate(0x20, 0xfee00004n, "write");
console.log(`MSI write to 0xfee00004: ${msi.ok ? "passes through" : "faults"}`);

// Mapping over a reserved region is refused (by the driver or the device).
try {
  await iommu.map(1, 0x8000_0000n, 0x1000_0000n, 0x1000, MAP_READ);
  console.log("map over the reserved window: accepted (unexpected)");
} catch (error) {
  if (!(error instanceof IommuError)) throw error;
  console.log(`map over the reserved window: refused, status ${error.status}`);
}
await iommu.close();
