/**
 * The request shell of `viommu shell`: one command per line, one result per line. Line
 * handling is {@link runShellLine}, an async function from a line to a plain result object,
 * so it can be tested without a terminal; {@link runShell} feeds it lines and prints.
 *
 * Commands (numbers in decimal or 0x hex):
 * ```
 * attach <domain> <endpoint> [bypass]
 * detach <domain> <endpoint>
 * map <domain> <iova> <phys> <size> <flags>     flags: r, w, rw, and mmio, e.g. rw or r,mmio
 * unmap <domain> <iova> <size>
 * probe <endpoint>
 * translate <endpoint> <iova> <r|w>             mock device only: a simulated endpoint DMA
 * events                                        fault events received since the last call
 * reset                                         device reset and re-initialisation
 * help, quit
 * ```
 *
 * @module
 */

import { IommuError } from "../driver/iommu/errors.ts";
import { MAP_MMIO, MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import type { FaultEvent } from "../driver/iommu/events.ts";
import {
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
} from "../spec/iommu.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from "./args.ts";
import { parseU32, parseU64 } from "./numbers.ts";
import type { DeviceSession } from "./device.ts";
import { type CliOutput, jsonLine, type Painter } from "./format.ts";
import { hex } from "../util/hex.ts";
import { probeJson } from "./probe.ts";

/** The outcome of one shell line; `status` and `message` are set when `ok` is false. */
export interface ShellResult {
  /** The command word (`"map"`, …), or the first word of a malformed line. */
  cmd: string;
  /** Whether the command succeeded. */
  ok: boolean;
  /** On failure: the spec's status name, `DRIVER` (driver-side refusal) or `USAGE`. */
  status?: string;
  /** On failure: what went wrong. */
  message?: string;
  /** Command-specific fields. */
  [field: string]: unknown;
}

/** What the shell works on. */
export interface ShellContext {
  /** The opened device. */
  session: DeviceSession;
}

/** Shell help, one line per command. */
export const SHELL_HELP = `commands (numbers in decimal or 0x hex):
  attach <domain> <endpoint> [bypass]
  detach <domain> <endpoint>
  map <domain> <iova> <phys> <size> <flags>   flags: r, w, rw, and mmio, e.g. rw or r,mmio
  unmap <domain> <iova> <size>
  probe <endpoint>
  translate <endpoint> <iova> <r|w>           mock device only: a simulated endpoint DMA
  events                                      fault events received since the last call
  reset                                       device reset and re-initialisation
  help                                        this list
  quit                                        leave the shell (also end of input, Ctrl-D)
`;

/** The arguments each command takes, for usage messages. */
const USAGE: Record<string, string> = {
  attach: "attach <domain> <endpoint> [bypass]",
  detach: "detach <domain> <endpoint>",
  map: "map <domain> <iova> <phys> <size> <flags>",
  unmap: "unmap <domain> <iova> <size>",
  probe: "probe <endpoint>",
  translate: "translate <endpoint> <iova> <r|w>",
  events: "events",
  reset: "reset",
  help: "help",
  quit: "quit",
};

/**
 * Runs one shell line and returns its result, or null for a blank line or a `#` comment.
 * Never throws for a malformed line or a failed request: those become results with
 * `ok: false` (`status` `USAGE`, `DRIVER` or the device's status name).
 */
export async function runShellLine(ctx: ShellContext, line: string): Promise<ShellResult | null> {
  const words = line.trim().split(/\s+/).filter((w) => w !== "");
  if (words.length === 0 || words[0].startsWith("#")) return null;
  const [word, ...args] = words;
  const cmd = word.toLowerCase();
  try {
    return await dispatch(ctx, cmd, args);
  } catch (error) {
    return failure(cmd, error);
  }
}

function failure(cmd: string, error: unknown): ShellResult {
  if (error instanceof UsageError) {
    return { cmd, ok: false, status: "USAGE", message: error.message };
  }
  if (error instanceof IommuError) {
    return { cmd, ok: false, status: error.status, message: error.message };
  }
  const e = error instanceof Error ? error : new Error(String(error));
  // Anything else the driver threw (a reserved-region conflict, a timeout, a reset) refused
  // the request on the driver side.
  return { cmd, ok: false, status: "DRIVER", message: `${e.name}: ${e.message}` };
}

function arity(cmd: string, args: string[], min: number, max = min): void {
  if (args.length < min || args.length > max) {
    throw new UsageError(`Usage: ${USAGE[cmd]}`);
  }
}

/** Parses map flags: `r`, `w`, `rw` and `mmio`, comma-separated (`r,mmio`, `rw,mmio`). */
export function parseMapFlags(text: string): number {
  let flags = 0;
  for (const part of text.toLowerCase().split(",")) {
    if (part === "mmio") flags |= MAP_MMIO;
    else if (/^[rw]{1,2}$/.test(part) && new Set(part).size === part.length) {
      if (part.includes("r")) flags |= MAP_READ;
      if (part.includes("w")) flags |= MAP_WRITE;
    } else {
      throw new UsageError(
        `Invalid map flags "${text}": expected r, w, rw and/or mmio, e.g. r,mmio`,
      );
    }
  }
  return flags;
}

/** Names MAP flags the way `map` takes them (`rw`, `r,mmio`, `none`). */
export function formatMapFlags(flags: number): string {
  const access = ((flags & MAP_READ) !== 0 ? "r" : "") + ((flags & MAP_WRITE) !== 0 ? "w" : "");
  const parts = access === "" ? [] : [access];
  if ((flags & MAP_MMIO) !== 0) parts.push("mmio");
  return parts.length === 0 ? "none" : parts.join(",");
}

function faultJson(fault: FaultEvent): Record<string, unknown> {
  return {
    reason: fault.reason,
    endpoint: fault.endpoint,
    address: fault.address,
    read: fault.read,
    write: fault.write,
  };
}

async function dispatch(ctx: ShellContext, cmd: string, args: string[]): Promise<ShellResult> {
  const iommu = ctx.session.iommu;
  switch (cmd) {
    case "attach": {
      arity(cmd, args, 2, 3);
      const domain = parseU32(args[0], "domain");
      const endpoint = parseU32(args[1], "endpoint");
      if (args[2] !== undefined && args[2].toLowerCase() !== "bypass") {
        throw new UsageError(`Invalid attach option "${args[2]}": expected bypass`);
      }
      const bypass = args[2] !== undefined;
      await iommu.attach(domain, endpoint, { bypass });
      return { cmd, ok: true, domain, endpoint, bypass };
    }
    case "detach": {
      arity(cmd, args, 2);
      const domain = parseU32(args[0], "domain");
      const endpoint = parseU32(args[1], "endpoint");
      await iommu.detach(domain, endpoint);
      return { cmd, ok: true, domain, endpoint };
    }
    case "map": {
      arity(cmd, args, 5);
      const domain = parseU32(args[0], "domain");
      const iova = parseU64(args[1], "iova");
      const phys = parseU64(args[2], "phys");
      const size = parseU64(args[3], "size");
      const flags = parseMapFlags(args[4]);
      await iommu.map(domain, iova, phys, size, flags);
      return { cmd, ok: true, domain, iova, phys, size, flags: formatMapFlags(flags) };
    }
    case "unmap": {
      arity(cmd, args, 3);
      const domain = parseU32(args[0], "domain");
      const iova = parseU64(args[1], "iova");
      const size = parseU64(args[2], "size");
      await iommu.unmap(domain, iova, size);
      return { cmd, ok: true, domain, iova, size };
    }
    case "probe": {
      arity(cmd, args, 1);
      const endpoint = parseU32(args[0], "endpoint");
      return { cmd, ok: true, ...probeJson(await iommu.probe(endpoint)) };
    }
    case "translate": {
      arity(cmd, args, 3);
      const endpoint = parseU32(args[0], "endpoint");
      const iova = parseU64(args[1], "iova");
      const kind = args[2].toLowerCase();
      if (kind !== "r" && kind !== "w" && kind !== "read" && kind !== "write") {
        throw new UsageError(`Invalid access "${args[2]}": expected r or w`);
      }
      const access = kind.startsWith("r") ? "read" : "write";
      const mock = ctx.session.mock;
      if (mock === null) {
        throw new UsageError("translate needs the mock device: a real endpoint's DMA is not ours");
      }
      const result = mock.translate(endpoint, iova, access);
      if (result.ok) {
        return {
          cmd,
          ok: true,
          endpoint,
          iova,
          access,
          address: result.address,
          bypass: result.bypass,
        };
      }
      const f = result.fault;
      return {
        cmd,
        ok: true,
        endpoint,
        iova,
        access,
        fault: {
          reason: f.reason,
          endpoint: f.endpoint,
          address: (f.flags & VIRTIO_IOMMU_FAULT_F_ADDRESS) !== 0 ? f.address : null,
          read: (f.flags & VIRTIO_IOMMU_FAULT_F_READ) !== 0,
          write: (f.flags & VIRTIO_IOMMU_FAULT_F_WRITE) !== 0,
        },
      };
    }
    case "events": {
      arity(cmd, args, 0);
      return { cmd, ok: true, events: iommu.takeFaults().map(faultJson) };
    }
    case "reset": {
      arity(cmd, args, 0);
      await iommu.reset();
      return { cmd, ok: true, domains: iommu.domains().length };
    }
    case "help":
      return { cmd, ok: true, help: SHELL_HELP };
    case "quit":
    case "exit":
      return { cmd: "quit", ok: true };
    default:
      throw new UsageError(`Unknown command "${cmd}" (try help)`);
  }
}

/** One result as a line for people. */
export function formatShellResult(result: ShellResult, painter: Painter): string {
  if (!result.ok) {
    return painter.paint("red", `✗ ${result.cmd}: ${result.status}`) + ` ${result.message}\n`;
  }
  const ok = painter.paint("green", "✓");
  const h = (v: unknown): string => hex(v as bigint | number);
  switch (result.cmd) {
    case "attach":
      return `${ok} attached endpoint ${h(result.endpoint)} to domain ${result.domain}${
        result.bypass ? " (bypass)" : ""
      }\n`;
    case "detach":
      return `${ok} detached endpoint ${h(result.endpoint)} from domain ${result.domain}\n`;
    case "map":
      return `${ok} mapped domain ${result.domain} iova ${h(result.iova)} → phys ${
        h(result.phys)
      } size ${h(result.size)} ${result.flags}\n`;
    case "unmap":
      return `${ok} unmapped domain ${result.domain} iova ${h(result.iova)} size ${
        h(result.size)
      }\n`;
    case "probe": {
      const regions = result.regions as { kind: string; start: string; end: string }[];
      const lines = regions.map((r) => `    ${r.kind.padEnd(9)}${r.start}-${r.end}\n`);
      return `${ok} endpoint ${h(result.endpoint)}: ${regions.length} reserved region${
        regions.length === 1 ? "" : "s"
      }\n${lines.join("")}`;
    }
    case "translate": {
      const where = `endpoint ${h(result.endpoint)} ${result.access} iova ${h(result.iova)}`;
      if (result.fault !== undefined) {
        const f = result.fault as { reason: string };
        return `${painter.paint("yellow", "⚠")} ${where} → ${
          painter.paint("yellow", `fault ${f.reason}`)
        } (reported on the event queue)\n`;
      }
      return `${ok} ${where} → ${painter.paint("green", h(result.address))}${
        result.bypass ? " (bypass)" : ""
      }\n`;
    }
    case "events": {
      const events = result.events as Record<string, unknown>[];
      if (events.length === 0) return `${ok} no fault events\n`;
      return events.map((e) =>
        `${painter.paint("yellow", "⚠")} ${e.reason} fault: endpoint ${h(e.endpoint as number)} ${
          e.write ? "write" : e.read ? "read" : "access"
        }${e.address === null ? "" : ` at ${h(e.address as bigint)}`}\n`
      ).join("");
    }
    case "reset":
      return `${ok} device reset and re-initialised; ${result.domains} domain(s) restored\n`;
    case "help":
      return String(result.help);
    default:
      return `${ok} ${result.cmd}\n`;
  }
}

/** Options of {@link runShell}. */
export interface RunShellOptions {
  /** One JSON object per result line. */
  json: boolean;
  /** Where results go. */
  output: CliOutput;
  /** Colour. */
  painter: Painter;
}

/**
 * Runs every line of `lines` and prints one result per non-blank line. Returns the exit code:
 * 0 when every line succeeded, 2 when a line was malformed, else 1 when a request failed.
 */
export async function runShell(
  ctx: ShellContext,
  lines: AsyncIterable<string>,
  options: RunShellOptions,
): Promise<number> {
  let failed = false;
  let usage = false;
  for await (const line of lines) {
    const result = await runShellLine(ctx, line);
    if (result === null) continue;
    if (result.cmd === "quit") break;
    if (!result.ok) {
      if (result.status === "USAGE") usage = true;
      else failed = true;
    }
    options.output.out(
      options.json ? jsonLine(result) : formatShellResult(result, options.painter),
    );
  }
  return usage ? EXIT_USAGE : failed ? EXIT_FAILED : EXIT_OK;
}

/** Splits a byte stream into lines (without their `\n` or `\r\n`). */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let at: number;
    while ((at = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, at).replace(/\r$/, "");
      pending = pending.slice(at + 1);
    }
  }
  if (pending !== "") yield pending;
}
