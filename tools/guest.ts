/**
 * The guest runner: boots a QEMU guest (q35, TCG, no network, a virtio-iommu-pci device) with
 * busybox, Deno and a copy of this project in its initramfs, runs a command in the project
 * copy and passes back its output and exit code.
 *
 * ```sh
 * deno task guest -- [--kernel 6.1|6.12] [--linux-iommu] [--qemu "<extra QEMU args>"]
 *   [--timeout <s>] [--verbose] -- <command...>
 * deno task guest -- --clean
 * deno task guest -- --qemu "-device edu" -- deno run -A tests/guest/real_device.ts
 * deno task guest -- --kernel 6.12 --linux-iommu --qemu "-device edu" -- deno run -A tests/guest/vfio.ts
 * ```
 *
 * `--kernel 6.12` boots bookworm-backports' kernel; by default the runner unbinds its built-in
 * virtio-pci from the virtio-iommu so our driver owns it, and `--linux-iommu` instead loads
 * Linux's virtio-iommu and VFIO modules (see `LINUX_IOMMU_MODULES` in tools/guest_setup.ts).
 *
 * Needs qemu-system-x86_64, busybox-static and a kernel in `.cache/guest/vmlinuz-*` (6.12:
 * `.cache/guest/6.12/`); `.ci/install-guest-deps` installs them. Permissions: read/write (the
 * cache), run (qemu, busybox, git, ldd), env. On a terminal a progress line says what the
 * runner is doing until the command starts. What the cache keeps: tools/guest_cache.ts;
 * `--clean` empties it (the kernels stay).
 *
 * @module
 */

import { GuestSetupError } from "./initramfs.ts";
import { GUEST_KERNELS, type GuestKernel, type IommuDriverChoice } from "./guest_setup.ts";
import { cleanGuestCache } from "./guest_cache.ts";
import { defaultProjectRoot } from "./guest_tools.ts";
import { Progress, seconds } from "./progress.ts";
import { describePhase, runGuest, splitArgs } from "./qemu.ts";

/** The usage line. */
const USAGE = "Usage: deno task guest -- [--kernel 6.1|6.12] [--linux-iommu] " +
  '[--qemu "<extra QEMU args>"] [--timeout s] [--verbose] -- <command...>\n' +
  "       deno task guest -- --clean";

/** What the options do. */
const HELP =
  `Boots QEMU (q35, TCG, -nic none, -device virtio-iommu-pci) with busybox, Deno and a copy
of this project in an initramfs, runs <command> inside (deno on PATH, in the project copy) as
root, and passes back its output and exit code.

  --kernel 6.1|6.12   guest kernel (default 6.1: no kernel virtio-iommu driver, userspace owns it)
  --linux-iommu       load Linux's virtio-iommu and VFIO modules (needs --kernel 6.12)
  --qemu "<args>"     extra QEMU arguments, e.g. "-device edu"
  --timeout s         give up after s seconds (default 170; exit code 124)
  --verbose           show the kernel's console output on stderr
  --clean             delete the runner's cache in .cache/guest (about 100 MB: the initramfs
                      base, project and command archives); the kernels stay

Install QEMU, busybox and the kernels first with: bash .ci/install-guest-deps
Example: deno task guest -- --qemu "-device edu" -- deno task cli -- probe 0x18`;

/** Parsed command line of the runner. */
export interface GuestCommandLine {
  /** The kernel to boot. */
  kernel: GuestKernel;
  /** Who drives the virtio-iommu. */
  iommuDriver: IommuDriverChoice;
  /** Extra QEMU arguments. */
  qemuArgs: string[];
  /** Timeout in seconds. */
  timeoutSeconds: number;
  /** Whether to echo boot noise to stderr. */
  verbose: boolean;
  /** The command to run in the guest. */
  command: string[];
}

/**
 * Parses `[--kernel 6.1|6.12] [--linux-iommu] [--qemu "<args>"] [--timeout s] [--verbose]
 * -- <command...>`.
 */
export function parseCommandLine(argv: string[]): GuestCommandLine {
  const args = argv[0] === "--" ? argv.slice(1) : argv.slice();
  const parsed: GuestCommandLine = {
    kernel: "6.1",
    iommuDriver: "userspace",
    qemuArgs: [],
    timeoutSeconds: 170,
    verbose: false,
    command: [],
  };
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      i++;
      break;
    } else if (arg === "--qemu") {
      const value = args[++i];
      if (value === undefined) throw new TypeError("--qemu needs a value");
      parsed.qemuArgs.push(...splitArgs(value));
    } else if (arg.startsWith("--qemu=")) {
      parsed.qemuArgs.push(...splitArgs(arg.slice("--qemu=".length)));
    } else if (arg === "--timeout") {
      const value = Number(args[++i]);
      if (!Number.isFinite(value) || value <= 0) throw new TypeError("--timeout needs seconds");
      parsed.timeoutSeconds = value;
    } else if (arg === "--kernel" || arg.startsWith("--kernel=")) {
      const value = arg === "--kernel" ? args[++i] : arg.slice("--kernel=".length);
      const kernel = GUEST_KERNELS.find((k) => k === value);
      if (kernel === undefined) {
        throw new TypeError(`--kernel needs one of ${GUEST_KERNELS.join(", ")}`);
      }
      parsed.kernel = kernel;
    } else if (arg === "--linux-iommu") {
      parsed.iommuDriver = "linux";
    } else if (arg === "--verbose") {
      parsed.verbose = true;
    } else {
      break; // the command starts here (no separating --)
    }
  }
  parsed.command = args.slice(i);
  if (parsed.command.length === 0) throw new TypeError(USAGE);
  if (parsed.iommuDriver === "linux" && parsed.kernel !== "6.12") {
    throw new TypeError("--linux-iommu needs --kernel 6.12 (6.1 has no virtio-iommu driver)");
  }
  return parsed;
}

/** Runs the runner's command line and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const first = argv[0] === "--" ? argv[1] : argv[0];
  if (first === "--help" || first === "-h") {
    console.log(USAGE + "\n\n" + HELP);
    return 0;
  }
  if (first === "--clean") {
    const cacheDir = `${defaultProjectRoot()}/.cache/guest`;
    const freed = await cleanGuestCache(cacheDir);
    console.log(
      `guest: removed ${(freed / 1048576).toFixed(1)} MiB of cached archives from ${cacheDir}`,
    );
    return 0;
  }
  let parsed: GuestCommandLine;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const encoder = new TextEncoder();
  const progress = Progress.stderr();
  const start = performance.now();
  try {
    const result = await runGuest(parsed.command, {
      kernel: parsed.kernel,
      iommuDriver: parsed.iommuDriver,
      qemuArgs: parsed.qemuArgs,
      timeoutSeconds: parsed.timeoutSeconds,
      onPhase(phase): void {
        // Until the command starts; from then on its own output shows progress.
        if (phase === "run") progress.clear();
        else {progress.update(
            `guest: ${describePhase(phase)} (${seconds(performance.now() - start)})`,
          );}
      },
      onLine(line: string): void {
        Deno.stdout.writeSync(encoder.encode(line + "\n"));
      },
      onNoise: parsed.verbose
        ? function (line: string): void {
          Deno.stderr.writeSync(encoder.encode(`[guest] ${line}\n`));
        }
        : undefined,
    });
    progress.clear();
    const summary = `guest: boot ${(result.bootMs / 1000).toFixed(1)} s, total ` +
      `${(result.totalMs / 1000).toFixed(1)} s (initramfs ${(result.buildMs / 1000).toFixed(1)} s)`;
    console.error(summary);
    if (result.timedOut) {
      console.error(`guest: timed out after ${parsed.timeoutSeconds} s`);
      return 124;
    }
    if (result.code < 0) {
      console.error("guest: the command never reported an exit code; last guest output:");
      for (const line of result.noise.slice(-30)) console.error(`  ${line}`);
      return 1;
    }
    return result.code;
  } catch (err) {
    progress.clear();
    if (err instanceof GuestSetupError) {
      console.error(err.message);
      return 3;
    }
    throw err;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
