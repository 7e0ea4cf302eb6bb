/**
 * The VFIO ioctl numbers and structure layouts (include/uapi/linux/vfio.h), as pure encoders
 * and decoders so they can be unit-tested without a kernel. x86-64 layouts, little-endian.
 *
 * @module
 */

/** `VFIO_TYPE` (';') << 8 | `VFIO_BASE` (100): the first VFIO ioctl, `_IO(';', 100)`. */
const VFIO_IO_BASE = (0x3b << 8) | 100;

/** `VFIO_GET_API_VERSION` = `_IO(VFIO_TYPE, VFIO_BASE + 0)`. */
export const VFIO_GET_API_VERSION = VFIO_IO_BASE + 0;
/** `VFIO_CHECK_EXTENSION` (+1). */
export const VFIO_CHECK_EXTENSION = VFIO_IO_BASE + 1;
/** `VFIO_SET_IOMMU` (+2). */
export const VFIO_SET_IOMMU = VFIO_IO_BASE + 2;
/** `VFIO_GROUP_GET_STATUS` (+3). */
export const VFIO_GROUP_GET_STATUS = VFIO_IO_BASE + 3;
/** `VFIO_GROUP_SET_CONTAINER` (+4). */
export const VFIO_GROUP_SET_CONTAINER = VFIO_IO_BASE + 4;
/** `VFIO_GROUP_UNSET_CONTAINER` (+5). */
export const VFIO_GROUP_UNSET_CONTAINER = VFIO_IO_BASE + 5;
/** `VFIO_GROUP_GET_DEVICE_FD` (+6). */
export const VFIO_GROUP_GET_DEVICE_FD = VFIO_IO_BASE + 6;
/** `VFIO_DEVICE_GET_INFO` (+7). */
export const VFIO_DEVICE_GET_INFO = VFIO_IO_BASE + 7;
/** `VFIO_DEVICE_GET_REGION_INFO` (+8). */
export const VFIO_DEVICE_GET_REGION_INFO = VFIO_IO_BASE + 8;
/** `VFIO_DEVICE_RESET` (+11). */
export const VFIO_DEVICE_RESET = VFIO_IO_BASE + 11;
/** `VFIO_IOMMU_MAP_DMA` (+13). */
export const VFIO_IOMMU_MAP_DMA = VFIO_IO_BASE + 13;
/** `VFIO_IOMMU_UNMAP_DMA` (+14). */
export const VFIO_IOMMU_UNMAP_DMA = VFIO_IO_BASE + 14;

/** The API version VFIO_GET_API_VERSION returns. */
export const VFIO_API_VERSION = 0;
/** `VFIO_TYPE1_IOMMU`. */
export const VFIO_TYPE1_IOMMU = 1;
/** `VFIO_TYPE1v2_IOMMU`. */
export const VFIO_TYPE1V2_IOMMU = 3;

/** `VFIO_GROUP_FLAGS_VIABLE`: every device in the group is bound to a VFIO driver. */
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
/** `VFIO_GROUP_FLAGS_CONTAINER_SET`. */
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

/** `VFIO_REGION_INFO_FLAG_READ`. */
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
/** `VFIO_REGION_INFO_FLAG_WRITE`. */
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
/** `VFIO_REGION_INFO_FLAG_MMAP`. */
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;

/** `VFIO_DMA_MAP_FLAG_READ`: the device may read. */
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
/** `VFIO_DMA_MAP_FLAG_WRITE`: the device may write. */
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;

/** `VFIO_PCI_CONFIG_REGION_INDEX`: BARs are 0-5, the ROM 6, config space 7. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;

/** `struct vfio_group_status { u32 argsz; u32 flags; }`. */
export const GROUP_STATUS_SIZE = 8;
/** `struct vfio_region_info { u32 argsz, flags, index, cap_offset; u64 size, offset; }`. */
export const REGION_INFO_SIZE = 32;
/** `struct vfio_iommu_type1_dma_map { u32 argsz, flags; u64 vaddr, iova, size; }`. */
export const DMA_MAP_SIZE = 32;
/** `struct vfio_iommu_type1_dma_unmap { u32 argsz, flags; u64 iova, size; }` (no data). */
export const DMA_UNMAP_SIZE = 24;

/** What VFIO_DEVICE_GET_REGION_INFO reports. */
export interface RegionInfo {
  /** `VFIO_REGION_INFO_FLAG_*`. */
  flags: number;
  /** Region index. */
  index: number;
  /** Size in bytes (0: the region does not exist). */
  size: bigint;
  /** Offset of the region in the device fd (for pread/pwrite/mmap). */
  offset: bigint;
}

/** Encodes an empty `vfio_group_status` with its argsz. */
export function encodeGroupStatus(): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(GROUP_STATUS_SIZE);
  new DataView(bytes.buffer).setUint32(0, GROUP_STATUS_SIZE, true);
  return bytes;
}

/** Returns the flags of a `vfio_group_status` the kernel filled in. */
export function decodeGroupStatus(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
}

/** Encodes a `vfio_region_info` request for region `index`. */
export function encodeRegionInfoRequest(index: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(REGION_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, REGION_INFO_SIZE, true);
  view.setUint32(8, index, true);
  return bytes;
}

/** Decodes a `vfio_region_info` the kernel filled in. */
export function decodeRegionInfo(bytes: Uint8Array): RegionInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    flags: view.getUint32(4, true),
    index: view.getUint32(8, true),
    size: view.getBigUint64(16, true),
    offset: view.getBigUint64(24, true),
  };
}

/** Encodes a `vfio_iommu_type1_dma_map`: map `size` bytes at process address `vaddr` to `iova`. */
export function encodeDmaMap(
  vaddr: bigint,
  iova: bigint,
  size: bigint,
  flags: number,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(DMA_MAP_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, DMA_MAP_SIZE, true);
  view.setUint32(4, flags, true);
  view.setBigUint64(8, vaddr, true);
  view.setBigUint64(16, iova, true);
  view.setBigUint64(24, size, true);
  return bytes;
}

/** Encodes a `vfio_iommu_type1_dma_unmap` of `[iova, iova + size)`. */
export function encodeDmaUnmap(iova: bigint, size: bigint): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(DMA_UNMAP_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, DMA_UNMAP_SIZE, true);
  view.setUint32(4, 0, true);
  view.setBigUint64(8, iova, true);
  view.setBigUint64(16, size, true);
  return bytes;
}

/** Returns the `size` field of a `vfio_iommu_type1_dma_unmap` after the call (bytes unmapped). */
export function decodeDmaUnmapSize(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(16, true);
}

// ---- Interrupts: VFIO_DEVICE_GET_IRQ_INFO / VFIO_DEVICE_SET_IRQS -------------------------------

/** `VFIO_DEVICE_GET_IRQ_INFO` (+9). */
export const VFIO_DEVICE_GET_IRQ_INFO = VFIO_IO_BASE + 9;
/** `VFIO_DEVICE_SET_IRQS` (+10). */
export const VFIO_DEVICE_SET_IRQS = VFIO_IO_BASE + 10;

/** `VFIO_PCI_INTX_IRQ_INDEX`: the function's INTx. */
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
/** `VFIO_PCI_MSI_IRQ_INDEX`. */
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
/** `VFIO_PCI_MSIX_IRQ_INDEX`. */
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;

/** `VFIO_IRQ_INFO_EVENTFD`: the interrupt can signal an eventfd. */
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
/** `VFIO_IRQ_INFO_MASKABLE`. */
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
/** `VFIO_IRQ_INFO_AUTOMASKED`: masked when it fires (INTx) until unmasked. */
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
/** `VFIO_IRQ_INFO_NORESIZE`. */
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

/** `VFIO_IRQ_SET_DATA_NONE`: no data after the header. */
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
/** `VFIO_IRQ_SET_DATA_BOOL`. */
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
/** `VFIO_IRQ_SET_DATA_EVENTFD`: an s32 eventfd per interrupt follows (−1 unsets one). */
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
/** `VFIO_IRQ_SET_ACTION_MASK`. */
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
/** `VFIO_IRQ_SET_ACTION_UNMASK`. */
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
/** `VFIO_IRQ_SET_ACTION_TRIGGER`. */
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;

/** `struct vfio_irq_info { u32 argsz, flags, index, count; }`. */
export const IRQ_INFO_SIZE = 16;
/** `struct vfio_irq_set { u32 argsz, flags, index, start, count; u8 data[]; }` without data. */
export const IRQ_SET_HEADER_SIZE = 20;

/** What VFIO_DEVICE_GET_IRQ_INFO reports for one interrupt index. */
export interface IrqInfo {
  /** `VFIO_IRQ_INFO_*`. */
  flags: number;
  /** The index asked about. */
  index: number;
  /** Interrupts (vectors) in this index; 0 when the device has none of this kind. */
  count: number;
}

/** Encodes a `vfio_irq_info` request for interrupt index `index`. */
export function encodeIrqInfoRequest(index: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(IRQ_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, IRQ_INFO_SIZE, true);
  view.setUint32(8, index, true);
  return bytes;
}

/** Decodes a `vfio_irq_info` the kernel filled in. */
export function decodeIrqInfo(bytes: Uint8Array): IrqInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    flags: view.getUint32(4, true),
    index: view.getUint32(8, true),
    count: view.getUint32(12, true),
  };
}

/**
 * Encodes a `vfio_irq_set`: `flags` (DATA_* | ACTION_*) for interrupts `start … start+count−1`
 * of `index`, followed by one s32 eventfd per interrupt when `eventfds` is given (DATA_EVENTFD).
 */
export function encodeIrqSet(
  flags: number,
  index: number,
  start: number,
  count: number,
  eventfds?: readonly number[],
): Uint8Array<ArrayBuffer> {
  if (eventfds !== undefined && eventfds.length !== count) {
    throw new RangeError(`vfio_irq_set of ${count} interrupts given ${eventfds.length} eventfds`);
  }
  const size = IRQ_SET_HEADER_SIZE + 4 * (eventfds?.length ?? 0);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, size, true);
  view.setUint32(4, flags, true);
  view.setUint32(8, index, true);
  view.setUint32(12, start, true);
  view.setUint32(16, count, true);
  eventfds?.forEach((fd, i) => view.setInt32(IRQ_SET_HEADER_SIZE + 4 * i, fd, true));
  return bytes;
}
