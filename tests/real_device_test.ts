/**
 * Real-device tests: boots ONE QEMU guest (q35, TCG, a virtio-iommu-pci and an edu DMA device)
 * through tools/guest.ts, runs tests/guest/real_device.ts inside it and asserts on the JSON
 * report it prints. Without QEMU or the kernel the tests are skipped with a message saying
 * why, except under CI (`CI=true`), where that is a failure.
 *
 * @module
 */

import assert from "node:assert/strict";
import { defaultProjectRoot, type GuestResult, locateTools, runGuest } from "../tools/qemu.ts";

const root = defaultProjectRoot();
const tools = locateTools(root);
const missing = Array.isArray(tools) ? tools : [];
const inCi = Deno.env.get("CI") === "true";

/** The guest's report: what tests/guest/real_device.ts measured. */
type Report = Record<string, unknown>;

let pending: Promise<{ result: GuestResult; report: Report; wallMs: number }> | null = null;

/** Boots the guest once (shared by every test below) and parses its report. */
function guest(): Promise<{ result: GuestResult; report: Report; wallMs: number }> {
  pending ??= (async () => {
    const start = performance.now();
    const result = await runGuest(["deno", "run", "-A", "tests/guest/real_device.ts"], {
      qemuArgs: ["-device", "edu"],
      timeoutSeconds: 170,
      projectRoot: root,
    });
    const wallMs = performance.now() - start;
    console.log(
      `real-device guest: boot ${(result.bootMs / 1000).toFixed(1)} s, whole run ` +
        `${(wallMs / 1000).toFixed(1)} s (initramfs ${(result.buildMs / 1000).toFixed(1)} s)`,
    );
    const line = result.lines.find((l) => l.startsWith("REPORT "));
    if (result.code !== 0 || line === undefined) {
      throw new Error(
        `The guest script failed (exit code ${result.code}${
          result.timedOut ? ", timed out" : ""
        }):\n` +
          result.lines.join("\n") + "\n--- guest console ---\n" +
          result.noise.slice(-40).join("\n"),
      );
    }
    return { result, report: JSON.parse(line.slice("REPORT ".length)) as Report, wallMs };
  })();
  return pending;
}

if (missing.length > 0) {
  const why = missing.join("; ");
  if (inCi) {
    Deno.test("real device: QEMU and the guest kernel are installed in CI", () => {
      assert.fail(`Real-device tests cannot run in CI: ${why} (run .ci/install-guest-deps)`);
    });
  } else {
    console.log(
      `%cReal-device tests SKIPPED: ${why}. Run .ci/install-guest-deps (as root) to enable them.`,
      "color: yellow",
    );
    Deno.test({
      name: `real device: skipped (${why})`,
      ignore: true,
      fn(): void {},
    });
  }
} else {
  Deno.test("real device: the guest boots and the script reports within the time budget", async () => {
    const { result, wallMs } = await guest();
    assert.equal(result.code, 0);
    assert.ok(result.bootMs > 0, "the begin marker was seen");
    assert.ok(wallMs < 170_000, `whole run took ${wallMs} ms`);
  });

  Deno.test("real device: no kernel driver owns the virtio-iommu and virtio_pci is not loaded", async () => {
    const { report } = await guest();
    assert.equal(report.driverBefore, null);
    assert.equal(report.virtioPciLoaded, false);
  });

  Deno.test("real device: openSysfsPci() reads the virtio-iommu's IDs and enables bus mastering", async () => {
    const { report } = await guest();
    assert.equal(report.vendor, 0x1af4);
    assert.equal(report.device, 0x1057);
    assert.equal((report.command as number) & 0x6, 0x6, "memory space and bus master set");
  });

  Deno.test("real device: the capability walk finds common, notify, ISR and device config in BAR4", async () => {
    const { report } = await guest();
    const caps = report.caps as { cfgType: number; bar: number; offset: number }[];
    const byType = new Map(caps.map((c) => [c.cfgType, c]));
    assert.deepEqual(byType.get(1), { cfgType: 1, bar: 4, offset: 0x0, length: 0x1000 });
    assert.equal(byType.get(2)?.offset, 0x3000);
    assert.equal(byType.get(3)?.offset, 0x1000);
    assert.equal(byType.get(4)?.offset, 0x2000);
  });

  Deno.test("real device: the mmapped BAR4 reads QEMU 7.2's offered features", async () => {
    const { report } = await guest();
    assert.equal(report.deviceFeatures, "0x0000010130000077");
    assert.equal(report.numQueues, 2);
  });
}
