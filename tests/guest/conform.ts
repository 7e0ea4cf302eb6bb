/**
 * Runs INSIDE the QEMU guest (see tests/conform_device_test.ts, which boots it with
 * `-device edu`): `viommu conform` against the real virtio-iommu-pci at 0000:00:02.0 as a user
 * runs it (main() of the CLI, in-process to spare a Deno start), then the ring rules again with
 * EVENT_IDX and INDIRECT_DESC left out of the negotiation, and prints one `REPORT {json}` line.
 * Last, `probe.small-buffer --hazardous`, on which QEMU 7.2 aborts: the guest ends there, and
 * the host side finds QEMU's assertion in its stderr.
 *
 * @module
 */

import { main } from "../../cli/main.ts";
import type { CliOutput } from "../../cli/format.ts";
import { deviceSpecFromFlags } from "../../cli/device.ts";
import { parseCommandLine } from "../../cli/args.ts";
import { openConformTarget } from "../../cli/conform.ts";
import { runConformance } from "../../conform/runner.ts";
import { SUITE_FEATURES } from "../../conform/session.ts";
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../../spec/features.ts";
import { RING_RULES } from "../_conform_qemu.ts";
import { printReport, step } from "./_report.ts";

/** The virtio-iommu's address in the default q35 guest. */
const DEVICE = "pci:0000:00:02.0";

/** Runs the CLI in-process and returns its exit code and JSON lines. */
async function cli(...args: string[]): Promise<{ code: number; lines: unknown[] }> {
  let stdout = "";
  const output: CliOutput = {
    out: (text: string): void => void (stdout += text),
    err: (text: string): void => void Deno.stderr.writeSync(new TextEncoder().encode(text)),
    isTerminal: false,
  };
  const code = await main(args, { output, input: new ReadableStream(), terminal: null });
  return { code, lines: stdout.trim().split("\n").map((l) => JSON.parse(l)) };
}

await step("cli", () => cli("conform", "--device", DEVICE, "--json"));

await step("plainRings", async () => {
  const spec = await deviceSpecFromFlags(parseCommandLine(["conform", "--device", DEVICE]).flags);
  const open = await openConformTarget(spec);
  try {
    const features = SUITE_FEATURES & ~featureBit(VIRTIO_F_EVENT_IDX) &
      ~featureBit(VIRTIO_F_INDIRECT_DESC);
    const run = await runConformance(open.target, { only: RING_RULES, features });
    return run.results.map((r) => ({ id: r.id, outcome: r.outcome, detail: r.detail }));
  } finally {
    open.close();
  }
});

printReport();
console.log("HAZARD probe.small-buffer");
await cli("conform", "--device", DEVICE, "--json", "--hazardous", "--only", "probe.small-buffer");
console.log("HAZARD survived");
