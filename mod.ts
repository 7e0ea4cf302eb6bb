/**
 * viommu: a guest-side virtio-iommu driver for Deno, written against raw registers and DMA
 * memory. This entry point is the library core: the driver, the virtio transports and their
 * interfaces. It needs no permissions and no FFI. The mock device for tests lives in
 * `./testing.ts`; real hardware backends in `./host.ts`.
 *
 * @example Drive the mock virtio-iommu over virtio-mmio
 * ```ts
 * import { MAP_READ, MAP_WRITE, MmioTransport, VirtioIommu } from "@viommu/viommu";
 * import { MmioDevice, MockIommuDevice, SimulatedMemory } from "@viommu/viommu/testing";
 *
 * const memory = new SimulatedMemory();
 * const device = new MockIommuDevice();
 * const iommu = await VirtioIommu.create(MmioTransport.create(new MmioDevice(device, memory)), memory);
 * await iommu.attach(1, 0x08);
 * await iommu.map(1, 0x10000, 0x20000, 0x1000, MAP_READ | MAP_WRITE);
 * const t = device.translate(0x08, 0x10010n, "read"); // { ok: true, address: 0x20010n, … }
 * if (!t.ok || t.address !== 0x20010n) throw new Error("the DMA did not land at 0x20010");
 * await iommu.close();
 * ```
 *
 * @module
 */

// Register access, DMA memory and the transport interface.
export {
  checkAccess,
  MemoryRegisters,
  read64,
  RegisterAccessError,
  type RegisterSpace,
  write64,
} from "./transport/registers.ts";
export { type DmaAllocator, DmaError, type DmaRegion, regionAddress } from "./transport/dma.ts";
export { formatAddress, hex } from "./util/hex.ts";
export { type Address, joinAddress } from "./util/u64.ts";
export { SimulatedMemory, type SimulatedMemoryOptions } from "./transport/memory.ts";
export {
  type QueueAddresses,
  type Transport,
  TransportError,
  type TransportKind,
} from "./transport/transport.ts";
export { MmioTransport, type MmioTransportOptions } from "./transport/mmio.ts";
export {
  type PciBarAccessor,
  type PciCapLocation,
  type PciLayout,
  PciTransport,
  type PciTransportOptions,
} from "./transport/pci.ts";
export {
  type InterruptDelivery,
  type InterruptMode,
  type InterruptSource,
  type InterruptStats,
  MAX_INTERRUPT_VECTORS,
  type NotificationHandlers,
  NOTIFY_CONFIG_CHANGE,
  NOTIFY_USED_BUFFER,
  VirtioInterrupts,
} from "./transport/interrupts.ts";
export * from "./spec/interrupts.ts";

// Generic virtio: status, features, initialisation, split virtqueue.
export * from "./spec/status.ts";
export * from "./spec/features.ts";
export {
  beginInit,
  checkNeedsReset,
  DeviceInitError,
  DeviceNeedsResetError,
  failDevice,
  finishInit,
  type InitOptions,
  type InitStep,
  negotiateFeatures,
  readConfigStable,
  resetDevice,
} from "./driver/virtio/init.ts";
export {
  type DmaBuffer,
  type RingLayout,
  type Virtqueue,
  VirtqueueError,
  type VirtqueueOptions,
} from "./driver/virtio/virtqueue.ts";
export { SplitVirtqueue } from "./driver/virtio/split_queue.ts";
export {
  type InterruptChoice,
  type InterruptInfo,
  InterruptSetup,
} from "./driver/virtio/interrupt_setup.ts";
export { PackedVirtqueue } from "./driver/virtio/packed_queue.ts";
export { createVirtqueue } from "./driver/virtio/create_queue.ts";
export { resetVirtqueue } from "./driver/virtio/queue_reset.ts";
export { IntervalMap, type IntervalMapOptions, type IntervalSink } from "./util/interval_map.ts";

// The virtio-iommu driver.
export {
  type AttachOptions,
  type DomainInfo,
  type IommuInfo,
  MAP_MMIO,
  MAP_READ,
  MAP_WRITE,
  type MapOptions,
  type MappingInfo,
  SUPPORTED_FEATURES,
  type VirtioIommuOptions,
} from "./driver/iommu/api.ts";
export { VirtioIommu } from "./driver/iommu/device.ts";
export { type FaultIterateOptions, MAX_KEPT_FAULTS } from "./driver/iommu/fault_inbox.ts";
export { granuleShift, type IommuConfig, IommuConfigError } from "./driver/iommu/config.ts";
export {
  DeviceResetError,
  IommuError,
  type IommuStatus,
  QueueResetError,
  RequestTimeoutError,
  statusName,
} from "./driver/iommu/errors.ts";
export { decodeFault, type FaultEvent, type FaultReason } from "./driver/iommu/events.ts";
export {
  mergeReservedRegions,
  parseProbeProperties,
  type ProbeParseOptions,
  type ProbeResult,
  type ReservedKind,
  type ReservedRegion,
  ReservedRegionConflictError,
  type UnknownProperty,
} from "./driver/iommu/probe.ts";
export * as wire from "./spec/iommu.ts";

// Topology: which endpoint ID a device has (built-in draft topology, ACPI VIOT, device tree).
export {
  TopologyError,
  type TopologyErrorCode,
  type TopologySource,
} from "./driver/topology/errors.ts";
export * from "./driver/topology/builtin.ts";
export * from "./driver/topology/viot.ts";
export {
  ACPI_CHECKSUM,
  ACPI_HEADER_SIZE,
  VIOT_HEADER_SIZE,
  VIOT_MMIO_SIZE,
  VIOT_NODE_COUNT,
  VIOT_NODE_HEADER_SIZE,
  VIOT_NODE_MMIO,
  VIOT_NODE_OFFSET,
  VIOT_NODE_PCI_RANGE,
  VIOT_NODE_VIRTIO_IOMMU_MMIO,
  VIOT_NODE_VIRTIO_IOMMU_PCI,
  VIOT_PCI_RANGE_SIZE,
  VIOT_VIRTIO_IOMMU_MMIO_SIZE,
  VIOT_VIRTIO_IOMMU_PCI_SIZE,
} from "./spec/viot.ts";
export * from "./driver/topology/fdt.ts";
export * from "./driver/topology/pci_tree.ts";
export {
  PCI_CAP_ID_EXP,
  PCI_CFG_CAPABILITIES,
  PCI_CFG_HEADER_TYPE,
  PCI_CFG_SECONDARY_BUS,
  PCI_CFG_STATUS,
  PCI_CFG_SUBCLASS,
  PCI_CFG_VENDOR,
} from "./spec/pci.ts";
export * from "./driver/topology/description.ts";
export * from "./driver/topology/resolve.ts";
export * from "./driver/topology/deferral.ts";
export { RequestBatch } from "./driver/iommu/batch.ts";
