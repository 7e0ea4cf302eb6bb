/**
 * The VFIO backend against a real kernel: boots ONE 6.12 guest with Linux's virtio-iommu and
 * VFIO loaded and QEMU's edu (tools/guest.ts `--kernel 6.12 --linux-iommu`), runs
 * tests/guest/vfio.ts inside it and asserts on its JSON report: edu bound to vfio-pci, opened
 * through our VFIO backend, DMA through VFIO_IOMMU_MAP_DMA-mapped IOVAs arrives, and after
 * VFIO_IOMMU_UNMAP_DMA the same DMA is blocked; edu's interrupts arrive through eventfds
 * (VFIO_DEVICE_SET_IRQS), over INTx and over MSI. Without QEMU or the 6.12 kernel the tests are
 * skipped, the skip's name saying why, except under CI (`CI=true`), where that is a failure.
 *
 * @module
 */

import assert from "node:assert/strict";
import { defaultProjectRoot, locateTools } from "../tools/guest_tools.ts";
import { describePhase, type GuestResult, runGuest } from "../tools/qemu.ts";
import { note, skipName, status } from "./_notes.ts";

const root = defaultProjectRoot();
const tools = locateTools(root, "6.12");
const missing = Array.isArray(tools) ? tools : [];
const inCi = Deno.env.get("CI") === "true";

/** The guest's report: what tests/guest/vfio.ts measured. */
type Report = Record<string, unknown>;

let pending: Promise<{ result: GuestResult; report: Report; wallMs: number }> | null = null;

/** Boots the guest once (shared by every test below) and parses its report. */
function guest(): Promise<{ result: GuestResult; report: Report; wallMs: number }> {
  pending ??= (async () => {
    const start = performance.now();
    const result = await runGuest(["deno", "run", "-A", "tests/guest/vfio.ts"], {
      kernel: "6.12",
      iommuDriver: "linux",
      qemuArgs: ["-device", "edu"],
      timeoutSeconds: 120,
      projectRoot: root,
      onPhase: (phase) => status(`VFIO device (6.12): ${describePhase(phase)}`),
    }).finally(() => status(null));
    const wallMs = performance.now() - start;
    note(
      `VFIO guest (6.12): boot ${(result.bootMs / 1000).toFixed(1)} s, whole run ` +
        `${(wallMs / 1000).toFixed(1)} s (initramfs ${(result.buildMs / 1000).toFixed(1)} s)`,
    );
    const line = result.lines.find((l) => l.startsWith("REPORT "));
    if (result.code !== 0 || line === undefined) {
      throw new Error(
        `The guest script failed (exit code ${result.code}${
          result.timedOut ? ", timed out" : ""
        }):\n` + result.lines.join("\n") + "\n--- guest console ---\n" +
          result.noise.slice(-40).join("\n"),
      );
    }
    return { result, report: JSON.parse(line.slice("REPORT ".length)) as Report, wallMs };
  })();
  return pending;
}

/** Returns the result of step `name`, failing with the guest's error when the step failed. */
async function stepResult(name: string): Promise<Record<string, unknown>> {
  const s = (await guest()).report[name] as
    | { ok: boolean; result?: Record<string, unknown>; error?: string }
    | undefined;
  assert.ok(s, `the guest reported step ${name}`);
  assert.ok(s.ok, `guest step ${name} failed: ${s.error}`);
  return s.result ?? {};
}

if (missing.length > 0) {
  const why = missing.join("; ");
  if (inCi) {
    Deno.test("VFIO device: QEMU and the 6.12 guest kernel are installed in CI", () => {
      assert.fail(`VFIO tests cannot run in CI: ${why} (run .ci/install-guest-deps)`);
    });
  } else {
    Deno.test({
      name: skipName("VFIO device", `${why} (run .ci/install-guest-deps as root)`),
      ignore: true,
      fn(): void {},
    });
  }
} else {
  Deno.test("VFIO device: the 6.12 guest loads Linux's virtio-iommu and VFIO modules", async () => {
    const { result, report, wallMs } = await guest();
    assert.equal(result.code, 0);
    assert.ok(wallMs < 120_000, `whole run took ${wallMs} ms`);
    for (const m of ["virtio_iommu", "vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"]) {
      assert.ok((report.modules as string[]).includes(m), `module ${m} is loaded`);
    }
  });

  Deno.test("VFIO device: binding edu to vfio-pci creates its IOMMU group and /dev/vfio node", async () => {
    const bind = await stepResult("bind");
    assert.equal(bind.driverBefore, null);
    assert.equal(bind.driver, "vfio-pci");
    assert.ok((bind.group as number) >= 0);
    assert.equal(bind.groupDevice, true);
  });

  Deno.test("VFIO device: openVfioPci() sets up container, group and device fd and reads config", async () => {
    const open = await stepResult("open");
    const bind = await stepResult("bind");
    assert.equal(open.group, bind.group);
    assert.equal(open.type1v2, true, "the container uses VFIO_TYPE1v2_IOMMU");
    assert.equal(open.vendor, 0x1234);
    assert.equal(open.device, 0x11e8);
    assert.equal((open.command as number) & 0x6, 0x6, "memory space and bus master set");
    assert.deepEqual(open.bar0, { size: "0x100000", mmap: true });
    assert.equal(open.configSize, "0x100");
  });

  Deno.test("VFIO device: BAR0 mmapped through VFIO reaches edu's registers", async () => {
    const bar = await stepResult("bar0");
    assert.equal(bar.alive, true, "edu inverts the liveness register");
    assert.equal((bar.id as number) & 0xffff, 0x00ed, "edu's identification register");
  });

  Deno.test("VFIO device: edu DMAs through IOVAs the VFIO allocator mapped and the bytes arrive", async () => {
    const dma = await stepResult("allocatorDma");
    assert.equal(dma.srcIova, 0x10_0000, "the allocator hands out IOVAs from iovaBase");
    assert.equal(dma.bytesArrived, 256);
  });

  Deno.test("VFIO device: after VFIO_IOMMU_UNMAP_DMA edu's DMA is blocked and Linux logs the fault", async () => {
    const r = await stepResult("mapUnmapBlocks");
    assert.equal(r.arrivedWhileMapped, 256, "the DMA arrives while mapped");
    assert.equal(r.unmappedBytes, "0x1000");
    assert.equal(r.bytesAfterUnmap, 0);
    const faults = r.faultLines as string[];
    assert.ok(faults.length >= 1, "Linux's driver reported a fault");
    assert.match(faults[0], /page fault from EP 24 at 0x80000\b/);
  });

  Deno.test("VFIO device: VfioDma.free() unmaps a chunk once its last region is freed", async () => {
    const r = await stepResult("freeUnmaps");
    assert.equal(r.unmappedAgain, "0x0", "nothing left to unmap at the freed IOVA");
  });

  Deno.test("VFIO device: VFIO_DEVICE_GET_IRQ_INFO reports edu's INTx (automasked) and one MSI", async () => {
    const info = await stepResult("irqInfo") as Record<string, { flags: number; count: number }>;
    assert.equal(info.intx.count, 1);
    assert.equal(info.intx.flags & 0b101, 0b101, "EVENTFD and AUTOMASKED");
    assert.equal(info.msi.count, 1, "edu has one MSI vector");
    assert.equal(info.msi.flags & 1, 1, "EVENTFD");
    assert.equal(info.msix.count, 0, "edu has no MSI-X");
  });

  for (const kind of ["intx", "msi"]) {
    Deno.test(`VFIO device: edu's DMA-completion interrupt arrives through an eventfd (${kind})`, async () => {
      const r = await stepResult(`${kind}Interrupts`);
      assert.equal(r.delivery, kind === "intx" ? "line" : "vectors");
      assert.equal(r.dmaBits, 1, "vector 0 fired");
      assert.equal((r.dmaStatus as number) & 0x100, 0x100, "edu's DMA-done status bit");
      assert.ok((r.timersWhileWaiting as number) <= 1, "no polling: the wait's own deadline only");
      assert.equal(r.raisedBits, 1, "the raise register fires again after the unmask");
      assert.equal(r.raisedStatus, 0x5a);
      assert.equal(r.statusAfterAck, 0);
      note(
        `VFIO device: edu's DMA-completion interrupt (${kind}) via eventfd: median ` +
          `${r.medianAfterEduDelayMs} ms after edu's 100 ms timer (${r.dmaAfterEduDelayMs})`,
      );
    });
  }

  Deno.test("VFIO device: close() releases everything without error", async () => {
    await stepResult("close");
  });
}
