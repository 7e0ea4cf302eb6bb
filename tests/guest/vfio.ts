/**
 * Runs INSIDE a 6.12 QEMU guest with Linux's virtio-iommu and VFIO loaded (see
 * tests/vfio_device_test.ts, which boots it with `--kernel 6.12 --linux-iommu -device edu`):
 * binds edu to vfio-pci, drives it through our VFIO backend (host/vfio.ts) and
 * prints one JSON report line prefixed with `REPORT `. Each step records its own result or
 * error, so one failure does not hide the rest.
 *
 * Steps: bind (new_id, IOMMU group, /dev/vfio/<group>); open (container, group, device fd,
 * config region, region info); BAR0 mmap (edu's liveness register); DMA through allocator
 * memory (VFIO_IOMMU_MAP_DMA-mapped chunks); DMA into a page mapped with mapDma, then blocked
 * after unmapDma (with the fault Linux's driver logs); the allocator's free() unmapping; edu's
 * interrupts through eventfds: VFIO_DEVICE_GET_IRQ_INFO, then its DMA-completion interrupt and
 * its raise register over INTx (automasked, unmasked through VFIO) and over MSI.
 *
 * @module
 */

import { openVfioPci, type VfioPciDevice } from "../../host/vfio.ts";
import {
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_PRIVATE,
  mmap,
  munmap,
  PROT_READ,
  PROT_WRITE,
} from "../../host/ffi.ts";
import { regionAddress } from "../../transport/dma.ts";
import type { RegisterSpace } from "../../transport/registers.ts";
import { VFIO_REGION_INFO_FLAG_MMAP, VFIO_TYPE1V2_IOMMU } from "../../host/vfio_abi.ts";
import { bindToVfioPci, EDU_DEVICE, EDU_VENDOR, eduDma, findPciDevice } from "../../tools/edu.ts";
import {
  EDU_BUFFER,
  EDU_CMD_IRQ,
  EDU_CMD_TO_RAM,
  EDU_IRQ_ACK,
  EDU_IRQ_RAISE,
  EDU_IRQ_STATUS,
} from "../../spec/edu.ts";
import { eduStartDma } from "../../conform/edu.ts";
import { printReport, report, step } from "./_report.ts";
import { openVfioInterrupts, vfioIrqInfo } from "../../host/vfio_irq.ts";
import type { InterruptSource } from "../../transport/interrupt_source.ts";
import { countTimers, EDU_DMA_DELAY_MS, median } from "./_interrupt_steps.ts";

/** DMA-completion interrupts timed per kind. */
const DMA_SAMPLES = 3;
/** Where the mapDma page goes: below the allocator's IOVAs and edu's 28-bit DMA mask. */
const IOVA_OWN = 0x8_0000n;
const COPY_BYTES = 256;

/** Returns the kernel log lines that mention virtio_iommu page faults. */
async function iommuFaultLines(): Promise<string[]> {
  const out = await new Deno.Command("dmesg", { stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) =>
    /virtio_iommu.*page fault/.test(l)
  );
}

/** Counts the bytes of `bytes[0..n)` equal to `expected[i]`. */
function same(bytes: Uint8Array, expected: Uint8Array, n: number): number {
  let count = 0;
  for (let i = 0; i < n; i++) if (bytes[i] === expected[i]) count++;
  return count;
}

/** Waits up to 3 s for `source`; resolves with its vector bits, or 0 on timeout. */
async function waitFor(source: InterruptSource): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<number>((resolve) => {
    timer = setTimeout(() => resolve(0), 3000);
  });
  const bits = await Promise.race([source.wait(), timeout]);
  clearTimeout(timer);
  if (bits === 0) source.cancel();
  return bits;
}

/**
 * edu's two interrupts through `source`: its DMA-completion interrupt (a 256-byte DMA to
 * `dstIova` with the IRQ bit; timed from the command) and its raise register; each is
 * acknowledged in edu and the source unmasked (VFIO's INTx is automasked).
 */
async function eduInterrupts(
  bar: RegisterSpace,
  source: InterruptSource,
  dstIova: number,
): Promise<Record<string, unknown>> {
  const afterDelayMs: number[] = [];
  let dmaBits = 0, dmaStatus = 0, timers = 0;
  for (let i = 0; i < DMA_SAMPLES; i++) {
    const start = performance.now();
    eduStartDma(bar, BigInt(EDU_BUFFER), BigInt(dstIova), COPY_BYTES, EDU_CMD_TO_RAM | EDU_CMD_IRQ);
    const waited = await countTimers(() => waitFor(source));
    afterDelayMs.push(Math.round((performance.now() - start - EDU_DMA_DELAY_MS) * 100) / 100);
    dmaBits |= waited.result;
    timers = Math.max(timers, waited.timers);
    dmaStatus = bar.read32(EDU_IRQ_STATUS);
    bar.write32(EDU_IRQ_ACK, dmaStatus);
    source.unmask();
  }
  bar.write32(EDU_IRQ_RAISE, 0x5a);
  const raisedBits = await waitFor(source);
  const raisedStatus = bar.read32(EDU_IRQ_STATUS);
  bar.write32(EDU_IRQ_ACK, raisedStatus);
  source.unmask();
  return {
    delivery: source.delivery,
    dmaBits,
    dmaStatus,
    dmaAfterEduDelayMs: afterDelayMs,
    medianAfterEduDelayMs: median(afterDelayMs),
    timersWhileWaiting: timers,
    raisedBits,
    raisedStatus,
    statusAfterAck: bar.read32(EDU_IRQ_STATUS),
  };
}

/** Runs every step. */
async function main(): Promise<void> {
  report.modules = Deno.readTextFileSync("/proc/modules").split("\n").map((l) => l.split(" ")[0])
    .filter((m) => m !== "");
  const edu = findPciDevice(EDU_VENDOR, EDU_DEVICE);
  report.edu = edu;
  let dev: VfioPciDevice | null = null;
  let bar: RegisterSpace | null = null;

  await step("bind", async () => {
    if (edu === null) throw new Error("no edu device (boot with -device edu)");
    return await bindToVfioPci(edu);
  });

  await step("open", () => {
    dev = openVfioPci(edu!, { iovaBase: 0x10_0000n });
    const d: VfioPciDevice = dev;
    const bar0 = d.regionInfo(0);
    const config = d.regionInfo(7);
    return {
      group: d.group,
      iommuType: d.iommuType,
      type1v2: d.iommuType === VFIO_TYPE1V2_IOMMU,
      vendor: d.config.read16(0),
      device: d.config.read16(2),
      command: d.config.read16(4),
      bar0: { size: bar0.size, mmap: (bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) !== 0 },
      configSize: config.size,
    };
  });

  await step("bar0", () => {
    bar = dev!.bar(0);
    if (bar === null) throw new Error("BAR0 is not mmappable");
    bar.write32(0x04, 0x12345678);
    const inverted = bar.read32(0x04);
    return { id: bar.read32(0x00), alive: inverted === (~0x12345678 >>> 0), size: bar.size };
  });

  await step("allocatorDma", async () => {
    const d = dev!;
    const b = bar!;
    const src = d.dma.alloc(4096);
    const dst = d.dma.alloc(4096);
    for (let i = 0; i < COPY_BYTES; i++) src.bytes[i] = (i * 7 + 3) & 0xff;
    const srcIova = Number(regionAddress(src));
    const dstIova = Number(regionAddress(dst));
    // RAM (src IOVA) → edu buffer, then edu buffer → RAM (dst IOVA).
    const readMs = await eduDma(b, srcIova, EDU_BUFFER, 0, COPY_BYTES);
    const writeMs = await eduDma(b, EDU_BUFFER, dstIova, EDU_CMD_TO_RAM, COPY_BYTES);
    const result = {
      srcIova,
      dstIova,
      readMs,
      writeMs,
      bytesArrived: same(dst.bytes, src.bytes, COPY_BYTES),
    };
    d.dma.free(src);
    d.dma.free(dst);
    return result;
  });

  await step("mapUnmapBlocks", async () => {
    const d = dev!;
    const b = bar!;
    const faultsBefore = (await iommuFaultLines()).length;
    // Fill edu's buffer with a known pattern from an allocator page.
    const pattern = d.dma.alloc(4096);
    for (let i = 0; i < COPY_BYTES; i++) pattern.bytes[i] = (i * 13 + 5) & 0xff;
    await eduDma(b, Number(regionAddress(pattern)), EDU_BUFFER, 0, COPY_BYTES);

    const page = mmap(
      "test page",
      4096,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
    );
    const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(page, 4096));
    try {
      d.dma.mapDma(page, IOVA_OWN, 4096);
      await eduDma(b, EDU_BUFFER, Number(IOVA_OWN), EDU_CMD_TO_RAM, COPY_BYTES);
      const arrivedWhileMapped = same(bytes, pattern.bytes, COPY_BYTES);
      const unmappedBytes = d.dma.unmapDma(IOVA_OWN, 4096);
      bytes.fill(0);
      const blockedMs = await eduDma(b, EDU_BUFFER, Number(IOVA_OWN), EDU_CMD_TO_RAM, COPY_BYTES);
      let nonZero = 0;
      for (let i = 0; i < COPY_BYTES; i++) if (bytes[i] !== 0) nonZero++;
      // The fault is logged by Linux's driver from its event queue; give it a moment.
      let faults: string[] = [];
      for (let i = 0; i < 50; i++) {
        faults = (await iommuFaultLines()).slice(faultsBefore);
        if (faults.length > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return {
        arrivedWhileMapped,
        unmappedBytes,
        blockedMs,
        bytesAfterUnmap: nonZero,
        faultLines: faults.map((l) => l.replace(/^\[\s*\d+\.\d+\]\s*/, "")),
      };
    } finally {
      d.dma.free(pattern);
      munmap(page, 4096);
    }
  });

  await step("freeUnmaps", () => {
    // A chunk's IOVA is unmapped when its last region is freed: a second unmap finds nothing.
    const d = dev!;
    const region = d.dma.alloc(0x10000);
    const iova = regionAddress(region);
    d.dma.free(region);
    return { iova, unmappedAgain: d.dma.unmapDma(iova, 0x10000) };
  });

  await step("irqInfo", () => {
    const d = dev!;
    return {
      intx: vfioIrqInfo(d, "intx"),
      msi: vfioIrqInfo(d, "msi"),
      msix: vfioIrqInfo(d, "msix"),
    };
  });

  for (const kind of ["intx", "msi"] as const) {
    await step(`${kind}Interrupts`, async () => {
      const d = dev!;
      const dst = d.dma.alloc(4096);
      const source = openVfioInterrupts(d, kind);
      try {
        return await eduInterrupts(bar!, source, Number(regionAddress(dst)));
      } finally {
        source.close();
        await source.settled();
        d.dma.free(dst);
      }
    });
  }

  await step("close", () => {
    dev?.close();
  });
}

await main();
printReport();
