/**
 * DMA memory: regions the driver shares with the device. A region has a device-visible
 * address, carried as two 32-bit halves so the hot path never needs a `bigint`, and a byte
 * view the driver reads and writes. Real backends (pagemap, VFIO) and the simulated memory of
 * the mock device both implement {@link DmaAllocator}.
 *
 * @module
 */

import { joinAddress } from "../util/u64.ts";

/** A block of memory the device can reach by address. */
export interface DmaRegion {
  /** Low 32 bits of the device-visible address of byte 0. */
  readonly addrLo: number;
  /** High 32 bits of the device-visible address of byte 0. */
  readonly addrHi: number;
  /** Length in bytes. */
  readonly size: number;
  /** The region's bytes, as the driver sees them. */
  readonly bytes: Uint8Array;
  /** A little-endian view over {@link DmaRegion.bytes}. */
  readonly view: DataView;
}

/** Hands out and takes back DMA regions. */
export interface DmaAllocator {
  /**
   * Allocates a zeroed region of at least `size` bytes whose address is aligned to `align`
   * (a power of two, default 4096). Throws {@link DmaError} when out of memory.
   */
  alloc(size: number, align?: number): DmaRegion;
  /** Returns a region to the allocator. Freeing a region twice throws {@link DmaError}. */
  free(region: DmaRegion): void;
}

/** Thrown when DMA memory cannot be allocated or a region is misused. */
export class DmaError extends Error {
  /** Creates the error with a message saying what failed. */
  constructor(message: string) {
    super(message);
    this.name = "DmaError";
  }
}

/** Returns the address of byte `offset` of `region` as a `bigint`. */
export function regionAddress(region: DmaRegion, offset = 0): bigint {
  return joinAddress(region.addrLo, region.addrHi) + BigInt(offset);
}
