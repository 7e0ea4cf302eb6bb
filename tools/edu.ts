/**
 * Guest-side helpers for QEMU's `edu` device (hw/misc/edu.c, docs/specs/edu.rst), a tiny DMA
 * engine the real-device tests and the peer benchmark use as the endpoint behind the
 * virtio-iommu: find it in sysfs, bind it to vfio-pci, run one DMA through its BAR0.
 * Runs inside the guest (needs `--allow-all`: Deno 2.9.6 opens /sys only with all access).
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";

/** edu's PCI vendor ID. */
export const EDU_VENDOR = 0x1234;
/** edu's PCI device ID. */
export const EDU_DEVICE = 0x11e8;
/** BAR0: DMA source address (64-bit). */
const EDU_DMA_SRC = 0x80;
/** BAR0: DMA destination address (64-bit). */
const EDU_DMA_DST = 0x88;
/** BAR0: DMA byte count (64-bit). */
const EDU_DMA_COUNT = 0x90;
/** BAR0: DMA command; bit 0 starts it and reads back 1 while it runs. */
const EDU_DMA_CMD = 0x98;
/** DMA command bit 0: run. */
const EDU_CMD_RUN = 0x1;

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
export async function eduDma(
  bar: RegisterSpace,
  src: number,
  dst: number,
  cmd: number,
  count: number,
): Promise<number> {
  bar.write32(EDU_DMA_SRC, src);
  bar.write32(EDU_DMA_SRC + 4, 0);
  bar.write32(EDU_DMA_DST, dst);
  bar.write32(EDU_DMA_DST + 4, 0);
  bar.write32(EDU_DMA_COUNT, count);
  bar.write32(EDU_DMA_COUNT + 4, 0);
  const start = performance.now();
  bar.write32(EDU_DMA_CMD, cmd | EDU_CMD_RUN);
  while ((bar.read32(EDU_DMA_CMD) & EDU_CMD_RUN) !== 0) {
    if (performance.now() - start > 5000) throw new Error("edu DMA did not finish within 5 s");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return Math.round(performance.now() - start);
}
