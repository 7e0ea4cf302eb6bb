/**
 * `viommu conform`: runs the conformance catalogue (`conform.ts`) against the mock or a real
 * device and prints one line per rule (pass / fail / deviation / skipped, with what the device
 * did), then the totals. Exit code 1 when a MUST rule failed.
 *
 * The target: for the mock, its endpoints and a {@link MockDmaEngine} behind the last one as
 * the oracle; for a real device, the endpoints the machine's topology (VIOT) gives the devices
 * behind it, and QEMU's edu (1234:11e8) as the oracle when the machine has one.
 *
 * @module
 */

import { EDU_DEVICE, EDU_VENDOR } from "../spec/edu.ts";
import { type ConformTarget, type RuleResult, runConformance } from "../conform.ts";
import { CATALOGUE, countByLevel, selectRules } from "../conform/catalogue.ts";
import { EduDmaEngine } from "../conform/edu.ts";
import { MockDmaEngine } from "../mock/iommu/dma_engine.ts";
import { hex } from "../util/hex.ts";
import { EXIT_FAILED, EXIT_OK, UsageError } from "./args.ts";
import { type DeviceSpec, mockEndpointIds, openHostPci, plugMock } from "./device.ts";
import { type CliOutput, heading, jsonLine, type Painter } from "./format.ts";
import { readTopology } from "./topology.ts";

/** What `conform` takes besides the device. */
export interface ConformFlags {
  /** Rule ids or `area.*` patterns (comma-separated lists allowed). */
  only: string[];
  /** Run rules that may take the device down. */
  hazardous: boolean;
  /** `auto` (default: the mock's engine, or edu when present) or `none`. */
  oracle?: string;
  /** One JSON object per line. */
  json: boolean;
  /** Request timeout in ms. */
  timeoutMs?: number;
}

/** edu's PCI IDs (QEMU hw/misc/edu.c). */
const EDU_IDS = { vendor: EDU_VENDOR, device: EDU_DEVICE };

/** A target and what to release after the run. */
export interface OpenTarget {
  /** The target. */
  target: ConformTarget;
  /** How the report names it. */
  label: string;
  /** Releases the device (and edu). */
  close(): void;
}

/** The smallest ID from 0xff down that is not an endpoint. */
function missingFrom(endpoints: readonly number[]): number {
  for (let id = 0xff; id > 0; id--) if (!endpoints.includes(id)) return id;
  return 0xffff;
}

/**
 * The device of `spec` as a conformance target: the mock with its last endpoint behind a DMA
 * engine, or the real device with its topology's endpoints and edu (when the machine has one)
 * as the oracle. `close()` releases what was opened.
 */
export function openConformTarget(spec: DeviceSpec, oracle = true): Promise<OpenTarget> {
  return spec.kind === "mock" ? Promise.resolve(mockTarget(spec, oracle)) : pciTarget(spec, oracle);
}

/** The mock device of `spec` as a target, its last endpoint behind a DMA engine. */
function mockTarget(spec: DeviceSpec & { kind: "mock" }, oracle: boolean): OpenTarget {
  const plugged = plugMock(spec);
  const endpoints = mockEndpointIds(spec.options);
  if (endpoints.length === 0) throw new UsageError("conform needs a mock with an endpoint");
  const engineAt = endpoints[endpoints.length - 1];
  return {
    target: {
      transport: plugged.transport,
      dma: plugged.memory,
      // The oracle's endpoint first: checks use the first endpoint.
      endpoints: [engineAt, ...endpoints.filter((e) => e !== engineAt)],
      missingEndpoint: missingFrom(endpoints),
      oracle: oracle
        ? new MockDmaEngine(plugged.device, plugged.memory, { endpoint: engineAt })
        : undefined,
    },
    label: `mock (${spec.transport}${spec.options.qemuCompat ? ", qemu-compat" : ""})`,
    close(): void {},
  };
}

/** Reads a sysfs attribute as a number. */
async function sysfsNumber(bdf: string, name: string): Promise<number> {
  return Number((await Deno.readTextFile(`/sys/bus/pci/devices/${bdf}/${name}`)).trim());
}

/** The real device of `spec`, its topology's endpoints, and edu as the oracle if present. */
async function pciTarget(spec: DeviceSpec & { kind: "pci" }, oracle: boolean): Promise<OpenTarget> {
  const topology = await readTopology(spec);
  const rows = topology.table.rows.filter((r) => r.endpointId !== null && r.iommu !== null);
  let edu: { bdf: string; endpoint: number } | null = null;
  for (const row of rows) {
    const vendor = await sysfsNumber(row.device, "vendor");
    const device = await sysfsNumber(row.device, "device");
    if (vendor === EDU_IDS.vendor && device === EDU_IDS.device) {
      edu = { bdf: row.device, endpoint: row.endpointId as number };
    }
  }
  const endpoints = rows.map((r) => r.endpointId as number);
  if (endpoints.length === 0) throw new Error("The topology puts no device behind this IOMMU");
  const host = await openHostPci(spec.bdf);
  const closers = [(): void => host.close()];
  let engine: EduDmaEngine | undefined;
  if (oracle && edu !== null) {
    const { openSysfsPci } = await import("../host.ts");
    const dev = openSysfsPci(edu.bdf, { identity: EDU_IDS });
    closers.push((): void => dev.close());
    const bar = dev.bar(0);
    if (bar !== null) engine = new EduDmaEngine(bar, edu.endpoint);
  }
  const first = engine?.endpoint ?? endpoints[0];
  return {
    target: {
      transport: host.transport,
      dma: host.dma,
      endpoints: [first, ...endpoints.filter((e) => e !== first)],
      missingEndpoint: missingFrom(endpoints),
      oracle: engine,
    },
    label: `pci:${spec.bdf}${engine ? ` (oracle: edu at ${edu?.bdf})` : ""}`,
    close(): void {
      for (const close of closers.reverse()) close();
    },
  };
}

/** Column widths of the text report. */
interface Widths {
  id: number;
  section: number;
}

/**
 * One result as a line of the text report, printed as soon as it is known (a device that dies
 * half-way still leaves the lines before).
 */
function line(r: RuleResult, widths: Widths, painter: Painter): string {
  const colour = r.outcome === "pass"
    ? "green"
    : r.outcome === "fail"
    ? "red"
    : r.outcome === "deviation"
    ? "yellow"
    : "dim";
  return `${painter.paint(colour, r.outcome.padEnd(9))} ${r.level.padEnd(6)} ${
    r.id.padEnd(widths.id)
  } ` +
    `${`§${r.section}`.padEnd(widths.section)} ${r.detail}\n`;
}

/** Runs `viommu conform` and returns the exit code. */
export async function conformCommand(
  spec: DeviceSpec,
  flags: ConformFlags,
  output: CliOutput,
  painter: Painter,
): Promise<number> {
  const only = flags.only.flatMap((o) => o.split(",")).map((o) => o.trim()).filter((o) => o);
  let selected;
  try {
    selected = only.length === 0 ? null : selectRules(only);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (flags.oracle !== undefined && flags.oracle !== "auto" && flags.oracle !== "none") {
    throw new UsageError(`Invalid --oracle "${flags.oracle}": expected auto or none`);
  }
  const oracle = flags.oracle !== "none";
  const open = await openConformTarget(spec, oracle);
  try {
    const rules = selected ?? CATALOGUE;
    const widths: Widths = {
      id: Math.max(...rules.map((r) => r.id.length)),
      section: Math.max(...rules.map((r) => r.section.length + 1)),
    };
    if (!flags.json) {
      const counts = countByLevel(rules);
      output.out(heading(painter, `viommu conform on ${open.label}`));
      output.out(
        `${
          counts.MUST + counts.SHOULD + counts.MAY
        } rules (MUST ${counts.MUST}, SHOULD ${counts.SHOULD}, MAY ${counts.MAY}); ` +
          `endpoints ${open.target.endpoints.map(hex).join(", ")}, missing ${
            hex(open.target.missingEndpoint)
          }\n`,
      );
    }
    const report = await runConformance(open.target, {
      only,
      hazardous: flags.hazardous,
      timeoutMs: flags.timeoutMs,
      onResult(r: RuleResult): void {
        output.out(flags.json ? jsonLine({ cmd: "conform", ...r }) : line(r, widths, painter));
      },
    });
    const t = report.totals;
    if (flags.json) {
      output.out(jsonLine({
        cmd: "conform",
        ok: !report.mustFailed,
        device: open.label,
        offered: report.offered,
        totals: t,
      }));
    } else {
      output.out(
        `${report.results.length} rules: ${t.pass} pass, ${t.fail} fail, ${t.deviation} deviation, ${t.skipped} skipped\n`,
      );
    }
    return report.mustFailed ? EXIT_FAILED : EXIT_OK;
  } finally {
    open.close();
  }
}
