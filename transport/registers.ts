/**
 * Exact-width register access: the one interface every transport reads and writes device
 * registers through (MMIO BAR, PCI config space, an in-memory register file in tests).
 *
 * Virtio requires accesses of the field's own width (virtio 1.3 §4.1.3.1, §4.2.2.2): 8-bit
 * fields with 8-bit accesses, 16-bit fields with aligned 16-bit accesses, 32- and 64-bit fields
 * with aligned 32-bit accesses, a 64-bit field as two of them, low half at the lower address.
 *
 * @module
 */

import { hex } from "../util/hex.ts";

/** A little-endian register window accessed with exact widths. Offsets are in bytes. */
export interface RegisterSpace {
  /** Size of the window in bytes; every access must lie inside it. */
  readonly size: number;
  /** Reads the 8-bit register at `offset`. */
  read8(offset: number): number;
  /** Reads the 16-bit register at `offset` (2-byte aligned). */
  read16(offset: number): number;
  /** Reads the 32-bit register at `offset` (4-byte aligned), as an unsigned number. */
  read32(offset: number): number;
  /** Writes the 8-bit register at `offset`. */
  write8(offset: number, value: number): void;
  /** Writes the 16-bit register at `offset` (2-byte aligned). */
  write16(offset: number, value: number): void;
  /** Writes the 32-bit register at `offset` (4-byte aligned). */
  write32(offset: number, value: number): void;
}

/** Thrown for an access outside a register window or not aligned to its width. */
export class RegisterAccessError extends RangeError {
  /** Creates the error for an access of `width` bytes at `offset` in a window of `size`. */
  constructor(offset: number, width: number, size: number) {
    super(
      `Cannot access ${width * 8}-bit register at ${hex(offset)}: ` +
        (offset % width !== 0 ? "not aligned" : `outside the ${hex(size)}-byte window`),
    );
    this.name = "RegisterAccessError";
  }
}

/** Throws {@link RegisterAccessError} unless `offset` is aligned to `width` and inside `size`. */
export function checkAccess(offset: number, width: number, size: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + width > size || offset % width !== 0) {
    throw new RegisterAccessError(offset, width, size);
  }
}

/**
 * Reads a 64-bit field as two aligned 32-bit accesses, low half first (virtio 1.3 §4.1.3.1).
 * Not for hot paths: it returns a `bigint`.
 */
export function read64(regs: RegisterSpace, offset: number): bigint {
  const lo = regs.read32(offset);
  const hi = regs.read32(offset + 4);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Writes a 64-bit field given as two 32-bit halves, low half first (virtio 1.3 §4.1.3.1). */
export function write64(regs: RegisterSpace, offset: number, lo: number, hi: number): void {
  regs.write32(offset, lo >>> 0);
  regs.write32(offset + 4, hi >>> 0);
}

/**
 * Reads 64 bits that a device shows 32 at a time behind a select register: writes 0 to
 * `select`, reads the low half at `value`, writes 1, reads the high half (virtio 1.3 §4.2.2
 * DeviceFeaturesSel, §4.1.4.3 device_feature_select). Not for hot paths: it returns a `bigint`.
 */
export function readSelected64(regs: RegisterSpace, select: number, value: number): bigint {
  regs.write32(select, 0);
  const lo = regs.read32(value);
  regs.write32(select, 1);
  const hi = regs.read32(value);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Writes 64 bits 32 at a time behind a select register: select 0 and the low half, then
 * select 1 and the high half (virtio 1.3 §4.2.2 DriverFeaturesSel, §4.1.4.3
 * driver_feature_select).
 */
export function writeSelected64(
  regs: RegisterSpace,
  select: number,
  value: number,
  bits: bigint,
): void {
  regs.write32(select, 0);
  regs.write32(value, Number(bits & 0xffff_ffffn));
  regs.write32(select, 1);
  regs.write32(value, Number((bits >> 32n) & 0xffff_ffffn));
}

/**
 * A register window backed by plain memory: reads return what was written. Useful as the
 * backing store of device models and as a fake in tests.
 */
export class MemoryRegisters implements RegisterSpace {
  /** The bytes behind the window. */
  readonly view: DataView;
  /** Size of the window in bytes. */
  readonly size: number;

  /** Creates a zeroed window of `size` bytes. */
  constructor(size: number) {
    this.size = size;
    this.view = new DataView(new ArrayBuffer(size));
  }

  /** Reads the 8-bit register at `offset`. */
  read8(offset: number): number {
    checkAccess(offset, 1, this.size);
    return this.view.getUint8(offset);
  }
  /** Reads the 16-bit register at `offset`. */
  read16(offset: number): number {
    checkAccess(offset, 2, this.size);
    return this.view.getUint16(offset, true);
  }
  /** Reads the 32-bit register at `offset`. */
  read32(offset: number): number {
    checkAccess(offset, 4, this.size);
    return this.view.getUint32(offset, true);
  }
  /** Writes the 8-bit register at `offset`. */
  write8(offset: number, value: number): void {
    checkAccess(offset, 1, this.size);
    this.view.setUint8(offset, value);
  }
  /** Writes the 16-bit register at `offset`. */
  write16(offset: number, value: number): void {
    checkAccess(offset, 2, this.size);
    this.view.setUint16(offset, value, true);
  }
  /** Writes the 32-bit register at `offset`. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    this.view.setUint32(offset, value, true);
  }
}
