/**
 * A PCI device owned by userspace through sysfs (`/sys/bus/pci/devices/<bdf>`): config space
 * through the `config` file at exact widths, memory BARs mmapped from the `resourceN` files.
 * Needs root and `--allow-all` (FFI, and Deno 2.9.6 opens `/sys` only with every permission
 * granted); refuses a device a kernel driver is bound to, except uio_pci_generic, which claims no
 * BAR and hands the function's INTx to userspace ({@link SysfsPciDevice.interrupts}); and refuses
 * one whose vendor/device ID is not the expected one, before anything is enabled (bus mastering
 * for the wrong device would let it DMA).
 *
 * @example
 * ```ts ignore
 * const dev = openSysfsPci("0000:00:02.0");
 * console.log(dev.config.read16(0).toString(16)); // vendor ID
 * const bar4 = dev.bar(4);
 * dev.close();
 * ```
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";
import type { InterruptSource } from "../transport/interrupt_source.ts";
import { openUioInterrupts, UIO_PCI_GENERIC } from "./uio.ts";
import {
  closeFile,
  EACCES,
  EBUSY,
  EPERM,
  FileRegisters,
  HostError,
  HostPermissionError,
  MAP_SHARED,
  MappedRegisters,
  mmap,
  O_RDWR,
  O_SYNC,
  openFile,
  PROT_READ,
  PROT_WRITE,
} from "./ffi.ts";

/** Where sysfs lists PCI devices. */
export const SYSFS_PCI_DEVICES = "/sys/bus/pci/devices";

/** PCI command register offset in config space (PCI Local Bus 3.0 §6.2.2). */
export const PCI_COMMAND = 0x04;
/** Command register: memory space enable. */
export const PCI_COMMAND_MEMORY = 1 << 1;
/** Command register: bus master enable (bit 2). */
export const PCI_COMMAND_MASTER = 1 << 2;
/** A PCI function's identity: its vendor and device ID (PCI Local Bus 3.0 §6.2.1). */
export interface PciIdentity {
  /** Vendor ID (config offset 0). */
  vendor: number;
  /** Device ID (config offset 2). */
  device: number;
}

/**
 * virtio-iommu over modern virtio-pci: vendor 0x1af4, device 0x1040 + 23 (virtio 1.3 §4.1.2.1;
 * device type 23, §5).
 */
export const VIRTIO_IOMMU_PCI_IDENTITY: Readonly<PciIdentity> = { vendor: 0x1af4, device: 0x1057 };

/** `IORESOURCE_MEM` flag in the sysfs `resource` file (include/linux/ioport.h). */
const IORESOURCE_MEM = 0x200;

/** Options for {@link openSysfsPci}. */
export interface SysfsPciOptions {
  /** Open the device even when a kernel driver is bound (config reads only are safe). */
  allowBoundDriver?: boolean;
  /**
   * The vendor/device ID the function must have, checked before anything is enabled (default
   * {@link VIRTIO_IOMMU_PCI_IDENTITY}); `null` accepts any function (the caller checks).
   */
  identity?: PciIdentity | null;
  /** Write `1` to the `enable` file (default true). */
  enable?: boolean;
  /** Set bus mastering in the command register (default true). */
  busMaster?: boolean;
  /** The sysfs devices folder (default {@link SYSFS_PCI_DEVICES}); for tests. */
  sysfsRoot?: string;
}

/** One BAR as the sysfs `resource` file describes it. */
export interface SysfsResource {
  /** Physical start address. */
  start: bigint;
  /** Physical end address (inclusive). */
  end: bigint;
  /** `IORESOURCE_*` flags. */
  flags: bigint;
}

/** A userspace-owned PCI device: what `PciTransport` needs, plus cleanup. */
export interface SysfsPciDevice {
  /** The device's address, `dddd:bb:dd.f`. */
  readonly bdf: string;
  /** The device's config space (exact-width reads and writes through the `config` file). */
  readonly config: RegisterSpace;
  /** The memory BAR `index` mapped into this process, or null when it is absent or I/O. */
  bar(index: number): RegisterSpace | null;
  /**
   * The function's INTx through `/dev/uioN` when it is bound to uio_pci_generic (pass it as
   * `PciTransport`'s `interrupts`), else null: the driver then polls.
   */
  readonly interrupts: InterruptSource | null;
  /** Unmaps every BAR and closes the files. */
  close(): void;
}

/** Parses the sysfs `resource` file: one `start end flags` line (hex) per resource. */
export function parseResourceFile(text: string): SysfsResource[] {
  const resources: SysfsResource[] = [];
  for (const line of text.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length < 3) continue;
    resources.push({ start: BigInt(parts[0]), end: BigInt(parts[1]), flags: BigInt(parts[2]) });
  }
  return resources;
}

/** Returns whether `text` is a well-formed PCI address `dddd:bb:dd.f`. */
export function isBdf(text: string): boolean {
  return /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/.test(text);
}

/** Returns the name of the driver bound to the device folder `dir`, or null. */
function boundDriver(dir: string): string | null {
  try {
    const target = Deno.readLinkSync(`${dir}/driver`);
    return target.slice(target.lastIndexOf("/") + 1);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * Turns a Deno file-system error on `path` into a host error: {@link HostPermissionError} for a
 * missing Deno permission (NotCapable) or a refusal by the kernel (EACCES/EPERM).
 */
export function fileError(err: unknown, path: string, doing: string): Error {
  if (err instanceof Deno.errors.NotCapable) {
    return new HostPermissionError(
      `Cannot ${doing} ${path}: Deno permission missing (Deno 2.9.6 opens /sys only with ` +
        `--allow-all: run with --allow-all, as root)`,
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new HostPermissionError(`Cannot ${doing} ${path}: permission denied (run as root)`);
  }
  return err instanceof Error ? err : new HostError(String(err));
}

/** Hex of a 16-bit ID, four digits. */
function id16(value: number): string {
  return value.toString(16).padStart(4, "0");
}

/**
 * Enables a function for DMA, last of all the steps of opening it: writes `1` to its `enable`
 * file (when `enable`), then sets memory decoding and (when `busMaster`) bus mastering in the
 * command register, and reads it back. On any failure the command register and the `enable`
 * file are put back as they were, and the error is thrown. Exported for tests.
 */
export function enableForDma(
  config: RegisterSpace,
  enableFile: { read(): string; write(value: "0" | "1"): void },
  options: { enable: boolean; busMaster: boolean },
): void {
  const command = config.read16(PCI_COMMAND);
  let wasEnabled: string | null = null;
  try {
    if (options.enable) {
      wasEnabled = enableFile.read().trim();
      if (wasEnabled !== "1") enableFile.write("1");
    }
    const wanted = command | PCI_COMMAND_MEMORY | (options.busMaster ? PCI_COMMAND_MASTER : 0);
    if (wanted !== command) {
      config.write16(PCI_COMMAND, wanted);
      const now = config.read16(PCI_COMMAND);
      if ((now & wanted) !== wanted) {
        throw new HostError(
          `Cannot enable the device: command register reads 0x${id16(now)} after writing ` +
            `0x${id16(wanted)}`,
        );
      }
    }
  } catch (error) {
    try {
      config.write16(PCI_COMMAND, command);
      if (wasEnabled !== null && wasEnabled !== "1") enableFile.write("0");
    } catch {
      // Restoring is best effort: the first error says what went wrong.
    }
    throw error;
  }
}

/**
 * Opens the PCI device `bdf` through sysfs for a userspace driver. In this order: refuses a
 * function a kernel driver owns, checks its vendor/device ID (`options.identity`), reads its
 * resources, and only then enables it, turning on memory decoding and bus mastering (restored
 * if that fails); BARs are mapped on demand. Throws {@link HostError} /
 * {@link HostPermissionError} saying what failed.
 */
export function openSysfsPci(bdf: string, options: SysfsPciOptions = {}): SysfsPciDevice {
  if (!isBdf(bdf)) {
    throw new RangeError(`Invalid PCI address ${JSON.stringify(bdf)}: expected dddd:bb:dd.f`);
  }
  const dir = `${options.sysfsRoot ?? SYSFS_PCI_DEVICES}/${bdf}`;
  try {
    Deno.statSync(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new HostError(`No PCI device ${bdf}: ${dir} does not exist`);
    }
    throw fileError(err, dir, "read");
  }
  const driver = boundDriver(dir);
  if (driver !== null && driver !== UIO_PCI_GENERIC && !options.allowBoundDriver) {
    throw new HostError(
      `Cannot own PCI device ${bdf}: the kernel driver "${driver}" is bound to it ` +
        `(unbind it: echo ${bdf} > /sys/bus/pci/drivers/${driver}/unbind)`,
    );
  }

  let configFd: number;
  try {
    configFd = openFile(`${dir}/config`, O_RDWR);
  } catch (err) {
    if (err instanceof HostError && (err.errno === EACCES || err.errno === EPERM)) {
      throw new HostPermissionError(
        `Cannot open ${dir}/config for writing: permission denied (run as root)`,
        err.errno,
      );
    }
    throw err;
  }
  const configSize = Deno.statSync(`${dir}/config`).size;
  const config = new FileRegisters(configFd, configSize, `${bdf} config space`);
  const fail = (error: unknown): never => {
    closeFile(configFd);
    throw error;
  };

  // 1) Identity first: nothing is enabled for a function that is not the expected one.
  const identity = options.identity === undefined ? VIRTIO_IOMMU_PCI_IDENTITY : options.identity;
  if (identity !== null) {
    const vendor = config.read16(0), device = config.read16(2);
    if (vendor !== identity.vendor || device !== identity.device) {
      fail(
        new HostError(
          `PCI device ${bdf} is ${id16(vendor)}:${id16(device)}, expected ` +
            `${id16(identity.vendor)}:${id16(identity.device)}; nothing was enabled`,
        ),
      );
    }
  }

  // 2) The BARs, still without touching the device.
  let resources: SysfsResource[] = [];
  try {
    resources = parseResourceFile(Deno.readTextFileSync(`${dir}/resource`));
  } catch (err) {
    fail(fileError(err, `${dir}/resource`, "read"));
  }

  // 3) Last: enable, memory decoding and bus mastering (put back if any of it fails).
  const enablePath = `${dir}/enable`;
  const command = config.read16(PCI_COMMAND);
  try {
    enableForDma(config, {
      read: () => Deno.readTextFileSync(enablePath),
      write: (value) => Deno.writeTextFileSync(enablePath, value),
    }, {
      // A bound driver enabled the function already (uio_pci_generic does), and the enable
      // file then refuses writes with EBUSY.
      enable: (options.enable ?? true) && driver === null,
      busMaster: options.busMaster ?? true,
    });
  } catch (err) {
    fail(err instanceof HostError ? err : fileError(err, enablePath, "write"));
  }

  let interrupts: InterruptSource | null = null;
  if (driver === UIO_PCI_GENERIC && options.sysfsRoot === undefined) {
    try {
      interrupts = openUioInterrupts(bdf, config);
    } catch (err) {
      config.write16(PCI_COMMAND, command); // as it was before enableForDma()
      closeFile(configFd);
      throw err;
    }
  }

  const mapped = new Map<number, { regs: MappedRegisters; fd: number }>();
  let closed = false;

  /** Maps BAR `index` (once) and returns its registers, or null when it has none. */
  function bar(index: number): RegisterSpace | null {
    if (closed) throw new HostError(`PCI device ${bdf} is closed`);
    if (!Number.isInteger(index) || index < 0 || index > 5) {
      throw new RangeError(`Invalid BAR index ${index}: expected 0..5`);
    }
    const known = mapped.get(index);
    if (known) return known.regs;
    const res = resources[index];
    if (!res || res.end <= res.start || (res.flags & BigInt(IORESOURCE_MEM)) === 0n) return null;
    const size = Number(res.end - res.start + 1n);
    const path = `${dir}/resource${index}`;
    const fd = openFile(path, O_RDWR | O_SYNC);
    let regs: MappedRegisters;
    try {
      const ptr = mmap(path, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
      regs = new MappedRegisters(ptr, size, true);
    } catch (err) {
      closeFile(fd);
      if (err instanceof HostError && (err.errno === EPERM || err.errno === EBUSY)) {
        throw new HostError(
          `Cannot map BAR${index} of ${bdf}: ${err.message}; a kernel driver may have claimed ` +
            `the region (CONFIG_IO_STRICT_DEVMEM)`,
          err.errno,
        );
      }
      throw err;
    }
    mapped.set(index, { regs, fd });
    return regs;
  }

  /** Unmaps the BARs and closes every file. */
  function close(): void {
    if (closed) return;
    closed = true;
    for (const { regs, fd } of mapped.values()) {
      regs.close();
      closeFile(fd);
    }
    mapped.clear();
    interrupts?.close();
    closeFile(configFd);
  }

  return { bdf, config, bar, interrupts, close };
}
