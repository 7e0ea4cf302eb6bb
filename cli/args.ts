/**
 * Command-line parsing for `viommu`: the option table shared by every subcommand, read by our
 * own small parser so that every mistake gets our message (naming the option and the value,
 * with a "did you mean" when an option or command is one typo away), and an argument such as
 * `-1` reaches the number parser, which says why a negative ID is refused, instead of being
 * taken for an option. The usage error maps to exit code 2.
 *
 * @module
 */

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
  /** `--version` / `-V`. */
  version: boolean;
  /** `--json`: machine output. */
  json: boolean;
  /** `--tree` (topology): the PCI hierarchy as a tree, as `lspci -t` draws it. */
  tree: boolean;
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
  /** `--ring split|packed|auto`: the ring layout the driver uses (default auto). */
  ring?: string;
  /** `--packed`: the mock also offers VIRTIO_F_RING_PACKED (QEMU's `packed=on`). */
  packed: boolean;
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

/** The string-valued options, by name, and the {@link CliFlags} field each fills. */
const STRING_OPTIONS = {
  device: "device",
  transport: "transport",
  "mock-config": "mockConfig",
  endpoints: "endpoints",
  "page-size-mask": "pageSizeMask",
  features: "features",
  "probe-size": "probeSize",
  "input-range": "inputRange",
  "domain-range": "domainRange",
  "queue-size": "queueSize",
  "topology-layout": "topologyLayout",
  timeout: "timeout",
  ring: "ring",
  oracle: "oracle",
} as const satisfies Record<string, keyof CliFlags>;

/** The string options that may repeat, collected in order into a list. */
const LIST_OPTIONS = {
  only: "only",
} as const satisfies Record<string, keyof CliFlags>;

/** The boolean options, by name, and the {@link CliFlags} field each sets. */
const BOOLEAN_OPTIONS = {
  help: "help",
  version: "version",
  json: "json",
  tree: "tree",
  "no-bypass": "noBypass",
  "qemu-compat": "qemuCompat",
  hazardous: "hazardous",
  packed: "packed",
} as const satisfies Record<string, keyof CliFlags>;

/** Single-letter aliases. */
const SHORT_OPTIONS: Readonly<Record<string, keyof typeof BOOLEAN_OPTIONS>> = {
  h: "help",
  V: "version",
};

/** Every long option name, for "did you mean". */
const OPTION_NAMES = [
  ...Object.keys(STRING_OPTIONS),
  ...Object.keys(LIST_OPTIONS),
  ...Object.keys(BOOLEAN_OPTIONS),
];

/** Whether `arg` is written like a (negative) number rather than a short option: `-1`, `-0x8`. */
function looksNumeric(arg: string): boolean {
  return /^-[0-9]/.test(arg);
}

/** Parses `args` (without the program name). Throws {@link UsageError}. */
export function parseCommandLine(args: string[]): ParsedCommand {
  // `deno task cli -- info` hands the `--` on: a leading one is not an end-of-options marker.
  if (args[0] === "--") args = args.slice(1);
  const flags: CliFlags = {
    help: false,
    version: false,
    json: false,
    tree: false,
    device: "mock",
    noBypass: false,
    qemuCompat: false,
    only: [],
    hazardous: false,
    packed: false,
  };
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq === -1 ? undefined : eq);
      const inline = eq === -1 ? undefined : arg.slice(eq + 1);
      if (name in BOOLEAN_OPTIONS) {
        if (inline !== undefined) throw new UsageError(`Option --${name} takes no value`);
        flags[BOOLEAN_OPTIONS[name as keyof typeof BOOLEAN_OPTIONS]] = true;
        continue;
      }
      if (!(name in STRING_OPTIONS) && !(name in LIST_OPTIONS)) {
        throw new UsageError(`Unknown option "--${name}"${suggest(name, OPTION_NAMES, "--")}`);
      }
      let value = inline;
      if (value === undefined) {
        const next = args[i + 1];
        // A value may start with "-" (a negative number is refused later, with its reason),
        // but not with "--": `--device --json` forgot the device.
        if (next === undefined || next.startsWith("--")) {
          throw new UsageError(`Option --${name} needs a value`);
        }
        value = next;
        i++;
      }
      if (name in LIST_OPTIONS) flags[LIST_OPTIONS[name as keyof typeof LIST_OPTIONS]].push(value);
      else flags[STRING_OPTIONS[name as keyof typeof STRING_OPTIONS]] = value;
      continue;
    }
    if (arg.length > 1 && arg.startsWith("-") && !looksNumeric(arg)) {
      for (const letter of arg.slice(1)) {
        const long = SHORT_OPTIONS[letter];
        if (long === undefined) {
          throw new UsageError(`Unknown option "-${letter}" (the short options are -h and -V)`);
        }
        flags[BOOLEAN_OPTIONS[long]] = true;
      }
      continue;
    }
    positionals.push(arg);
  }
  const [first, ...rest] = positionals;
  if (first === undefined) return { command: null, positionals: [], flags };
  if (first === "help") {
    // `viommu help shell` is `viommu shell --help`.
    const topic = rest[0];
    if (topic !== undefined && !isSubcommand(topic)) throw unknownCommand(topic);
    return { command: topic ?? null, positionals: [], flags: { ...flags, help: true } };
  }
  if (!isSubcommand(first)) throw unknownCommand(first);
  return { command: first, positionals: rest, flags };
}

function isSubcommand(name: string): name is Subcommand {
  return (SUBCOMMANDS as readonly string[]).includes(name);
}

function unknownCommand(name: string): UsageError {
  return new UsageError(
    `Unknown command "${name}"${suggest(name, SUBCOMMANDS, "")}: expected ${
      SUBCOMMANDS.join(", ")
    }`,
  );
}

/** ` (did you mean --x?)` when one candidate is at most two edits from `name`, else "". */
function suggest(name: string, candidates: readonly string[], prefix: string): string {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best === null ? "" : ` (did you mean ${prefix}${best}?)`;
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}
