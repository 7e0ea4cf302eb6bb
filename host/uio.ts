/**
 * A PCI function's INTx through uio_pci_generic (Linux `drivers/uio/uio_pci_generic.c`,
 * Documentation/driver-api/uio-howto.rst): the driver claims no BAR (the sysfs `resourceN`
 * mmaps keep working), its interrupt handler masks INTx with the command register's Interrupt
 * Disable bit and makes `/dev/uioN` readable (a 4-byte event count); userspace reads the count,
 * handles the device, and re-enables INTx by clearing that bit. QEMU's virtio-iommu-pci has no
 * MSI-X, so this is how it interrupts a userspace driver. Needs root and `--allow-all`.
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";
import { PCI_COMMAND_INTX_DISABLE } from "../spec/interrupts.ts";
import { PCI_CFG_COMMAND } from "../spec/pci.ts";
import { closeFile, HostError, O_RDWR, openFile } from "./ffi.ts";
import { FdInterruptSource } from "./fd_interrupts.ts";

/** The kernel driver that hands a PCI function's INTx to userspace. */
export const UIO_PCI_GENERIC = "uio_pci_generic";

/** Returns `/dev/uioN` of `bdf` when uio_pci_generic owns it, else null. */
export function uioDevicePath(bdf: string, sysfsRoot = "/sys/bus/pci/devices"): string | null {
  try {
    for (const entry of Deno.readDirSync(`${sysfsRoot}/${bdf}/uio`)) {
      if (/^uio\d+$/.test(entry.name)) return `/dev/${entry.name}`;
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
  return null;
}

/**
 * Opens `bdf`'s `/dev/uioN` as an interrupt line: each wait polls it (on a thread of its own),
 * reads the event count, and unmask() clears Interrupt Disable in `config` (the function's
 * config space), which the kernel set when the interrupt fired. INTx is unmasked once at open,
 * in case an earlier interrupt was left masked. Throws {@link HostError} when the function is
 * not bound to uio_pci_generic.
 */
export function openUioInterrupts(bdf: string, config: RegisterSpace): FdInterruptSource {
  const path = uioDevicePath(bdf);
  if (path === null) {
    throw new HostError(
      `Cannot take ${bdf}'s interrupts: it is not bound to ${UIO_PCI_GENERIC} ` +
        `(echo ${UIO_PCI_GENERIC} > /sys/bus/pci/devices/${bdf}/driver_override; ` +
        `echo ${bdf} > /sys/bus/pci/drivers_probe)`,
    );
  }
  const fd = openFile(path, O_RDWR);
  const unmask = (): void => {
    const command = config.read16(PCI_CFG_COMMAND);
    if ((command & PCI_COMMAND_INTX_DISABLE) !== 0) {
      config.write16(PCI_CFG_COMMAND, command & ~PCI_COMMAND_INTX_DISABLE);
    }
  };
  unmask();
  return new FdInterruptSource({
    delivery: "line",
    fds: [fd],
    readSize: 4,
    unmask,
    release: () => closeFile(fd),
  });
}

/**
 * Binds `bdf` to uio_pci_generic (unbinding its driver, then `driver_override` and
 * `drivers_probe`) and waits up to `timeoutMs` for `/dev/uioN`; returns its path. The module
 * must be loaded (`modprobe uio_pci_generic`).
 */
export async function bindUioPciGeneric(bdf: string, timeoutMs = 2000): Promise<string> {
  const dir = `/sys/bus/pci/devices/${bdf}`;
  try {
    Deno.statSync("/sys/bus/pci/drivers/uio_pci_generic");
  } catch {
    throw new HostError(`Cannot bind ${bdf}: the ${UIO_PCI_GENERIC} module is not loaded`);
  }
  let driver: string | null = null;
  try {
    const link = Deno.readLinkSync(`${dir}/driver`);
    driver = link.slice(link.lastIndexOf("/") + 1);
  } catch {
    driver = null;
  }
  if (driver !== UIO_PCI_GENERIC) {
    if (driver !== null) Deno.writeTextFileSync(`${dir}/driver/unbind`, bdf);
    Deno.writeTextFileSync(`${dir}/driver_override`, UIO_PCI_GENERIC);
    Deno.writeTextFileSync("/sys/bus/pci/drivers_probe", bdf);
  }
  const start = performance.now();
  for (;;) {
    const path = uioDevicePath(bdf);
    if (path !== null) return path;
    if (performance.now() - start > timeoutMs) {
      throw new HostError(`${bdf} did not get a /dev/uioN within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
