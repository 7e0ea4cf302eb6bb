/**
 * The libc calls the real-hardware backends need (mmap, mlock, open, pread/pwrite, ioctl,
 * eventfd, and poll as a `nonblocking` call that waits on a thread of its own), bound once with
 * `Deno.dlopen`, plus {@link MappedRegisters}: exact-width MMIO over mapped memory. Needs
 * `--allow-ffi` (in practice `--allow-all`, which the `/sys` files need); without it every entry
 * point throws {@link HostPermissionError}.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import type { DmaRegion } from "../transport/dma.ts";
import { checkAccess, type RegisterSpace } from "../transport/registers.ts";

/** Thrown when a host operation fails (a syscall error, a missing device, a bound driver). */
export class HostError extends Error {
  /** The errno of the failed call, when there is one. */
  readonly errno: number | undefined;
  /** Creates the error with a message saying what failed and, optionally, the errno. */
  constructor(message: string, errno?: number) {
    super(message);
    this.name = "HostError";
    this.errno = errno;
  }
}

/** Thrown when the process lacks a permission the backend needs (FFI, root, file access). */
export class HostPermissionError extends HostError {
  /** Creates the error with a message saying which permission is missing. */
  constructor(message: string, errno?: number) {
    super(message, errno);
    this.name = "HostPermissionError";
  }
}

/** `PROT_READ` (asm-generic/mman-common.h). */
export const PROT_READ = 0x1;
/** `PROT_WRITE`. */
export const PROT_WRITE = 0x2;
/** `MAP_SHARED`. */
export const MAP_SHARED = 0x01;
/** `MAP_PRIVATE`. */
export const MAP_PRIVATE = 0x02;
/** `MAP_ANONYMOUS` (x86-64). */
export const MAP_ANONYMOUS = 0x20;
/** `MAP_LOCKED` (x86-64). */
export const MAP_LOCKED = 0x2000;
/** `MAP_POPULATE` (x86-64). */
export const MAP_POPULATE = 0x8000;
/** `MAP_HUGETLB` (x86-64). */
export const MAP_HUGETLB = 0x40000;
/** `MADV_HUGEPAGE`: ask for transparent hugepages (asm-generic/mman-common.h). */
export const MADV_HUGEPAGE = 14;
/** `O_RDONLY`. */
export const O_RDONLY = 0;
/** `O_RDWR`. */
export const O_RDWR = 2;
/** `O_SYNC` (x86-64). */
export const O_SYNC = 0x101000;
/** `O_CLOEXEC` (x86-64). */
export const O_CLOEXEC = 0x80000;
/** `EPERM`. */
export const EPERM = 1;
/** `ENOENT`. */
export const ENOENT = 2;
/** `EACCES`. */
export const EACCES = 13;
/** `EBUSY`. */
export const EBUSY = 16;
/** `EFD_NONBLOCK` (x86-64, = O_NONBLOCK). */
export const EFD_NONBLOCK = 0x800;
/** `EFD_CLOEXEC` (= O_CLOEXEC). */
export const EFD_CLOEXEC = 0x80000;

/** The libc symbols we bind. `open` and `ioctl` are variadic; x86-64 passes the extras fine. */
const SYMBOLS = {
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  mlock: { parameters: ["pointer", "usize"], result: "i32" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctlInt: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // Waits on a thread of Deno's blocking pool: the event loop keeps running meanwhile.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  geteuid: { parameters: [], result: "u32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** The bound libc. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;

/**
 * Returns libc's bound symbols, opening the library on first use. Throws
 * {@link HostPermissionError} when the process has no FFI permission.
 */
export function libc(): Libc {
  if (library === null) {
    try {
      library = Deno.dlopen("libc.so.6", SYMBOLS);
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
        throw new HostPermissionError(
          "Cannot use the real-hardware backend: FFI permission is missing (run with " +
            "--allow-all: --allow-ffi alone cannot reach /sys under Deno 2.9.6)",
        );
      }
      throw err;
    }
  }
  return library.symbols;
}

/** Returns whether the process runs with effective user ID 0 (root). */
export function isRoot(): boolean {
  return libc().geteuid() === 0;
}

/** Returns the calling thread's errno (read right after a failed call). */
export function errno(): number {
  const ptr = libc().__errno_location();
  return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32(0);
}

/** Returns libc's description of `code`. */
export function strerror(code: number): string {
  const ptr = libc().strerror(code);
  return ptr === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(ptr);
}

/** Builds a {@link HostError} (or {@link HostPermissionError} for EPERM/EACCES) for `what`. */
export function syscallError(what: string, code: number = errno()): HostError {
  const message = `${what}: ${strerror(code)} (errno ${code})`;
  return code === EPERM || code === EACCES
    ? new HostPermissionError(message, code)
    : new HostError(message, code);
}

/** Encodes `path` as a NUL-terminated C string. */
export function cString(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(path + "\0");
  return bytes as Uint8Array<ArrayBuffer>;
}

/** Opens `path` with `flags`, returning the fd; throws {@link HostError} on failure. */
export function openFile(path: string, flags: number): number {
  const fd = libc().open(cString(path), flags | O_CLOEXEC, 0);
  if (fd < 0) throw syscallError(`Cannot open ${path}`);
  return fd;
}

/** Closes `fd`, ignoring errors. */
export function closeFile(fd: number): void {
  libc().close(fd);
}

/** The value mmap returns on failure, `(void *)-1`. */
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** Calls mmap and returns the mapping; throws {@link HostError} with `what` on failure. */
export function mmap(
  what: string,
  length: number,
  prot: number,
  flags: number,
  fd = -1,
  offset = 0n,
): Deno.PointerObject {
  const ptr = libc().mmap(null, BigInt(length), prot, flags, fd, offset);
  if (ptr === null || BigInt(Deno.UnsafePointer.value(ptr)) === MAP_FAILED) {
    throw syscallError(`Cannot mmap ${what}`);
  }
  return ptr;
}

/** Unmaps `length` bytes at `ptr`; throws {@link HostError} on failure. */
export function munmap(ptr: Deno.PointerObject, length: number): void {
  if (libc().munmap(ptr, BigInt(length)) !== 0) throw syscallError("Cannot munmap");
}

/** Returns the virtual address of `ptr` as a bigint. */
export function pointerAddress(ptr: Deno.PointerObject): bigint {
  return BigInt(Deno.UnsafePointer.value(ptr));
}

/** Returns `ptr + bytes`. */
export function offsetPointer(ptr: Deno.PointerObject, bytes: number): Deno.PointerObject {
  const moved = Deno.UnsafePointer.offset(ptr, bytes);
  if (moved === null) throw new HostError("Pointer arithmetic produced a null pointer");
  return moved;
}

/**
 * Exact-width registers over mapped device memory (an MMIO BAR). Each access is one typed-
 * array element access of the register's own width: V8 compiles a `Uint16Array` element store
 * to a single 16-bit store (unlike `DataView.setUint16`, which its builtins may split into
 * bytes), which virtio requires (virtio 1.3 §4.1.3.1). Little-endian host assumed (x86-64).
 */
export class MappedRegisters implements RegisterSpace {
  /** Size of the window in bytes. */
  readonly size: number;
  #u8: Uint8Array;
  #u16: Uint16Array;
  #u32: Uint32Array;
  #ptr: Deno.PointerObject;
  #unmap: boolean;

  /**
   * Wraps `size` bytes at `ptr`. With `unmapOnClose`, {@link MappedRegisters.close} unmaps
   * them.
   */
  constructor(ptr: Deno.PointerObject, size: number, unmapOnClose = false) {
    const buffer = Deno.UnsafePointerView.getArrayBuffer(ptr, size);
    this.size = size;
    this.#ptr = ptr;
    this.#unmap = unmapOnClose;
    this.#u8 = new Uint8Array(buffer);
    this.#u16 = new Uint16Array(buffer, 0, size >>> 1);
    this.#u32 = new Uint32Array(buffer, 0, size >>> 2);
  }

  /** The mapping's address in this process. */
  get pointer(): Deno.PointerObject {
    return this.#ptr;
  }

  /** Reads the 8-bit register at `offset`. */
  read8(offset: number): number {
    checkAccess(offset, 1, this.size);
    return this.#u8[offset];
  }
  /** Reads the 16-bit register at `offset` with one 16-bit load. */
  read16(offset: number): number {
    checkAccess(offset, 2, this.size);
    return this.#u16[offset >>> 1];
  }
  /** Reads the 32-bit register at `offset` with one 32-bit load. */
  read32(offset: number): number {
    checkAccess(offset, 4, this.size);
    return this.#u32[offset >>> 2];
  }
  /** Writes the 8-bit register at `offset`. */
  write8(offset: number, value: number): void {
    checkAccess(offset, 1, this.size);
    this.#u8[offset] = value;
  }
  /** Writes the 16-bit register at `offset` with one 16-bit store. */
  write16(offset: number, value: number): void {
    checkAccess(offset, 2, this.size);
    this.#u16[offset >>> 1] = value;
  }
  /** Writes the 32-bit register at `offset` with one 32-bit store. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    this.#u32[offset >>> 2] = value;
  }

  /** Unmaps the window when it owns the mapping; later accesses are undefined behaviour. */
  close(): void {
    if (this.#unmap) {
      this.#unmap = false;
      munmap(this.#ptr, this.size);
    }
  }
}

/**
 * Exact-width registers over a file (a sysfs `config` file, a VFIO config region): each access
 * is one `pread`/`pwrite` of the register's width at its offset, which the kernel turns into a
 * config access of that width.
 */
export class FileRegisters implements RegisterSpace {
  /** Size of the window in bytes. */
  readonly size: number;
  #fd: number;
  #base: bigint;
  #what: string;
  #buf = new Uint8Array(4);
  #view = new DataView(this.#buf.buffer);

  /** Wraps `size` bytes of the open file `fd` starting at file offset `base`. */
  constructor(fd: number, size: number, what: string, base = 0n) {
    this.#fd = fd;
    this.size = size;
    this.#base = base;
    this.#what = what;
  }

  /** Reads `width` bytes at `offset` into the scratch buffer. */
  #read(offset: number, width: number): void {
    checkAccess(offset, width, this.size);
    const n = libc().pread(this.#fd, this.#buf, BigInt(width), this.#base + BigInt(offset));
    if (Number(n) !== width) {
      const code = errno();
      throw n < 0
        ? syscallError(
          `Cannot read ${width * 8}-bit register ${hex(offset)} of ${this.#what}`,
          code,
        )
        : new HostPermissionError(
          `Cannot read ${width * 8}-bit register ${hex(offset)} of ${this.#what}: ` +
            `short read (only the first 64 bytes are readable unless root)`,
        );
    }
  }

  /** Writes `width` bytes from the scratch buffer at `offset`. */
  #write(offset: number, width: number): void {
    const n = libc().pwrite(this.#fd, this.#buf, BigInt(width), this.#base + BigInt(offset));
    if (Number(n) !== width) {
      throw syscallError(
        `Cannot write ${width * 8}-bit register ${hex(offset)} of ${this.#what}`,
      );
    }
  }

  /** Reads the 8-bit register at `offset`. */
  read8(offset: number): number {
    this.#read(offset, 1);
    return this.#buf[0];
  }
  /** Reads the 16-bit register at `offset`. */
  read16(offset: number): number {
    this.#read(offset, 2);
    return this.#view.getUint16(0, true);
  }
  /** Reads the 32-bit register at `offset`. */
  read32(offset: number): number {
    this.#read(offset, 4);
    return this.#view.getUint32(0, true);
  }
  /** Writes the 8-bit register at `offset`. */
  write8(offset: number, value: number): void {
    checkAccess(offset, 1, this.size);
    this.#buf[0] = value;
    this.#write(offset, 1);
  }
  /** Writes the 16-bit register at `offset`. */
  write16(offset: number, value: number): void {
    checkAccess(offset, 2, this.size);
    this.#view.setUint16(0, value, true);
    this.#write(offset, 2);
  }
  /** Writes the 32-bit register at `offset`. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    this.#view.setUint32(0, value, true);
    this.#write(offset, 4);
  }
}

/** A block of mapped memory that DMA regions are bump-allocated from. */
export interface MappedChunk {
  /** Start of the mapping in this process. */
  ptr: Deno.PointerObject;
  /** Bytes mapped. */
  size: number;
  /** Next free byte. */
  used: number;
  /** Regions handed out and not yet freed. */
  live: number;
}

/**
 * Bump-allocates a zeroed region of `size` bytes from `chunk`, whose byte 0 the device sees at
 * `base`, aligned to `align` in the device's address space. Returns null when it does not fit.
 */
export function carveRegion(
  chunk: MappedChunk,
  base: bigint,
  size: number,
  align: number,
): DmaRegion | null {
  const start = base + BigInt(chunk.used);
  const pad = Number((BigInt(align) - (start % BigInt(align))) % BigInt(align));
  const offset = chunk.used + pad;
  if (offset + size > chunk.size) return null;
  chunk.used = offset + size;
  chunk.live++;
  const bytes = new Uint8Array(
    Deno.UnsafePointerView.getArrayBuffer(offsetPointer(chunk.ptr, offset), size),
  );
  bytes.fill(0);
  const address = base + BigInt(offset);
  return {
    addrLo: Number(address & 0xffff_ffffn),
    addrHi: Number(address >> 32n),
    size,
    bytes,
    view: new DataView(bytes.buffer),
  };
}
