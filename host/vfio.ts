/**
 * A PCI device bound to `vfio-pci`, driven from userspace through VFIO type1: container
 * (`/dev/vfio/vfio`), group (`/dev/vfio/<group>`), device fd, regions mmapped through
 * VFIO_DEVICE_GET_REGION_INFO, config space through the config region, and DMA memory mapped
 * into the device's IOMMU domain with VFIO_IOMMU_MAP_DMA (so region addresses are IOVAs).
 * Same interfaces as the sysfs backend. Needs root (or access to /dev/vfio) and `--allow-all`
 * (FFI, and Deno 2.9.6 opens the `/sys` files naming the IOMMU group only with all access).
 *
 * Verification status: the ioctl numbers and structure encodings are unit-tested, and
 * tests/vfio_device_test.ts runs the whole path in a 6.12 guest with Linux's virtio-iommu
 * driver (container, group, device fd, region info, BAR0 mmap, config region, DMA through a
 * VFIO_IOMMU_MAP_DMA-mapped IOVA, and the same DMA blocked after VFIO_IOMMU_UNMAP_DMA).
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { type DmaAllocator, DmaError, type DmaRegion } from "../transport/dma.ts";
import type { RegisterSpace } from "../transport/registers.ts";
import {
  carveRegion,
  closeFile,
  cString,
  FileRegisters,
  HostError,
  libc,
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MappedRegisters,
  mmap,
  munmap,
  O_RDWR,
  openFile,
  pointerAddress,
  PROT_READ,
  PROT_WRITE,
  syscallError,
} from "./ffi.ts";
import { isBdf, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from "./sysfs_pci.ts";
import {
  decodeDmaUnmapSize,
  decodeGroupStatus,
  decodeRegionInfo,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeGroupStatus,
  encodeRegionInfoRequest,
  type RegionInfo,
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1V2_IOMMU,
} from "./vfio_abi.ts";

/** Options for {@link openVfioPci}. */
export interface VfioPciOptions {
  /** First IOVA handed out by the device's DMA allocator (default 0x10_0000). */
  iovaBase?: bigint;
  /** Set bus mastering in the command register (default true). */
  busMaster?: boolean;
}

/** A VFIO-owned PCI device: what `PciTransport` needs, its DMA allocator, and cleanup. */
export interface VfioPciDevice {
  /** The device's address, `dddd:bb:dd.f`. */
  readonly bdf: string;
  /** Config space through the VFIO config region. */
  readonly config: RegisterSpace;
  /** BAR `index` mmapped through VFIO, or null when absent or not mmappable. */
  bar(index: number): RegisterSpace | null;
  /** DMA memory mapped into the device's IOMMU domain; region addresses are IOVAs. */
  readonly dma: VfioDma;
  /** The VFIO container's fd (for VFIO_IOMMU_* ioctls of the caller's own). */
  readonly containerFd: number;
  /** The device's IOMMU group number. */
  readonly group: number;
  /** The device fd (for VFIO_DEVICE_* ioctls: interrupts through `openVfioInterrupts`). */
  readonly deviceFd: number;
  /** The IOMMU type set on the container (VFIO_TYPE1V2_IOMMU or VFIO_TYPE1_IOMMU). */
  readonly iommuType: number;
  /** What VFIO_DEVICE_GET_REGION_INFO reports for region `index` (BARs 0-5, ROM 6, config 7). */
  regionInfo(index: number): RegionInfo;
  /** Unmaps BARs and DMA, closes device, group and container. */
  close(): void;
}

/** Calls `ioctl(fd, request, arg)` with a struct pointer; throws {@link HostError} on failure. */
export function ioctlStruct(
  fd: number,
  request: number,
  arg: Uint8Array<ArrayBuffer>,
  what: string,
): number {
  const rc = libc().ioctl(fd, BigInt(request), arg);
  if (rc < 0) throw syscallError(what);
  return rc;
}

/** Calls `ioctl(fd, request, value)` with an integer argument; throws on failure. */
function ioctlValue(fd: number, request: number, value: number, what: string): number {
  const rc = libc().ioctlInt(fd, BigInt(request), BigInt(value));
  if (rc < 0) throw syscallError(what);
  return rc;
}

/** Returns the IOMMU group number of `bdf` from sysfs. */
export function iommuGroup(bdf: string): number {
  let target: string;
  try {
    target = Deno.readLinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new HostError(
        `PCI device ${bdf} has no IOMMU group: no IOMMU driver covers it (or the device is absent)`,
      );
    }
    throw err;
  }
  return Number(target.slice(target.lastIndexOf("/") + 1));
}

/** One chunk of {@link VfioDma}: process memory mapped at an IOVA. */
interface VfioChunk {
  ptr: Deno.PointerObject;
  size: number;
  iova: bigint;
  used: number;
  live: number;
}

/**
 * DMA memory in a VFIO container: each chunk is anonymous memory mapped at a fresh IOVA with
 * VFIO_IOMMU_MAP_DMA (which also pins it). Regions are carved from 64 KiB chunks; a chunk is
 * unmapped from the IOMMU and the process once all its regions are freed.
 */
export class VfioDma implements DmaAllocator {
  #container: number;
  #nextIova: bigint;
  #chunks: (VfioChunk | null)[] = [];
  #live = new Map<DmaRegion, VfioChunk>();

  /** Creates the allocator for the container fd `container`, handing out IOVAs from `iovaBase`. */
  constructor(container: number, iovaBase: bigint) {
    this.#container = container;
    this.#nextIova = iovaBase;
  }

  /** Allocates a zeroed region of `size` bytes aligned (in IOVA space) to `align`. */
  alloc(size: number, align = 4096): DmaRegion {
    if (!Number.isInteger(size) || size <= 0) {
      throw new RangeError(`Cannot allocate ${size} bytes of DMA memory: size must be positive`);
    }
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
      throw new RangeError(`Cannot align DMA memory to ${align}: not a power of two`);
    }
    for (const chunk of this.#chunks) {
      const region = chunk === null ? null : this.#carve(chunk, size, align);
      if (region) return region;
    }
    const chunkSize = Math.max(0x10000, Math.ceil((size + align) / 4096) * 4096);
    const ptr = mmap(
      "VFIO DMA memory",
      chunkSize,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
    );
    const alignUp = BigInt(Math.max(align, 4096));
    const iova = (this.#nextIova + alignUp - 1n) / alignUp * alignUp;
    try {
      this.mapDma(ptr, iova, chunkSize);
    } catch (err) {
      munmap(ptr, chunkSize);
      throw err;
    }
    this.#nextIova = iova + BigInt(chunkSize);
    const chunk: VfioChunk = { ptr, size: chunkSize, iova, used: 0, live: 0 };
    this.#chunks.push(chunk);
    const region = this.#carve(chunk, size, align);
    if (!region) throw new DmaError(`Cannot allocate ${size} bytes aligned to ${align}`);
    return region;
  }

  /**
   * Returns `region`; once every region of its chunk is freed, the chunk is unmapped from the
   * IOMMU (the device can no longer reach it) and from the process.
   */
  free(region: DmaRegion): void {
    const chunk = this.#live.get(region);
    if (chunk === undefined) {
      throw new DmaError("Cannot free a DMA region twice or one not from this allocator");
    }
    this.#live.delete(region);
    chunk.live--;
    if (chunk.live === 0) {
      const index = this.#chunks.indexOf(chunk);
      this.#chunks[index] = null;
      this.#release(chunk);
    }
  }

  /**
   * Maps `size` bytes of this process's memory at `ptr` to `iova` in the container's IOMMU
   * domain (VFIO_IOMMU_MAP_DMA; the kernel pins the pages). `flags` defaults to read + write.
   * IOVAs the allocator hands out start at its `iovaBase`; pick others below it.
   */
  mapDma(
    ptr: Deno.PointerObject,
    iova: bigint,
    size: number,
    flags: number = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
  ): void {
    const request = encodeDmaMap(pointerAddress(ptr), iova, BigInt(size), flags);
    ioctlStruct(
      this.#container,
      VFIO_IOMMU_MAP_DMA,
      request,
      `VFIO_IOMMU_MAP_DMA of ${size} bytes at IOVA ${hex(iova)} failed`,
    );
  }

  /** Unmaps `[iova, iova + size)` (VFIO_IOMMU_UNMAP_DMA); returns the bytes the kernel unmapped. */
  unmapDma(iova: bigint, size: number): bigint {
    const request = encodeDmaUnmap(iova, BigInt(size));
    ioctlStruct(
      this.#container,
      VFIO_IOMMU_UNMAP_DMA,
      request,
      `VFIO_IOMMU_UNMAP_DMA of ${size} bytes at IOVA ${hex(iova)} failed`,
    );
    return decodeDmaUnmapSize(request);
  }

  /** Unmaps every chunk from the IOMMU and from the process. */
  close(): void {
    for (const chunk of this.#chunks) if (chunk !== null) this.#release(chunk);
    this.#chunks = [];
    this.#live.clear();
  }

  /** Unmaps `chunk` from the IOMMU (best effort: the container may be gone) and the process. */
  #release(chunk: VfioChunk): void {
    const request = encodeDmaUnmap(chunk.iova, BigInt(chunk.size));
    libc().ioctl(this.#container, BigInt(VFIO_IOMMU_UNMAP_DMA), request);
    munmap(chunk.ptr, chunk.size);
  }

  /** Bump-allocates from `chunk`, or returns null when the region does not fit. */
  #carve(chunk: VfioChunk, size: number, align: number): DmaRegion | null {
    const region = carveRegion(chunk, chunk.iova, size, align);
    if (region !== null) this.#live.set(region, chunk);
    return region;
  }
}

/**
 * Opens `bdf` (bound to vfio-pci) through VFIO type1: sets up the container and group, gets
 * the device fd, enables memory decoding and bus mastering through the config region, and
 * maps BARs on demand. Throws {@link HostError} saying what failed.
 */
export function openVfioPci(bdf: string, options: VfioPciOptions = {}): VfioPciDevice {
  if (!isBdf(bdf)) {
    throw new RangeError(`Invalid PCI address ${JSON.stringify(bdf)}: expected dddd:bb:dd.f`);
  }
  let driver: string | null = null;
  try {
    const link = Deno.readLinkSync(`/sys/bus/pci/devices/${bdf}/driver`);
    driver = link.slice(link.lastIndexOf("/") + 1);
  } catch {
    driver = null;
  }
  if (driver !== "vfio-pci") {
    throw new HostError(
      `Cannot open ${bdf} through VFIO: it is bound to ${driver ?? "no driver"}, not vfio-pci`,
    );
  }
  const group = iommuGroup(bdf);
  const fds: number[] = [];
  try {
    const container = openFile("/dev/vfio/vfio", O_RDWR);
    fds.push(container);
    const version = ioctlValue(container, VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION failed");
    if (version !== VFIO_API_VERSION) {
      throw new HostError(`Unknown VFIO API version ${version}`);
    }
    const type = ioctlValue(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1V2_IOMMU, "check") > 0
      ? VFIO_TYPE1V2_IOMMU
      : VFIO_TYPE1_IOMMU;

    const groupFd = openFile(`/dev/vfio/${group}`, O_RDWR);
    fds.push(groupFd);
    const status = encodeGroupStatus();
    ioctlStruct(groupFd, VFIO_GROUP_GET_STATUS, status, "VFIO_GROUP_GET_STATUS failed");
    if ((decodeGroupStatus(status) & VFIO_GROUP_FLAGS_VIABLE) === 0) {
      throw new HostError(
        `IOMMU group ${group} is not viable: bind every device in it to vfio-pci`,
      );
    }
    const containerArg = new Uint8Array(4);
    new DataView(containerArg.buffer).setInt32(0, container, true);
    ioctlStruct(groupFd, VFIO_GROUP_SET_CONTAINER, containerArg, "VFIO_GROUP_SET_CONTAINER failed");
    ioctlValue(
      container,
      VFIO_SET_IOMMU,
      type,
      "VFIO_SET_IOMMU failed (without interrupt remapping, load vfio_iommu_type1 with " +
        "allow_unsafe_interrupts=1)",
    );
    const deviceFd = libc().ioctl(groupFd, BigInt(VFIO_GROUP_GET_DEVICE_FD), cString(bdf));
    if (deviceFd < 0) throw syscallError("VFIO_GROUP_GET_DEVICE_FD failed");
    fds.push(deviceFd);

    const regionInfo = (index: number): RegionInfo => {
      const info = encodeRegionInfoRequest(index);
      ioctlStruct(deviceFd, VFIO_DEVICE_GET_REGION_INFO, info, `region ${index} info failed`);
      return decodeRegionInfo(info);
    };
    const configInfo = regionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
    const config = new FileRegisters(
      deviceFd,
      Number(configInfo.size),
      `${bdf} config region`,
      configInfo.offset,
    );
    const command = config.read16(PCI_COMMAND);
    const wanted = command | PCI_COMMAND_MEMORY |
      ((options.busMaster ?? true) ? PCI_COMMAND_MASTER : 0);
    if (wanted !== command) config.write16(PCI_COMMAND, wanted);

    const bars = new Map<number, MappedRegisters>();
    const dma = new VfioDma(container, options.iovaBase ?? 0x10_0000n);
    let closed = false;

    return {
      bdf,
      config,
      dma,
      containerFd: container,
      group,
      deviceFd,
      iommuType: type,
      regionInfo(index: number): RegionInfo {
        if (closed) throw new HostError(`PCI device ${bdf} is closed`);
        if (!Number.isInteger(index) || index < 0 || index > VFIO_PCI_CONFIG_REGION_INDEX) {
          throw new RangeError(`Invalid VFIO region index ${index}: expected 0..7`);
        }
        return regionInfo(index);
      },
      bar(index: number): RegisterSpace | null {
        if (closed) throw new HostError(`PCI device ${bdf} is closed`);
        if (!Number.isInteger(index) || index < 0 || index > 5) {
          throw new RangeError(`Invalid BAR index ${index}: expected 0..5`);
        }
        const known = bars.get(index);
        if (known) return known;
        const info = regionInfo(index);
        if (info.size === 0n || (info.flags & VFIO_REGION_INFO_FLAG_MMAP) === 0) return null;
        const size = Number(info.size);
        const ptr = mmap(
          `BAR${index} of ${bdf}`,
          size,
          PROT_READ | PROT_WRITE,
          MAP_SHARED,
          deviceFd,
          info.offset,
        );
        const regs = new MappedRegisters(ptr, size, true);
        bars.set(index, regs);
        return regs;
      },
      close(): void {
        if (closed) return;
        closed = true;
        for (const regs of bars.values()) regs.close();
        dma.close();
        for (const fd of fds.reverse()) closeFile(fd);
      },
    };
  } catch (err) {
    for (const fd of fds.reverse()) closeFile(fd);
    throw err;
  }
}
