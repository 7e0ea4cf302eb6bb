/**
 * Runs INSIDE the QEMU guest (see tests/real_device_test.ts, which boots it with
 * `-device edu`): drives the real virtio-iommu-pci at 0000:00:02.0 through the sysfs backend
 * and prints one JSON report line prefixed with `REPORT ` for the host-side test to assert on.
 * Each step records its own result or error, so one failure does not hide the rest.
 *
 * Steps: raw config/BAR reads; the virtio-iommu bound to uio_pci_generic; full init with its
 * INTx as the interrupt source; VIOT parsed and every PCI device resolved; PROBE of a real
 * endpoint and of a missing one; the edu proof (DMA through a mapped IOVA, then blocked after
 * UNMAP with a MAPPING fault); DETACH; each queue reset alone (VIRTIO_F_RING_RESET) with the
 * device keeping its domain; a MAP+UNMAP timing; then interrupts against polling: faults from
 * edu's DMA delivered by interrupt (no polling) and their latency, the cost of waiting idle,
 * and the same with a second driver that polls (`interrupts: "off"`). With `--packed` (QEMU
 * booted with `-global virtio-iommu-pci.packed=on`) the command-line step is skipped: the boot
 * is there to run the same driver over the packed ring.
 *
 * @module
 */

import { openSysfsPci, type SysfsPciDevice } from "../../host/sysfs_pci.ts";
import { PagemapDma } from "../../host/pagemap.ts";
import { PciTransport } from "../../transport/pci.ts";
import type { RegisterSpace } from "../../transport/registers.ts";
import { regionAddress } from "../../transport/dma.ts";
import { MAP_READ, MAP_WRITE, VirtioIommu } from "../../driver/iommu/device.ts";
import { IommuError } from "../../driver/iommu/errors.ts";
import type { FaultEvent } from "../../driver/iommu/events.ts";
import { parseViot, viotPciEndpoint } from "../../driver/topology/viot.ts";
import { printReport, report, step } from "./_report.ts";
import { bindUioPciGeneric } from "../../host/uio.ts";
import { faultTrips, idleCost, median } from "./_interrupt_steps.ts";
import {
  EDU_ALIVE,
  EDU_BUFFER,
  EDU_CMD_TO_RAM,
  EDU_DEVICE,
  EDU_DMA_DELAY_MS,
  EDU_VENDOR,
} from "../../spec/edu.ts";
import { eduDma as eduDmaOf } from "../../tools/edu.ts";

/** The virtio-iommu's address in the default q35 guest. */
const IOMMU_BDF = "0000:00:02.0";
/** IOVAs below edu's 28-bit DMA mask. */
const IOVA_SRC = 0x10_0000n;
const IOVA_DST = 0x20_0000n;
const DOMAIN = 1;
const COPY_BYTES = 256;
/** Nothing is ever mapped here: edu's DMA to it faults. */
const IOVA_FAULT = 0x30_0000;
/** Faults timed per mode. */
const FAULT_SAMPLES = 7;
/** How long each mode waits idle for a fault that never comes. */
const IDLE_MS = 1000;

/** Lists the guest's PCI devices as `{ bdf, vendor, device }`. */
function pciDevices(): { bdf: string; vendor: number; device: number }[] {
  const devices = [];
  for (const entry of Deno.readDirSync("/sys/bus/pci/devices")) {
    const dir = `/sys/bus/pci/devices/${entry.name}`;
    devices.push({
      bdf: entry.name,
      vendor: Number(Deno.readTextFileSync(`${dir}/vendor`).trim()),
      device: Number(Deno.readTextFileSync(`${dir}/device`).trim()),
    });
  }
  return devices.sort((a, b) => a.bdf.localeCompare(b.bdf));
}

/** Returns the 16-bit requester ID (bus << 8 | devfn) of `dddd:bb:dd.f`. */
function requesterId(bdf: string): number {
  const [, bus, slotFn] = bdf.split(":");
  const [slot, fn] = slotFn.split(".");
  return (parseInt(bus, 16) << 8) | (parseInt(slot, 16) << 3) | parseInt(fn, 16);
}

/** Sleeps `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One edu DMA of COPY_BYTES from `src` to `dst`, waited for; returns the wait in ms. */
function eduDma(bar: RegisterSpace, src: number, dst: number, cmd: number): Promise<number> {
  return eduDmaOf(bar, src, dst, cmd, COPY_BYTES);
}

/**
 * Waits for the first fault, then collects the rest of the burst (QEMU reports one fault per
 * blocked access, and edu's 256-byte DMA may be several accesses).
 */
async function drainFaults(io: VirtioIommu): Promise<FaultEvent[]> {
  const first = await io.nextFault(3000);
  if (first === null) return [];
  await sleep(50);
  return [first, ...io.takeFaults()];
}

/** The boot with `packed=on`: the driver must end up on the packed ring. */
const PACKED = Deno.args.includes("--packed");

/**
 * The command line against the real device, as a user would run it, before the script takes
 * the device (issue 5: `deno task cli -- topology --json` works in the guest).
 */
async function cliStep(): Promise<void> {
  await step("cli", async () => {
    const run = async (...args: string[]): Promise<{ code: number; lines: unknown[] }> => {
      const out = await new Deno.Command("deno", {
        args: ["task", "-q", "cli:host", "--", ...args, "--device", `pci:${IOMMU_BDF}`, "--json"],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trim();
      return { code: out.code, lines: text.split("\n").map((l) => JSON.parse(l)) };
    };
    return { topology: await run("topology"), probeMissing: await run("probe", "0xff") };
  });
}

/** Runs every step. */
async function main(): Promise<void> {
  report.packedBoot = PACKED;
  const sysfs = `/sys/bus/pci/devices/${IOMMU_BDF}`;
  let driver: string | null = null;
  try {
    driver = Deno.readLinkSync(`${sysfs}/driver`);
  } catch {
    driver = null;
  }
  report.driverBefore = driver;
  report.virtioPciLoaded = Deno.readTextFileSync("/proc/modules").includes("virtio_pci");
  const devices = pciDevices();
  report.devices = devices;

  if (!PACKED) await cliStep();

  let dev: SysfsPciDevice | null = null;
  let iommu: VirtioIommu | null = null;
  const dma = new PagemapDma();

  // The device's INTx reaches userspace through uio_pci_generic (QEMU's device has no MSI-X).
  await step("uio", async () => {
    const path = await bindUioPciGeneric(IOMMU_BDF);
    return { path, irq: Number(Deno.readTextFileSync(`${sysfs}/irq`).trim()) };
  });

  await step("open", () => {
    dev = openSysfsPci(IOMMU_BDF);
    return {
      vendor: dev.config.read16(0),
      device: dev.config.read16(2),
      command: dev.config.read16(4),
      interrupts: dev.interrupts?.delivery ?? null,
    };
  });

  await step("transport", () => {
    const d = dev!;
    const transport = new PciTransport(d.config, (i) => d.bar(i));
    return {
      deviceId: transport.deviceId,
      numQueues: transport.numQueues,
      layout: transport.layout,
    };
  });

  await step("init", async () => {
    const d = dev!;
    const transport = new PciTransport(d.config, (i) => d.bar(i), { interrupts: d.interrupts });
    report.offeredFeatures = transport.readDeviceFeatures();
    iommu = await VirtioIommu.create(transport, dma, { timeoutMs: 5000 });
    return iommu.info;
  });

  await step("viot", () => {
    const viot = parseViot(Deno.readFileSync("/sys/firmware/acpi/tables/VIOT"));
    const endpoints: Record<string, number | null> = {};
    for (const d of devices) {
      const match = viotPciEndpoint(viot, { segment: 0, bdf: requesterId(d.bdf) });
      endpoints[d.bdf] = match ? match.endpointId : null;
    }
    return { iommus: viot.iommus, pciRanges: viot.pciRanges, endpoints };
  });

  const edu = devices.find((d) => d.vendor === EDU_VENDOR && d.device === EDU_DEVICE);
  const eduEndpoint = edu ? requesterId(edu.bdf) : -1;
  report.edu = edu ? { bdf: edu.bdf, endpoint: eduEndpoint } : null;

  await step("probeEdu", () => iommu!.probe(eduEndpoint));
  await step("probeMissing", async () => {
    // 00:1f.7 does not exist in the default q35 guest.
    try {
      await iommu!.probe(0x00ff);
      return { status: "OK" };
    } catch (err) {
      if (err instanceof IommuError) return { status: err.status, code: err.code };
      throw err;
    }
  });

  await step("eduProof", async () => {
    if (!edu) throw new Error("no edu device (boot with -device edu)");
    const eduDev = openSysfsPci(edu.bdf, { identity: { vendor: EDU_VENDOR, device: EDU_DEVICE } });
    const result: Record<string, unknown> = {};
    try {
      const bar = eduDev.bar(0);
      if (!bar) throw new Error("edu has no BAR0");
      bar.write32(EDU_ALIVE, 0x12345678);
      result.alive = bar.read32(EDU_ALIVE) === (~0x12345678 >>> 0);

      const src = dma.alloc(4096);
      const dst = dma.alloc(4096);
      for (let i = 0; i < COPY_BYTES; i++) src.bytes[i] = (i * 7 + 3) & 0xff;
      result.srcPhys = regionAddress(src);
      result.dstPhys = regionAddress(dst);

      const io = iommu!;
      await io.attach(DOMAIN, eduEndpoint);
      await io.map(DOMAIN, IOVA_SRC, regionAddress(src), 0x1000n, MAP_READ);
      await io.map(DOMAIN, IOVA_DST, regionAddress(dst), 0x1000n, MAP_READ | MAP_WRITE);
      result.mappings = io.mappings(DOMAIN);

      // RAM (IOVA_SRC) → edu buffer, then edu buffer → RAM (IOVA_DST).
      result.readMs = await eduDma(bar, Number(IOVA_SRC), EDU_BUFFER, 0);
      result.writeMs = await eduDma(bar, EDU_BUFFER, Number(IOVA_DST), EDU_CMD_TO_RAM);
      let same = 0;
      for (let i = 0; i < COPY_BYTES; i++) if (dst.bytes[i] === src.bytes[i]) same++;
      result.bytesArrived = same;
      result.faultsWhileMapped = io.takeFaults();

      // A write through the read-only IOVA_SRC mapping is blocked (permission fault).
      src.bytes.fill(0xaa, 0, COPY_BYTES);
      result.readOnlyWriteMs = await eduDma(bar, EDU_BUFFER, Number(IOVA_SRC), EDU_CMD_TO_RAM);
      let changed = 0;
      for (let i = 0; i < COPY_BYTES; i++) if (src.bytes[i] !== 0xaa) changed++;
      result.bytesChangedInReadOnly = changed;
      result.readOnlyFaults = await drainFaults(io);

      await io.unmap(DOMAIN, IOVA_DST, 0x1000n);
      dst.bytes.fill(0);
      result.blockedWriteMs = await eduDma(bar, EDU_BUFFER, Number(IOVA_DST), EDU_CMD_TO_RAM);
      let nonZero = 0;
      for (let i = 0; i < COPY_BYTES; i++) if (dst.bytes[i] !== 0) nonZero++;
      result.bytesAfterUnmap = nonZero;
      result.unmapFaults = await drainFaults(io);

      await io.unmap(DOMAIN, IOVA_SRC, 0x1000n);
      await io.detach(DOMAIN, eduEndpoint);
      result.domainsAfterDetach = io.domains();
      dma.free(src);
      dma.free(dst);
    } finally {
      eduDev.close();
    }
    return result;
  });

  await step("queueReset", async () => {
    // VIRTIO_F_RING_RESET on QEMU's device: each queue reset alone while the device keeps
    // its domains. edu writes through a mapping made before the resets; after them requests
    // work and the unmap's fault arrives on the re-posted event queue.
    if (!edu) throw new Error("no edu device (boot with -device edu)");
    const io = iommu!;
    const eduDev = openSysfsPci(edu.bdf, { identity: { vendor: EDU_VENDOR, device: EDU_DEVICE } });
    const result: Record<string, unknown> = {};
    try {
      const bar = eduDev.bar(0);
      if (!bar) throw new Error("edu has no BAR0");
      const page = dma.alloc(4096);
      const domain = 3;
      await io.attach(domain, eduEndpoint);
      await io.map(domain, IOVA_DST, regionAddress(page), 0x1000n, MAP_READ | MAP_WRITE);
      await io.resetQueue("request");
      await io.resetQueue("event");
      result.resets = io.queueResets;
      // edu's buffer still holds the eduProof pattern: it lands in the page mapped earlier.
      await eduDma(bar, EDU_BUFFER, Number(IOVA_DST), EDU_CMD_TO_RAM);
      let same = 0;
      for (let i = 0; i < COPY_BYTES; i++) if (page.bytes[i] === ((i * 7 + 3) & 0xff)) same++;
      result.bytesAfterReset = same;
      await io.unmap(domain, IOVA_DST, 0x1000n);
      page.bytes.fill(0);
      await eduDma(bar, EDU_BUFFER, Number(IOVA_DST), EDU_CMD_TO_RAM);
      result.faultsAfterReset = await drainFaults(io);
      await io.detach(domain, eduEndpoint);
      result.ring = io.ring;
      dma.free(page);
    } finally {
      eduDev.close();
    }
    return result;
  });

  // A domain with no endpoint attached still takes MAP/UNMAP; the driver only sends them once
  // an endpoint is attached, so attach edu to a fresh domain for the duration.
  const pairTiming = async (io: VirtioIommu): Promise<Record<string, number>> => {
    const domain = 2;
    await io.attach(domain, eduEndpoint);
    const page = dma.alloc(4096);
    const phys = regionAddress(page);
    const warm = 16;
    const rounds = 64;
    let start = 0;
    for (let i = 0; i < warm + rounds; i++) {
      if (i === warm) start = performance.now();
      await io.map(domain, 0x100_0000n, phys, 0x1000n, MAP_READ | MAP_WRITE);
      await io.unmap(domain, 0x100_0000n, 0x1000n);
    }
    const usPerPair = Math.round(((performance.now() - start) * 1000) / rounds);
    await io.detach(domain, eduEndpoint);
    dma.free(page);
    return { rounds, usPerPair };
  };

  // QEMU answers during the notification: the request queue stays suppressed and the driver
  // takes no interrupt for its requests (interruptsTaken must stay 0).
  await step("mapUnmapTiming", async () => {
    const before = iommu!.interruptStats?.interrupts ?? 0;
    const timing = await pairTiming(iommu!);
    return { ...timing, interruptsTaken: (iommu!.interruptStats?.interrupts ?? 0) - before };
  });

  // Interrupts against polling: the same measurements with this driver (interrupts on) and
  // with a second one that polls.
  const measure = async (io: VirtioIommu): Promise<Record<string, unknown>> => {
    if (!edu) throw new Error("no edu device (boot with -device edu)");
    const eduDev = openSysfsPci(edu.bdf, { identity: { vendor: EDU_VENDOR, device: EDU_DEVICE } });
    try {
      await io.attach(3, eduEndpoint); // attached, nothing mapped at IOVA_FAULT: every DMA faults
      const before = io.interruptStats;
      const trips = await faultTrips(io, eduDev.bar(0)!, IOVA_FAULT, FAULT_SAMPLES);
      const after = io.interruptStats;
      const idle = await idleCost(io, IDLE_MS);
      await io.detach(3, eduEndpoint);
      const toListener = trips.map((t) => t.toListenerMs);
      return {
        mode: io.info.interrupts.mode,
        trips,
        medianToListenerMs: median(toListener),
        medianAfterEduDelayMs: Math.round((median(toListener) - EDU_DMA_DELAY_MS) * 100) / 100,
        usedBufferInterrupts: before && after ? after.usedBuffer - before.usedBuffer : 0,
        idle,
      };
    } finally {
      eduDev.close();
    }
  };

  await step("interruptFaults", () => measure(iommu!));

  await step("close", async () => {
    if (iommu) await (iommu as VirtioIommu).close();
  });

  let polling: VirtioIommu | null = null;
  await step("pollingInit", async () => {
    const d = dev!;
    const transport = new PciTransport(d.config, (i) => d.bar(i), { interrupts: d.interrupts });
    polling = await VirtioIommu.create(transport, dma, { timeoutMs: 5000, interrupts: "off" });
    return polling.info.interrupts;
  });
  await step("pollingFaults", () => measure(polling!));
  await step("pollingTiming", () => pairTiming(polling!));

  await step("pollingClose", async () => {
    if (polling) await (polling as VirtioIommu).close();
    dev?.close();
    dma.close();
  });
}

await main();
printReport();
