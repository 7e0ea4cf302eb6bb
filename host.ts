/**
 * Real-hardware backends: a PCI device owned by userspace through sysfs or VFIO, and DMA
 * memory with known physical addresses. Kept apart from `mod.ts` so the core library needs no
 * permissions; this entry point needs `--allow-ffi`, `--allow-read`/`--allow-write` on `/sys`
 * (and `/dev/vfio` for VFIO), and root.
 *
 * @example Drive a virtio-iommu in a guest where no kernel driver owns it
 * ```ts ignore
 * import { openSysfsPci, PagemapDma } from "./host.ts";
 * import { PciTransport, VirtioIommu } from "./mod.ts";
 *
 * const dev = openSysfsPci("0000:00:02.0");
 * const iommu = await VirtioIommu.create(new PciTransport(dev.config, (i) => dev.bar(i)), new PagemapDma());
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
export type { RegionInfo } from "./host/vfio_abi.ts";
