/**
 * The mock virtio-iommu device and the device-side harness, for testing code against a device
 * that behaves like QEMU's without a VM. The mock is strict: it records every spec rule a
 * driver breaks in `core.violations`.
 *
 * @example Check that a driver broke no rule
 * ```ts
 * import { MmioTransport, VirtioIommu } from "@viommu/viommu";
 * import { MmioDevice, MockIommuDevice, SimulatedMemory } from "@viommu/viommu/testing";
 *
 * const memory = new SimulatedMemory();
 * const mmio = new MmioDevice(new MockIommuDevice({ endpoints: [{ id: 1 }] }), memory);
 * const iommu = await VirtioIommu.create(MmioTransport.create(mmio), memory);
 * await iommu.attach(3, 1);
 * if (mmio.core.violations.length > 0) throw new Error(mmio.core.violations.join("\n"));
 * await iommu.close();
 * ```
 *
 * @module
 */

export { SimulatedMemory, type SimulatedMemoryOptions } from "./transport/memory.ts";
export type {
  Chain,
  ChainSegment,
  DeviceContext,
  DeviceModel,
  DeviceQueue,
} from "./mock/device.ts";
export { type CoreFaults, VirtioCore, type VirtioCoreOptions } from "./mock/virtio_core.ts";
export { SplitDeviceQueue } from "./mock/split_queue.ts";
export { PackedDeviceQueue } from "./mock/packed_queue.ts";
export { ForwardingDevice } from "./mock/forwarding.ts";
export { MmioDevice, type MmioDeviceOptions } from "./mock/mmio_device.ts";
export { type PciCapSpec, PciFunction, type PciFunctionOptions } from "./mock/pci_device.ts";
export { LevelLine, MockInterruptSource } from "./mock/interrupts.ts";
export {
  MAX_MOCK_MSIX_VECTORS,
  MSIX_BAR,
  MSIX_BAR_SIZE,
  MSIX_PBA_OFFSET,
  MSIX_TABLE_OFFSET,
  type MsixOptions,
  PciInterrupts,
} from "./mock/pci_interrupts.ts";
export {
  type MockDomainInfo,
  MockIommuDevice,
  type MockMappingInfo,
  type TranslateResult,
} from "./mock/iommu/device.ts";
export type {
  AddressRange,
  DomainRange,
  EndpointConfig,
  MockIommuOptions,
  ReservedRegionConfig,
} from "./mock/iommu/options.ts";
export type { IommuFault } from "./mock/iommu/events.ts";
export { MockDmaEngine, type MockDmaEngineOptions } from "./mock/iommu/dma_engine.ts";
export {
  FAULT_KINDS,
  type FaultKind,
  type FaultPlan,
  FaultRandom,
  FaultyDevice,
} from "./mock/iommu/faults.ts";
export { q35Viot, type Q35ViotOptions } from "./mock/q35_viot.ts";
