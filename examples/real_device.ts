/**
 * The real device: drive QEMU's virtio-iommu-pci from userspace inside a guest. Needs a q35
 * guest started with `-device virtio-iommu-pci`, no kernel driver bound to it (or unbound:
 * `echo 0000:00:02.0 > /sys/bus/pci/drivers/virtio-pci/unbind`), root (for the config file,
 * the BAR mmap and /proc/self/pagemap), and `--allow-all`: Deno 2.9.6 opens files under /sys
 * only when every permission is granted (`--allow-read --allow-write --allow-ffi` gets
 * "NotCapable: Requires all access"). `deno task guest` boots such a guest.
 *
 * Off a guest it says why it cannot run: exit 0 when this machine has no such device (a real
 * skip), exit 1 when the device may be there but a permission is missing (Deno's or root's).
 *
 * Run (in the guest): `deno run --allow-all examples/real_device.ts [SSSS:BB:DD.F]`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { MAP_READ, MAP_WRITE, PciTransport, regionAddress, VirtioIommu } from "../mod.ts";

const BDF = Deno.args[0] ?? "0000:00:02.0";
const SYSFS = `/sys/bus/pci/devices/${BDF}`;
const RUN = "deno run --allow-all examples/real_device.ts";

/** Why this machine cannot run the example: a skip (no device) or a missing permission. */
interface Obstacle {
  /** What is missing. */
  reason: string;
  /** Whether it is a permission (Deno's or root's) rather than an absent device. */
  permission: boolean;
}

/** Why this machine cannot run the example, or null when it can. */
function obstacle(): Obstacle | null {
  let ids: string;
  try {
    ids = Deno.readTextFileSync(`${SYSFS}/vendor`).trim() + ":" +
      Deno.readTextFileSync(`${SYSFS}/device`).trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return {
        reason: `Deno may not read ${SYSFS}: Deno 2.9.6 opens /sys only with --allow-all ` +
          `(run: ${RUN})`,
        permission: true,
      };
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      return { reason: `cannot read ${SYSFS}: run as root`, permission: true };
    }
    return {
      reason: `no PCI device ${BDF}: run inside a QEMU guest with -device virtio-iommu-pci`,
      permission: false,
    };
  }
  if (ids !== "0x1af4:0x1057") {
    return { reason: `${BDF} is ${ids}, not a virtio-iommu (0x1af4:0x1057)`, permission: false };
  }
  try {
    Deno.readLinkSync(`${SYSFS}/driver`);
    return { reason: `a kernel driver owns ${BDF}: unbind it first`, permission: false };
  } catch {
    // No driver bound: good.
  }
  try {
    Deno.openSync(`${SYSFS}/config`, { read: true, write: true }).close();
  } catch {
    return { reason: `cannot open ${SYSFS}/config for writing: run as root`, permission: true };
  }
  return null;
}

const found = obstacle();
if (found !== null) {
  if (found.permission) {
    console.error(`real_device: cannot run, ${found.reason}.`);
    Deno.exit(1);
  }
  console.log(`real_device: skipped, ${found.reason}.`);
  console.log("This example drives QEMU's virtio-iommu-pci from a guest; see its header comment.");
  Deno.exit(0);
}

// Loaded only here: the host backend uses FFI.
const { openSysfsPci, PagemapDma } = await import("../host.ts");

const pci = openSysfsPci(BDF);
const dma = new PagemapDma();
try {
  const iommu = await VirtioIommu.create(
    PciTransport.create(pci.config, (i) => pci.bar(i)),
    dma,
    { timeoutMs: 5000 },
  );
  console.log(`features: ${iommu.info.featureNames.join(" ")}`);
  const endpoint = 0x08; // 00:01.0 in the default q35 guest; endpoint ID = BDF (QEMU's VIOT)
  for (const r of (await iommu.probe(endpoint)).regions) {
    console.log(
      `endpoint 0x08 reserved: ${r.kind} ${hex(r.start)}-${hex(r.end)}`,
    );
  }
  const page = dma.alloc(4096);
  await iommu.attach(1, endpoint);
  await iommu.map(1, 0x10_0000, regionAddress(page), 4096, MAP_READ | MAP_WRITE);
  console.log(`mapped iova 0x100000 -> phys ${hex(regionAddress(page))}`);
  await iommu.unmap(1, 0x10_0000, 4096);
  await iommu.detach(1, endpoint);
  await iommu.close();
  dma.free(page);
} finally {
  dma.close();
  pci.close();
}
