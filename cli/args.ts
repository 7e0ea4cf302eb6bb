/**
 * Command-line parsing for `viommu`: the option table shared by every subcommand (parsed with
 * `node:util` `parseArgs`), numbers in decimal or `0x` hex, and the usage error that maps to
 * exit code 2.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: a request failed (device or driver refusal, device not found, …). */
export const EXIT_FAILED = 1;
/** Exit code: the command line (or a shell line) was malformed. */
export const EXIT_USAGE = 2;

/** The command line or a shell line could not be understood. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The subcommands. */
export const SUBCOMMANDS = ["info", "topology", "probe", "shell", "conform"] as const;

/** One subcommand name. */
export type Subcommand = typeof SUBCOMMANDS[number];

/** Flags every subcommand accepts: output, device selection and mock device options. */
export interface CliFlags {
  /** `--help` / `-h`. */
  help: boolean;
  /** `--json`: machine output. */
  json: boolean;
  /** `--device mock | pci:SSSS:BB:DD.F`. */
  device: string;
  /** `--transport mmio|pci` for the mock device. */
  transport?: string;
  /** `--mock-config FILE.json`. */
  mockConfig?: string;
  /** `--endpoints 0,8,0x10`. */
  endpoints?: string;
  /** `--page-size-mask N`. */
  pageSizeMask?: string;
  /** `--features N`. */
  features?: string;
  /** `--probe-size N`. */
  probeSize?: string;
  /** `--no-bypass`: boot value of the bypass field is 0. */
  noBypass: boolean;
  /** `--input-range START-END`. */
  inputRange?: string;
  /** `--domain-range START-END`. */
  domainRange?: string;
  /** `--queue-size N`. */
  queueSize?: string;
  /** `--topology-layout spec|draft`. */
  topologyLayout?: string;
  /** `--qemu-compat`: reproduce QEMU 7.2's deviations. */
  qemuCompat: boolean;
  /** `--timeout MS` per request. */
  timeout?: string;
  /** `--only ID[,ID…]` (repeatable): conform rules to run. */
  only: string[];
  /** `--hazardous`: conform also runs rules that may take the device down. */
  hazardous: boolean;
  /** `--oracle auto|none`: conform's DMA oracle. */
  oracle?: string;
}

/** A parsed command line. */
export interface ParsedCommand {
  /** The subcommand, or null when none was given (then help is shown). */
  command: Subcommand | null;
  /** Positional arguments after the subcommand. */
  positionals: string[];
  /** The flags. */
  flags: CliFlags;
}

const OPTIONS = {
  help: { type: "boolean", short: "h", default: false },
  json: { type: "boolean", default: false },
  device: { type: "string", default: "mock" },
  transport: { type: "string" },
  "mock-config": { type: "string" },
  endpoints: { type: "string" },
  "page-size-mask": { type: "string" },
  features: { type: "string" },
  "probe-size": { type: "string" },
  "no-bypass": { type: "boolean", default: false },
  "input-range": { type: "string" },
  "domain-range": { type: "string" },
  "queue-size": { type: "string" },
  "topology-layout": { type: "string" },
  "qemu-compat": { type: "boolean", default: false },
  timeout: { type: "string" },
  only: { type: "string", multiple: true, default: [] as string[] },
  hazardous: { type: "boolean", default: false },
  oracle: { type: "string" },
} as const;

/** Parses `args` (without the program name). Throws {@link UsageError}. */
export function parseCommandLine(args: string[]): ParsedCommand {
  // `deno task cli -- info` hands the `--` on: a leading one is not an end-of-options marker.
  if (args[0] === "--") args = args.slice(1);
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  const flags: CliFlags = {
    help: v.help,
    json: v.json,
    device: v.device,
    transport: v.transport,
    mockConfig: v["mock-config"],
    endpoints: v.endpoints,
    pageSizeMask: v["page-size-mask"],
    features: v.features,
    probeSize: v["probe-size"],
    noBypass: v["no-bypass"],
    inputRange: v["input-range"],
    domainRange: v["domain-range"],
    queueSize: v["queue-size"],
    topologyLayout: v["topology-layout"],
    qemuCompat: v["qemu-compat"],
    timeout: v.timeout,
    only: v.only,
    hazardous: v.hazardous,
    oracle: v.oracle,
  };
  const [first, ...rest] = parsed.positionals;
  if (first === undefined) return { command: null, positionals: [], flags };
  if (first === "help") {
    // `viommu help shell` is `viommu shell --help`.
    const topic = rest[0];
    if (topic !== undefined && !isSubcommand(topic)) {
      throw new UsageError(`Unknown command "${topic}"`);
    }
    return { command: topic ?? null, positionals: [], flags: { ...flags, help: true } };
  }
  if (!isSubcommand(first)) throw new UsageError(`Unknown command "${first}"`);
  return { command: first, positionals: rest, flags };
}

function isSubcommand(name: string): name is Subcommand {
  return (SUBCOMMANDS as readonly string[]).includes(name);
}

/**
 * Parses a non-negative integer written in decimal or `0x` hex (underscores allowed) into a
 * bigint. Throws {@link UsageError} naming `what`.
 */
export function parseBig(text: string, what: string): bigint {
  const clean = text.trim().replaceAll("_", "");
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(clean)) {
    throw new UsageError(`Invalid ${what} "${text}": expected a decimal or 0x hex number`);
  }
  return BigInt(clean);
}

/** Parses a 64-bit unsigned value (addresses, sizes, masks). */
export function parseU64(text: string, what: string): bigint {
  const value = parseBig(text, what);
  if (value > 0xffff_ffff_ffff_ffffn) {
    throw new UsageError(`Invalid ${what} "${text}": larger than 64 bits`);
  }
  return value;
}

/** Parses a 32-bit unsigned value (domain and endpoint IDs) into a number. */
export function parseU32(text: string, what: string): number {
  const value = parseBig(text, what);
  if (value > 0xffff_ffffn) throw new UsageError(`Invalid ${what} "${text}": larger than 32 bits`);
  return Number(value);
}

/** Parses an inclusive range `START-END` (each decimal or hex). */
export function parseRange(text: string, what: string): { start: bigint; end: bigint } {
  const parts = text.split("-");
  if (parts.length !== 2) {
    throw new UsageError(`Invalid ${what} "${text}": expected START-END`);
  }
  const start = parseU64(parts[0], `${what} start`);
  const end = parseU64(parts[1], `${what} end`);
  if (end < start) throw new UsageError(`Invalid ${what} "${text}": ends before it starts`);
  return { start, end };
}

/** Parses a comma-separated list of 32-bit values, e.g. `0,8,0x10`. */
export function parseU32List(text: string, what: string): number[] {
  const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) throw new UsageError(`Invalid ${what} "${text}": the list is empty`);
  return items.map((item) => parseU32(item, what));
}
