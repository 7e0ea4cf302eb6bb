/**
 * Boots the guest under QEMU (q35, TCG, no network, a virtio-iommu-pci) and streams the
 * command's output back: everything the guest prints before {@link BEGIN_MARKER} is boot noise,
 * lines between the markers are the command's (minus kernel log lines), and the end marker
 * carries the exit code.
 *
 * @module
 */

import {
  BEGIN_MARKER,
  buildInitramfs,
  concatenate,
  END_MARKER,
  GuestSetupError,
} from "./initramfs.ts";
import {
  CPU_6_12,
  GUEST_KERNELS,
  type GuestKernel,
  guestSetupScript,
  type IommuDriverChoice,
} from "./guest_setup.ts";
import { defaultProjectRoot, INSTALL_HINT, locateTools } from "./guest_tools.ts";

/** What a guest run is doing: building the initramfs, booting, running the command. */
export type GuestPhase = "build" | "boot" | "run";

/** Words for a {@link GuestPhase}, for a progress line. */
export function describePhase(phase: GuestPhase): string {
  return phase === "build"
    ? "building the initramfs"
    : phase === "boot"
    ? "booting QEMU (TCG)"
    : "running the command";
}

/** Options for {@link runGuest}. */
export interface GuestOptions {
  /** The kernel to boot (default `"6.1"`). */
  kernel?: GuestKernel;
  /** Who drives the virtio-iommu (default `"userspace"`); `"linux"` needs kernel 6.12. */
  iommuDriver?: IommuDriverChoice;
  /** Extra QEMU arguments, appended after the fixed ones. */
  qemuArgs?: string[];
  /** Seconds before QEMU is killed; default 170. */
  timeoutSeconds?: number;
  /** Called with each line of the command's output as it arrives (without the newline). */
  onLine?: (line: string) => void;
  /** Called with each line the guest prints outside the markers (boot noise). */
  onNoise?: (line: string) => void;
  /** Called as the run enters each {@link GuestPhase} (for progress lines). */
  onPhase?: (phase: GuestPhase) => void;
  /** The project root; default: the folder above `tools/`. */
  projectRoot?: string;
}

/** What a guest run produced. */
export interface GuestResult {
  /** The command's exit code, or -1 when the guest never reported one. */
  code: number;
  /** The command's output lines. */
  lines: string[];
  /** Everything the guest printed outside the markers (kernel messages, panics). */
  noise: string[];
  /** Whether the run hit the timeout. */
  timedOut: boolean;
  /** Milliseconds spent building the initramfs. */
  buildMs: number;
  /** Milliseconds from starting QEMU to the begin marker (boot time). */
  bootMs: number;
  /** Milliseconds from starting QEMU to its exit. */
  totalMs: number;
}

/** Counts runs in this process, so concurrent runs never share an initrd file. */
let runCounter = 0;

/** Splits a string of QEMU arguments on whitespace, honouring single and double quotes. */
export function splitArgs(text: string): string[] {
  const args: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let current = "";
  let lastEnd = -1;
  for (const m of text.matchAll(re)) {
    const piece = m[1] ?? m[2] ?? m[3] ?? "";
    if (m.index === lastEnd) {
      current += piece;
    } else {
      if (lastEnd !== -1) args.push(current);
      current = piece;
    }
    lastEnd = m.index + m[0].length;
  }
  if (lastEnd !== -1) args.push(current);
  return args;
}

/** A kernel log line as printed on the console (`[    1.234567] ...`). */
const KERNEL_LINE = /^\[\s*\d+\.\d+\]/;

/**
 * Builds the initramfs, boots QEMU, runs `command` in the guest's project copy and returns
 * its output and exit code. Throws {@link GuestSetupError} when a host tool is missing.
 */
export async function runGuest(
  command: string[],
  options: GuestOptions = {},
): Promise<GuestResult> {
  const projectRoot = options.projectRoot ?? defaultProjectRoot();
  const cacheDir = `${projectRoot}/.cache/guest`;
  const kernel = options.kernel ?? "6.1";
  if (!GUEST_KERNELS.includes(kernel)) {
    throw new TypeError(`Unknown guest kernel ${JSON.stringify(kernel)}: expected 6.1 or 6.12`);
  }
  guestSetupScript(kernel, options.iommuDriver ?? "userspace"); // checks the combination
  const tools = locateTools(projectRoot, kernel);
  if (Array.isArray(tools)) {
    throw new GuestSetupError(`Cannot boot the guest: ${tools.join("; ")}; ${INSTALL_HINT}`);
  }
  const setup = guestSetupScript(
    kernel,
    options.iommuDriver ?? "userspace",
    tools.modulesDir !== null,
  );
  if (command.length === 0) throw new TypeError("No command given to run in the guest");

  const buildStart = performance.now();
  options.onPhase?.("build");
  const built = await buildInitramfs({
    projectRoot,
    cacheDir,
    busybox: tools.busybox,
    deno: tools.deno,
    command,
    setup,
    modulesDir: tools.modulesDir ?? undefined,
  });
  const initrd = `${cacheDir}/initrd-${Deno.pid}-${runCounter++}.cpio`;
  await concatenate(built.pieces, initrd);
  const buildMs = performance.now() - buildStart;

  const args = [
    "-accel",
    "tcg",
    "-machine",
    "q35",
    "-cpu",
    kernel === "6.12" ? CPU_6_12 : "max",
    "-m",
    "2048",
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-nic",
    "none",
    "-kernel",
    tools.kernel,
    "-initrd",
    initrd,
    "-append",
    "console=ttyS0 panic=-1 quiet",
    "-device",
    "virtio-iommu-pci",
    ...(options.qemuArgs ?? []),
  ];
  const start = performance.now();
  options.onPhase?.("boot");
  const child = new Deno.Command(tools.qemu, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let timedOut = false;
  const timeout = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, (options.timeoutSeconds ?? 170) * 1000);

  const lines: string[] = [];
  const noise: string[] = [];
  let code = -1;
  let bootMs = -1;
  let inside = false;
  /** Sorts one console line into boot noise, command output or a marker. */
  const handle = (raw: string): void => {
    const line = raw.replace(/\r/g, "");
    if (!inside) {
      if (line.includes(BEGIN_MARKER)) {
        inside = true;
        bootMs = performance.now() - start;
        options.onPhase?.("run");
        return;
      }
      noise.push(line);
      options.onNoise?.(line);
      return;
    }
    const end = line.indexOf(END_MARKER);
    if (end !== -1) {
      const m = line.slice(end).match(/rc=(\d+)@@/);
      if (m) code = Number(m[1]);
      if (end > 0) emit(line.slice(0, end));
      inside = false;
      return;
    }
    if (KERNEL_LINE.test(line)) {
      noise.push(line);
      options.onNoise?.(line);
      return;
    }
    emit(line);
  };
  /** Records and forwards one line of command output. */
  const emit = (line: string): void => {
    lines.push(line);
    options.onLine?.(line);
  };

  const stderrText = new Response(child.stderr).text();
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) !== -1) {
      handle(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  }
  if (pending !== "") handle(pending);
  await child.status;
  clearTimeout(timeout);
  const totalMs = performance.now() - start;
  await Deno.remove(initrd).catch(ignore);
  const stderr = (await stderrText).trim();
  if (stderr !== "") noise.push(...stderr.split("\n"));
  return { code, lines, noise, timedOut, buildMs, bootMs, totalMs };
}

/** Swallows an error (best-effort cleanup). */
function ignore(): void {}
