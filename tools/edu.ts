/**
 * Guest-side helpers for QEMU's `edu` device (hw/misc/edu.c, docs/specs/edu.rst), a tiny DMA
 * engine the real-device tests and the peer benchmark use as the endpoint behind the
 * virtio-iommu: find it in sysfs, bind it to vfio-pci, run one DMA through its BAR0.
 * Runs inside the guest (needs `--allow-all`: Deno 2.9.6 opens /sys only with all access).
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";
import { eduStartDma, eduWaitDma } from "../conform/edu.ts";

export { EDU_DEVICE, EDU_VENDOR } from "../spec/edu.ts";

/** What {@link bindToVfioPci} found after binding. */
export interface VfioBinding {
  /** The driver edu had before (null: none). */
  driverBefore: string | null;
  /** The driver after binding (expected `vfio-pci`). */
  driver: string | null;
  /** The IOMMU group number. */
  group: number;
  /** Whether `/dev/vfio/<group>` exists. */
  groupDevice: boolean;
}

/** Returns the address (`dddd:bb:dd.f`) of the first PCI device with these IDs, or null. */
export function findPciDevice(vendor: number, device: number): string | null {
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/sys/bus/pci/devices")) {
    const dir = `/sys/bus/pci/devices/${entry.name}`;
    if (
      Number(Deno.readTextFileSync(`${dir}/vendor`).trim()) === vendor &&
      Number(Deno.readTextFileSync(`${dir}/device`).trim()) === device
    ) {
      found.push(entry.name);
    }
  }
  return found.sort()[0] ?? null;
}

/** Returns the name of the driver bound to `bdf`, or null. */
export function boundDriver(bdf: string): string | null {
  try {
    const link = Deno.readLinkSync(`/sys/bus/pci/devices/${bdf}/driver`);
    return link.slice(link.lastIndexOf("/") + 1);
  } catch {
    return null;
  }
}

/**
 * Binds `bdf` to vfio-pci by its IDs (`new_id`; vfio-pci then probes every unbound device with
 * those IDs) and waits up to 2 s for the driver link and the IOMMU group to appear.
 */
export async function bindToVfioPci(bdf: string): Promise<VfioBinding> {
  const dir = `/sys/bus/pci/devices/${bdf}`;
  const driverBefore = boundDriver(bdf);
  if (driverBefore !== "vfio-pci") {
    if (driverBefore !== null) Deno.writeTextFileSync(`${dir}/driver/unbind`, bdf);
    const vendor = Deno.readTextFileSync(`${dir}/vendor`).trim().replace(/^0x/, "");
    const device = Deno.readTextFileSync(`${dir}/device`).trim().replace(/^0x/, "");
    Deno.writeTextFileSync("/sys/bus/pci/drivers/vfio-pci/new_id", `${vendor} ${device}`);
  }
  const start = performance.now();
  while (boundDriver(bdf) !== "vfio-pci" && performance.now() - start < 2000) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  let group = -1;
  try {
    const target = Deno.readLinkSync(`${dir}/iommu_group`);
    group = Number(target.slice(target.lastIndexOf("/") + 1));
  } catch {
    group = -1;
  }
  let groupDevice = false;
  try {
    groupDevice = group >= 0 && Deno.statSync(`/dev/vfio/${group}`) !== null;
  } catch {
    groupDevice = false;
  }
  return { driverBefore, driver: boundDriver(bdf), group, groupDevice };
}

/**
 * Runs one edu DMA of `count` bytes from `src` to `dst` (`cmd` bit 1: edu buffer → RAM) and
 * waits until it finishes; returns the wait in ms. Throws when it runs longer than 5 s.
 */
export function eduDma(
  bar: RegisterSpace,
  src: number,
  dst: number,
  cmd: number,
  count: number,
): Promise<number> {
  eduStartDma(bar, BigInt(src), BigInt(dst), count, cmd);
  return eduWaitDma(bar, 5000);
}
