/**
 * Real-hardware backends: a PCI device owned by userspace through sysfs or VFIO, and DMA
 * memory with known physical addresses. Kept apart from `mod.ts` so the core library needs no
 * permissions. This entry point needs root and `--allow-all`: it uses FFI, and Deno 2.9.6
 * opens files under `/sys` and `/proc` only when every permission is granted (with
 * `--allow-read --allow-write --allow-ffi` a read of `/sys` fails with "NotCapable: Requires
 * all access"). A missing permission is a {@link HostPermissionError} saying which.
 *
 * @example Drive a virtio-iommu in a guest where no kernel driver owns it
 * ```ts ignore
 * // sudo deno run --allow-all main.ts
 * import { openSysfsPci, PagemapDma } from "@viommu/viommu/host";
 * import { PciTransport, VirtioIommu } from "@viommu/viommu";
 *
 * const dev = openSysfsPci("0000:00:02.0");
 * const iommu = await VirtioIommu.create(
 *   PciTransport.create(dev.config, (i) => dev.bar(i)),
 *   new PagemapDma(),
 * );
 * console.log(iommu.info.featureNames);
 * ```
 *
 * @module
 */

export type { RegisterSpace } from "./transport/registers.ts";
export type { DmaAllocator, DmaRegion } from "./transport/dma.ts";
export {
  FileRegisters,
  HostError,
  HostPermissionError,
  isRoot,
  MappedRegisters,
} from "./host/ffi.ts";
export {
  isBdf,
  openSysfsPci,
  parseResourceFile,
  type PciIdentity,
  type SysfsPciDevice,
  type SysfsPciOptions,
  type SysfsResource,
  VIRTIO_IOMMU_PCI_IDENTITY,
} from "./host/sysfs_pci.ts";
export { PagemapDma, type PagemapDmaOptions, physicalAddress } from "./host/pagemap.ts";
export {
  iommuGroup,
  openVfioPci,
  VfioDma,
  type VfioPciDevice,
  type VfioPciOptions,
} from "./host/vfio.ts";
export type { IrqInfo, RegionInfo } from "./host/vfio_abi.ts";
export {
  readSysfsPciTree,
  readSysfsTopology,
  readSysfsViot,
  type SysfsTopology,
  type SysfsTopologyOptions,
} from "./host/sysfs_topology.ts";
export {
  createEventFd,
  type FdInterruptOptions,
  FdInterruptSource,
  signalEventFd,
} from "./host/fd_interrupts.ts";
export {
  bindUioPciGeneric,
  openUioInterrupts,
  UIO_PCI_GENERIC,
  uioDevicePath,
} from "./host/uio.ts";
export { openVfioInterrupts, vfioIrqInfo, type VfioIrqKind } from "./host/vfio_irq.ts";
