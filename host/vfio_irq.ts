/**
 * A VFIO device's interrupts as an {@link InterruptSource}: VFIO_DEVICE_GET_IRQ_INFO says what
 * an index has, VFIO_DEVICE_SET_IRQS attaches one eventfd per interrupt (ACTION_TRIGGER), and
 * the eventfds are waited on without blocking the event loop ({@link FdInterruptSource}). INTx
 * is automasked by VFIO when it fires and unmasked with ACTION_UNMASK; MSI and MSI-X vectors
 * need no unmask. Closing the source detaches the eventfds (a trigger of count 0) first.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { closeFile, HostError, libc } from "./ffi.ts";
import { createEventFd, FdInterruptSource } from "./fd_interrupts.ts";
import { ioctlStruct, type VfioPciDevice } from "./vfio.ts";
import {
  decodeIrqInfo,
  encodeIrqInfoRequest,
  encodeIrqSet,
  type IrqInfo,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
} from "./vfio_abi.ts";

/** Which of a PCI function's interrupts: its INTx line, its MSI or its MSI-X vectors. */
export type VfioIrqKind = "intx" | "msi" | "msix";

/** The VFIO interrupt index of each kind. */
const INDEX: Readonly<Record<VfioIrqKind, number>> = {
  intx: VFIO_PCI_INTX_IRQ_INDEX,
  msi: VFIO_PCI_MSI_IRQ_INDEX,
  msix: VFIO_PCI_MSIX_IRQ_INDEX,
};

/** What VFIO_DEVICE_GET_IRQ_INFO reports for `kind` on `device`. */
export function vfioIrqInfo(device: VfioPciDevice, kind: VfioIrqKind): IrqInfo {
  const info = encodeIrqInfoRequest(INDEX[kind]);
  ioctlStruct(device.deviceFd, VFIO_DEVICE_GET_IRQ_INFO, info, `IRQ info of ${kind} failed`);
  return decodeIrqInfo(info);
}

/**
 * Attaches an eventfd to each of `vectors` interrupts of `kind` (default: INTx's one, all MSI /
 * MSI-X vectors up to 32) and returns them as one source: a line for INTx (unmask() sends
 * VFIO's ACTION_UNMASK), vectors otherwise (for MSI-X in virtio-pci order: pass it as
 * `PciTransport`'s `interrupts`). Enabling MSI or MSI-X turns INTx off, as PCI requires.
 * Throws {@link HostError} when the device has no such interrupt.
 */
export function openVfioInterrupts(
  device: VfioPciDevice,
  kind: VfioIrqKind,
  vectors?: number,
): FdInterruptSource {
  const info = vfioIrqInfo(device, kind);
  if (info.count === 0) {
    throw new HostError(`${device.bdf} has no ${kind} interrupt (VFIO reports count 0)`);
  }
  if ((info.flags & VFIO_IRQ_INFO_EVENTFD) === 0) {
    throw new HostError(
      `${device.bdf}'s ${kind} interrupt cannot signal an eventfd (flags ${hex(info.flags)})`,
    );
  }
  const n = vectors ?? (kind === "intx" ? 1 : Math.min(info.count, 32));
  if (!Number.isInteger(n) || n < 1 || n > info.count || n > 32) {
    throw new RangeError(
      `Cannot take ${vectors} ${kind} vectors of ${device.bdf}: it has ${info.count}`,
    );
  }
  const index = INDEX[kind];
  const fd = device.deviceFd;
  const eventfds: number[] = [];
  try {
    for (let i = 0; i < n; i++) eventfds.push(createEventFd());
    const set = encodeIrqSet(
      VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index,
      0,
      n,
      eventfds,
    );
    ioctlStruct(fd, VFIO_DEVICE_SET_IRQS, set, `VFIO_DEVICE_SET_IRQS (${kind}, ${n}) failed`);
  } catch (err) {
    for (const e of eventfds) closeFile(e);
    throw err;
  }
  const unmask = encodeIrqSet(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index, 0, 1);
  return new FdInterruptSource({
    delivery: kind === "intx" ? "line" : "vectors",
    fds: eventfds,
    readSize: 8,
    unmask: kind === "intx"
      ? () => void libc().ioctl(fd, BigInt(VFIO_DEVICE_SET_IRQS), unmask)
      : undefined,
    release: () => {
      // Detach the eventfds (trigger, count 0: the interrupt is disabled), then close them.
      const off = encodeIrqSet(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0);
      libc().ioctl(fd, BigInt(VFIO_DEVICE_SET_IRQS), off);
      for (const e of eventfds) closeFile(e);
    },
  });
}
