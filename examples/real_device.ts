/**
 * The real device: drive QEMU's virtio-iommu-pci from userspace inside a guest. Needs a q35
 * guest started with `-device virtio-iommu-pci`, no kernel driver bound to it (or unbound:
 * `echo 0000:00:02.0 > /sys/bus/pci/drivers/virtio-pci/unbind`), root (for the config file,
 * the BAR mmap and /proc/self/pagemap), and `--allow-read --allow-write --allow-ffi`.
 * `deno task guest` boots such a guest. Anywhere else this program explains what it needs and
 * exits 0.
 *
 * Run (in the guest): `deno run --allow-read --allow-write --allow-ffi examples/real_device.ts`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { MAP_READ, MAP_WRITE, PciTransport, regionAddress, VirtioIommu } from "../mod.ts";

const BDF = Deno.args[0] ?? "0000:00:02.0";
const SYSFS = `/sys/bus/pci/devices/${BDF}`;

/** Why this machine cannot run the example, or null when it can. */
function missing(): string | null {
  for (const name of ["read", "write", "ffi"] as const) {
    if (Deno.permissions.querySync({ name }).state !== "granted") {
      return `run with --allow-read --allow-write --allow-ffi (missing --allow-${name})`;
    }
  }
  let ids: string;
  try {
    ids = Deno.readTextFileSync(`${SYSFS}/vendor`).trim() + ":" +
      Deno.readTextFileSync(`${SYSFS}/device`).trim();
  } catch {
    return `no PCI device ${BDF}: run inside a QEMU guest with -device virtio-iommu-pci`;
  }
  if (ids !== "0x1af4:0x1057") return `${BDF} is ${ids}, not a virtio-iommu (0x1af4:0x1057)`;
  try {
    Deno.readLinkSync(`${SYSFS}/driver`);
    return `a kernel driver owns ${BDF}: unbind it first`;
  } catch {
    // No driver bound: good.
  }
  try {
    Deno.openSync(`${SYSFS}/config`, { read: true, write: true }).close();
  } catch {
    return `cannot open ${SYSFS}/config for writing: run as root`;
  }
  return null;
}

const reason = missing();
if (reason !== null) {
  console.log(`real_device: skipped, ${reason}.`);
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
