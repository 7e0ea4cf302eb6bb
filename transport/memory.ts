/**
 * Simulated physical memory: one buffer that stands for a range of guest-physical addresses.
 * The driver allocates DMA regions from it; a mock device reaches the same bytes by address
 * through {@link SimulatedMemory.resolve}, always bounds-checked. No permissions needed.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { TWO_POW_32 } from "../util/u64.ts";
import { type DmaAllocator, DmaError, type DmaRegion } from "./dma.ts";

/** Options for {@link SimulatedMemory}. */
export interface SimulatedMemoryOptions {
  /**
   * Guest-physical address of the first byte, as a bigint; default 0x1_0000_0000 so that
   * every address has a non-zero high half and 64-bit handling is always exercised.
   */
  base?: bigint;
  /** Size in bytes; default 16 MiB. */
  size?: number;
}

/** A free block of the allocator, offsets relative to the memory's start. */
interface FreeBlock {
  offset: number;
  size: number;
}

/** In-memory guest-physical memory with a first-fit allocator. */
export class SimulatedMemory implements DmaAllocator {
  /** All bytes of the memory. */
  readonly bytes: Uint8Array;
  /** A little-endian view over {@link SimulatedMemory.bytes}. */
  readonly view: DataView;
  /** Low half of the base address. */
  readonly baseLo: number;
  /** High half of the base address. */
  readonly baseHi: number;
  /** Size in bytes. */
  readonly size: number;
  #free: FreeBlock[];
  #live = new Map<number, number>();

  /** Creates the memory; see {@link SimulatedMemoryOptions}. */
  constructor(options: SimulatedMemoryOptions = {}) {
    const base = options.base ?? 0x1_0000_0000n;
    const size = options.size ?? 16 * 1024 * 1024;
    if (base < 0n || base + BigInt(size) > 1n << 64n) {
      throw new RangeError(`Cannot place simulated memory at ${hex(base)}`);
    }
    if ((base & 0xfffn) !== 0n) {
      throw new RangeError(`Simulated memory base ${hex(base)} is not page-aligned`);
    }
    if ((base & 0xffff_ffffn) + BigInt(size) > BigInt(TWO_POW_32)) {
      // Keeping the whole memory inside one 4 GiB window makes resolve() a single subtraction.
      throw new RangeError("Simulated memory must not cross a 4 GiB boundary");
    }
    this.size = size;
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
    this.baseLo = Number(base & 0xffff_ffffn);
    this.baseHi = Number(base >> 32n);
    this.#free = [{ offset: 0, size }];
  }

  /** Bytes currently allocated. */
  get allocated(): number {
    let n = 0;
    for (const s of this.#live.values()) n += s;
    return n;
  }

  /** Allocates a zeroed region; see {@link DmaAllocator.alloc}. */
  alloc(size: number, align = 4096): DmaRegion {
    if (!Number.isInteger(size) || size <= 0) {
      throw new RangeError(`Cannot allocate ${size} bytes of DMA memory`);
    }
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
      throw new RangeError(`DMA alignment ${align} is not a power of two`);
    }
    for (let i = 0; i < this.#free.length; i++) {
      const block = this.#free[i];
      const addr = this.baseLo + block.offset;
      const pad = (align - (addr % align)) % align;
      if (pad + size > block.size) continue;
      const offset = block.offset + pad;
      const rest = block.size - pad - size;
      const replacement: FreeBlock[] = [];
      if (pad > 0) replacement.push({ offset: block.offset, size: pad });
      if (rest > 0) replacement.push({ offset: offset + size, size: rest });
      this.#free.splice(i, 1, ...replacement);
      this.#live.set(offset, size);
      const bytes = this.bytes.subarray(offset, offset + size);
      bytes.fill(0);
      return {
        addrLo: this.baseLo + offset,
        addrHi: this.baseHi,
        size,
        bytes,
        view: new DataView(this.bytes.buffer, offset, size),
      };
    }
    throw new DmaError(`Out of simulated DMA memory: cannot allocate ${size} bytes`);
  }

  /** Returns a region; see {@link DmaAllocator.free}. */
  free(region: DmaRegion): void {
    const offset = this.resolve(region.addrLo, region.addrHi, region.size);
    if (offset < 0 || this.#live.get(offset) !== region.size) {
      throw new DmaError("Cannot free a DMA region that is not allocated from this memory");
    }
    this.#live.delete(offset);
    this.#free.push({ offset, size: region.size });
    this.#free.sort((a, b) => a.offset - b.offset);
    const merged: FreeBlock[] = [];
    for (const b of this.#free) {
      const last = merged[merged.length - 1];
      if (last && last.offset + last.size === b.offset) last.size += b.size;
      else merged.push({ ...b });
    }
    this.#free = merged;
  }

  /**
   * Device-side access: the offset into {@link SimulatedMemory.bytes} of the `length` bytes at
   * address `lo`/`hi`, or -1 when any of them lies outside the memory. Allocation-free.
   */
  resolve(lo: number, hi: number, length: number): number {
    if (hi !== this.baseHi || length < 0) return -1;
    const offset = (lo >>> 0) - this.baseLo;
    if (offset < 0 || offset + length > this.size) return -1;
    return offset;
  }
}
