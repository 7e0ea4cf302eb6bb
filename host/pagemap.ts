/**
 * DMA memory for a userspace driver without an IOMMU in front of it: locked anonymous memory
 * whose physical address comes from `/proc/self/pagemap`. Uses 2 MiB hugepages when the
 * kernel has some reserved (`MAP_HUGETLB`), else 4 KiB pages, with multi-page regions placed
 * on a physically contiguous run. Needs root (pagemap hides frame numbers otherwise) and
 * `--allow-ffi` (pagemap is opened through libc; the rest of the host backend needs
 * `--allow-all`).
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { type DmaAllocator, DmaError, type DmaRegion } from "../transport/dma.ts";
import {
  carveRegion,
  closeFile,
  HostPermissionError,
  libc,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  mmap,
  munmap,
  O_RDONLY,
  offsetPointer,
  openFile,
  pointerAddress,
  PROT_READ,
  PROT_WRITE,
  syscallError,
} from "./ffi.ts";

/** Size of a normal page. */
export const PAGE_SIZE = 4096;
/** Size of a huge page. */
export const HUGE_PAGE_SIZE = 2 * 1024 * 1024;
/** pagemap entry: bit 63 "page present" (Documentation/admin-guide/mm/pagemap.rst). */
const PAGEMAP_PRESENT = 1n << 63n;
/** pagemap entry: bits 0-54 are the page frame number. */
const PAGEMAP_PFN_MASK = (1n << 55n) - 1n;
/** How many extra pages to map when looking for a physically contiguous run. */
const CONTIGUOUS_SLACK_PAGES = 64;

/** Options for {@link PagemapDma}. */
export interface PagemapDmaOptions {
  /** Use 2 MiB hugepages: `true` requires them, `false` never, `"auto"` (default) tries. */
  hugepages?: boolean | "auto";
}

/** One mmapped chunk regions are carved from. */
interface Chunk {
  ptr: Deno.PointerObject;
  size: number;
  /** Physical address of byte 0 (the chunk is physically contiguous). */
  phys: bigint;
  /** Next free byte (bump allocation). */
  used: number;
  /** Regions handed out and not yet freed. */
  live: number;
}

/** Reads the physical address behind the virtual address `virt` from `/proc/self/pagemap`. */
export function physicalAddress(virt: bigint): bigint {
  const fd = openFile("/proc/self/pagemap", O_RDONLY);
  try {
    const entry = new Uint8Array(8);
    const page = virt / BigInt(PAGE_SIZE);
    const n = libc().pread(fd, entry, 8n, page * 8n);
    if (Number(n) !== 8) throw syscallError("Cannot read /proc/self/pagemap");
    const value = new DataView(entry.buffer).getBigUint64(0, true);
    const pfn = value & PAGEMAP_PFN_MASK;
    if ((value & PAGEMAP_PRESENT) === 0n) {
      throw new DmaError(`Page at ${hex(virt)} is not present`);
    }
    if (pfn === 0n) {
      throw new HostPermissionError(
        "Cannot read physical addresses from /proc/self/pagemap: frame numbers read 0 (run as root)",
      );
    }
    return pfn * BigInt(PAGE_SIZE) + (virt % BigInt(PAGE_SIZE));
  } finally {
    closeFile(fd);
  }
}

/**
 * A {@link DmaAllocator} over locked memory whose physical addresses are the device-visible
 * addresses (no IOMMU translating for the driver's own device).
 *
 * @example
 * ```ts ignore
 * const dma = new PagemapDma();
 * const region = dma.alloc(4096);
 * console.log(region.addrHi, region.addrLo);
 * ```
 */
export class PagemapDma implements DmaAllocator {
  #huge: boolean | "auto";
  #chunks: Chunk[] = [];
  #live = new Map<DmaRegion, Chunk>();

  /** Creates the allocator; nothing is mapped until the first {@link PagemapDma.alloc}. */
  constructor(options: PagemapDmaOptions = {}) {
    this.#huge = options.hugepages ?? "auto";
  }

  /** Whether chunks come from 2 MiB hugepages (known after the first allocation). */
  get usesHugepages(): boolean {
    return this.#huge === true;
  }

  /** Allocates a zeroed, physically contiguous region of `size` bytes aligned to `align`. */
  alloc(size: number, align = PAGE_SIZE): DmaRegion {
    if (!Number.isInteger(size) || size <= 0) {
      throw new RangeError(`Cannot allocate ${size} bytes of DMA memory: size must be positive`);
    }
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
      throw new RangeError(`Cannot align DMA memory to ${align}: not a power of two`);
    }
    for (const chunk of this.#chunks) {
      const region = this.#carve(chunk, size, align);
      if (region) return region;
    }
    const chunk = this.#newChunk(size, align);
    this.#chunks.push(chunk);
    const region = this.#carve(chunk, size, align);
    if (!region) throw new DmaError(`Cannot allocate ${size} bytes aligned to ${align}`);
    return region;
  }

  /** Returns `region`; its chunk is unmapped once every region in it is freed. */
  free(region: DmaRegion): void {
    const chunk = this.#live.get(region);
    if (!chunk) throw new DmaError("Cannot free a DMA region twice or one not from this allocator");
    this.#live.delete(region);
    chunk.live--;
    if (chunk.live === 0) {
      munmap(chunk.ptr, chunk.size);
      this.#chunks.splice(this.#chunks.indexOf(chunk), 1);
    }
  }

  /** Unmaps every chunk; regions still held become invalid. */
  close(): void {
    for (const chunk of this.#chunks) munmap(chunk.ptr, chunk.size);
    this.#chunks = [];
    this.#live.clear();
  }

  /** Places a region in `chunk` by bump allocation, or returns null when it does not fit. */
  #carve(chunk: Chunk, size: number, align: number): DmaRegion | null {
    const region = carveRegion(chunk, chunk.phys, size, align);
    if (region !== null) this.#live.set(region, chunk);
    return region;
  }

  /** Maps a new physically contiguous chunk big enough for `size` bytes aligned to `align`. */
  #newChunk(size: number, align: number): Chunk {
    if (this.#huge !== false && size + align <= HUGE_PAGE_SIZE * 2) {
      try {
        const chunkSize =
          Math.ceil((size + (align > HUGE_PAGE_SIZE ? align : 0)) / HUGE_PAGE_SIZE) *
          HUGE_PAGE_SIZE;
        const ptr = this.#map(chunkSize, MAP_HUGETLB);
        this.#huge = true;
        return {
          ptr,
          size: chunkSize,
          phys: this.#contiguousPhys(ptr, chunkSize),
          used: 0,
          live: 0,
        };
      } catch (err) {
        if (this.#huge === true) throw err;
        this.#huge = false; // no hugepages reserved: fall back to 4 KiB pages for good
      }
    }
    if (size + align > PAGE_SIZE && size + align <= HUGE_PAGE_SIZE) {
      const chunk = this.#transparentHugepage();
      if (chunk) return chunk;
    }
    const pages = Math.ceil((size + (align > PAGE_SIZE ? align : 0)) / PAGE_SIZE);
    if (pages === 1) {
      const ptr = this.#map(PAGE_SIZE, 0);
      return { ptr, size: PAGE_SIZE, phys: physicalAddress(pointerAddress(ptr)), used: 0, live: 0 };
    }
    return this.#contiguousRun(pages);
  }

  /**
   * Tries a 2 MiB-aligned anonymous chunk backed by a transparent hugepage (`MADV_HUGEPAGE`,
   * works when THP is `madvise` or `always`); null when the kernel gave 4 KiB pages instead.
   */
  #transparentHugepage(): Chunk | null {
    const span = HUGE_PAGE_SIZE * 2;
    const raw = mmap("DMA memory", span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    const base = pointerAddress(raw);
    const head = Number(
      (BigInt(HUGE_PAGE_SIZE) - (base % BigInt(HUGE_PAGE_SIZE))) %
        BigInt(HUGE_PAGE_SIZE),
    );
    if (head > 0) munmap(raw, head);
    const ptr = offsetPointer(raw, head);
    const tail = span - head - HUGE_PAGE_SIZE;
    if (tail > 0) munmap(offsetPointer(ptr, HUGE_PAGE_SIZE), tail);
    libc().madvise(ptr, BigInt(HUGE_PAGE_SIZE), MADV_HUGEPAGE);
    if (libc().mlock(ptr, BigInt(HUGE_PAGE_SIZE)) !== 0) {
      const err = syscallError("Cannot mlock DMA memory");
      munmap(ptr, HUGE_PAGE_SIZE);
      throw err;
    }
    try {
      const phys = this.#contiguousPhys(ptr, HUGE_PAGE_SIZE);
      return { ptr, size: HUGE_PAGE_SIZE, phys, used: 0, live: 0 };
    } catch (err) {
      if (err instanceof DmaError) return null; // #contiguousPhys already unmapped it
      throw err;
    }
  }

  /** Maps `pages` 4 KiB pages with extra slack and keeps a physically contiguous run of them. */
  #contiguousRun(pages: number): Chunk {
    const total = pages + CONTIGUOUS_SLACK_PAGES;
    const ptr = this.#map(total * PAGE_SIZE, 0);
    const base = pointerAddress(ptr);
    const phys: bigint[] = [];
    for (let i = 0; i < total; i++) phys.push(physicalAddress(base + BigInt(i * PAGE_SIZE)));
    let runStart = 0;
    for (let i = 1; i <= total; i++) {
      if (i - runStart >= pages) {
        // Keep pages [runStart, runStart + pages); unmap the rest.
        if (runStart > 0) munmap(ptr, runStart * PAGE_SIZE);
        const keep = offsetPointer(ptr, runStart * PAGE_SIZE);
        const after = runStart + pages;
        if (after < total) {
          munmap(offsetPointer(ptr, after * PAGE_SIZE), (total - after) * PAGE_SIZE);
        }
        return { ptr: keep, size: pages * PAGE_SIZE, phys: phys[runStart], used: 0, live: 0 };
      }
      if (i < total && phys[i] !== phys[i - 1] + BigInt(PAGE_SIZE)) runStart = i;
    }
    munmap(ptr, total * PAGE_SIZE);
    throw new DmaError(
      `Cannot allocate ${pages * PAGE_SIZE} bytes of physically contiguous DMA memory with ` +
        `4 KiB pages (reserve hugepages: echo 16 > /proc/sys/vm/nr_hugepages)`,
    );
  }

  /** Returns the physical address of `ptr`, checking that `size` bytes are contiguous. */
  #contiguousPhys(ptr: Deno.PointerObject, size: number): bigint {
    const base = pointerAddress(ptr);
    const phys = physicalAddress(base);
    for (let at = PAGE_SIZE; at < size; at += PAGE_SIZE) {
      if (physicalAddress(base + BigInt(at)) !== phys + BigInt(at)) {
        munmap(ptr, size);
        throw new DmaError("Hugepage chunk is not physically contiguous");
      }
    }
    return phys;
  }

  /** Maps `size` bytes of locked, populated anonymous memory (plus `extra` flags) and mlocks it. */
  #map(size: number, extra: number): Deno.PointerObject {
    const ptr = mmap(
      "DMA memory",
      size,
      PROT_READ | PROT_WRITE,
      MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED | extra,
      -1,
      0n,
    );
    if (libc().mlock(ptr, BigInt(size)) !== 0) {
      const err = syscallError("Cannot mlock DMA memory");
      munmap(ptr, size);
      throw err;
    }
    return ptr;
  }
}
