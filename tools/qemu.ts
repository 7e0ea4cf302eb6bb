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
  GUEST_MODULES_DIR,
  GuestSetupError,
} from "./initramfs.ts";

/** The hint every missing-tool error ends with. */
const INSTALL_HINT = "run .ci/install-guest-deps (as root) to install the guest dependencies";

/**
 * Which guest kernel to boot: `"6.1"` is bookworm's cloud kernel (no virtio-iommu driver;
 * `.cache/guest/vmlinuz-*` or `$VIOMMU_VMLINUZ`), `"6.12"` bookworm-backports' cloud kernel
 * with Linux's virtio-iommu and VFIO as modules (`.cache/guest/6.12/`, or
 * `$VIOMMU_KERNEL_6_12_DIR` holding `vmlinuz-*` and `modules/*.ko`).
 */
export type GuestKernel = "6.1" | "6.12";

/** Every {@link GuestKernel}, for argument checking. */
export const GUEST_KERNELS: readonly GuestKernel[] = ["6.1", "6.12"];

/**
 * Who drives the virtio-iommu in the guest: `"userspace"` (our driver; on 6.12 the built-in
 * virtio-pci is unbound from the device first) or `"linux"` (6.12 only: Linux's virtio-iommu
 * and VFIO modules are loaded before the command runs).
 */
export type IommuDriverChoice = "userspace" | "linux";

/** One module `insmod` loads for the `"linux"` choice, with its parameters. */
export interface GuestModule {
  /** File name in the modules folder. */
  file: string;
  /** Module parameters passed to insmod. */
  params: string[];
}

/**
 * The modules Linux's virtio-iommu and VFIO type1 need, in load order (there is no
 * modules.dep, so busybox insmod loads them one by one). `allow_unsafe_interrupts=1`: without
 * interrupt remapping in the guest, VFIO_SET_IOMMU fails with EPERM otherwise.
 */
export const LINUX_IOMMU_MODULES: readonly GuestModule[] = [
  { file: "virtio-iommu.ko", params: [] },
  { file: "irqbypass.ko", params: [] },
  { file: "vfio.ko", params: [] },
  { file: "vfio_iommu_type1.ko", params: ["allow_unsafe_interrupts=1"] },
  { file: "vfio-pci-core.ko", params: [] },
  { file: "vfio-pci.ko", params: [] },
];

/**
 * The CPU model for 6.12 guests. Without CX16, SLUB does not use `cmpxchg16b`: under QEMU
 * 7.2's TCG, 6.12's `this_cpu_try_cmpxchg128` (cmpxchg16b with a %gs prefix, its flags
 * consumed directly by a jump) came back with garbage EFLAGS in about half of the boots (double
 * fault in kmem_cache_alloc during early boot, EFLAGS holding RAX's bits); with `-cx16`, 0 in 8.
 */
export const CPU_6_12 = "max,-cx16";

/** Exit code `/cmd` returns when the setup lines (module loading, unbinding) failed. */
export const SETUP_FAILED_CODE = 90;

/**
 * Returns the shell lines that prepare the guest before the command: for 6.12 with our driver,
 * unbind the built-in virtio-pci from every virtio-iommu (1af4:1057); with Linux's driver,
 * insmod {@link LINUX_IOMMU_MODULES}. Nothing for 6.1, where no kernel driver exists.
 */
export function guestSetupScript(kernel: GuestKernel, driver: IommuDriverChoice): string[] {
  if (driver === "linux") {
    if (kernel !== "6.12") {
      throw new TypeError(
        `Cannot use Linux's virtio-iommu driver on kernel ${kernel}: only 6.12 has it`,
      );
    }
    return LINUX_IOMMU_MODULES.map((m) =>
      `insmod ${GUEST_MODULES_DIR}/${m.file}${m.params.map((p) => " " + p).join("")} || ` +
      `{ echo "guest setup: insmod ${m.file} failed" >&2; exit ${SETUP_FAILED_CODE}; }`
    );
  }
  if (kernel === "6.1") return [];
  return [
    "for d in /sys/bus/pci/devices/*; do",
    '  if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1057 ] && [ -e $d/driver ]; then',
    '    echo "${d##*/}" > $d/driver/unbind || ' +
    `{ echo "guest setup: cannot unbind \${d##*/}" >&2; exit ${SETUP_FAILED_CODE}; }`,
    "  fi",
    "done",
  ];
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

/** Where the host tools the guest needs live. */
export interface GuestTools {
  /** qemu-system-x86_64. */
  qemu: string;
  /** A static busybox. */
  busybox: string;
  /** A kernel image (vmlinuz). */
  kernel: string;
  /** The folder of decompressed modules that goes with the kernel, or null (6.1 has none). */
  modulesDir: string | null;
  /** Deno's real ELF binary. */
  deno: string;
}

/** Returns the default project root: the parent of this file's folder. */
export function defaultProjectRoot(): string {
  return new URL("..", import.meta.url).pathname.replace(/\/$/, "");
}

/** Finds `name` on PATH (or in the usual system folders); null when absent. */
export function findOnPath(name: string): string | null {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin", "/bin", "/usr/sbin"]);
  for (const dir of dirs) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return `${dir}/${name}`;
    } catch {
      // not in this folder
    }
  }
  return null;
}

/** Returns whether the file at `path` starts with the ELF magic. */
function isElf(path: string): boolean {
  try {
    const file = Deno.openSync(path, { read: true });
    try {
      const head = new Uint8Array(4);
      const n = file.readSync(head);
      return n === 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c &&
        head[3] === 0x46;
    } finally {
      file.close();
    }
  } catch {
    return false;
  }
}

/** Returns whether `path` is an existing file. */
function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Finds Deno's real ELF binary: this process's, else the npm package in the npx cache. */
export function findDenoBinary(): string | null {
  const own = Deno.execPath();
  if (isElf(own)) return own;
  const home = Deno.env.get("HOME") ?? "/root";
  try {
    for (const entry of Deno.readDirSync(`${home}/.npm/_npx`)) {
      const candidate = `${home}/.npm/_npx/${entry.name}/node_modules/@deno/linux-x64-glibc/deno`;
      if (isElf(candidate)) return candidate;
    }
  } catch {
    // no npx cache
  }
  return null;
}

/** Finds the kernel: `$VIOMMU_VMLINUZ`, else the newest `.cache/guest/vmlinuz-*`. */
export function findKernel(cacheDir: string): string | null {
  const fromEnv = Deno.env.get("VIOMMU_VMLINUZ");
  if (fromEnv) return isFile(fromEnv) ? fromEnv : null;
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(cacheDir)) {
      if (entry.name.startsWith("vmlinuz-")) found.push(`${cacheDir}/${entry.name}`);
    }
  } catch {
    return null;
  }
  return found.sort().at(-1) ?? null;
}

/** Where the 6.12 kernel and its modules live. */
export interface Kernel612 {
  /** The vmlinuz. */
  kernel: string;
  /** The folder of decompressed `.ko` files. */
  modulesDir: string;
}

/**
 * Finds the 6.12 kernel: `$VIOMMU_KERNEL_6_12_DIR`, else `<cacheDir>/6.12`, holding the newest
 * `vmlinuz-*` and a `modules/` folder with every file of {@link LINUX_IOMMU_MODULES}. Returns
 * the paths, or a reason saying what is missing.
 */
export function findKernel612(cacheDir: string): Kernel612 | string {
  const dir = Deno.env.get("VIOMMU_KERNEL_6_12_DIR") || `${cacheDir}/6.12`;
  const kernels: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.name.startsWith("vmlinuz-")) kernels.push(`${dir}/${entry.name}`);
    }
  } catch {
    // no folder
  }
  const kernel = kernels.sort().at(-1);
  if (kernel === undefined) return `no 6.12 kernel: ${dir}/vmlinuz-* is missing`;
  const modulesDir = `${dir}/modules`;
  const absent = LINUX_IOMMU_MODULES.filter((m) => !isFile(`${modulesDir}/${m.file}`));
  if (absent.length > 0) {
    return `6.12 kernel modules missing in ${modulesDir}: ${absent.map((m) => m.file).join(", ")}`;
  }
  return { kernel, modulesDir };
}

/**
 * Finds every host tool for booting `kernel` (default 6.1), or explains what is missing.
 * Returns the tools, or a list of human-readable reasons (each naming the missing piece).
 */
export function locateTools(
  projectRoot: string,
  kernel: GuestKernel = "6.1",
): GuestTools | string[] {
  const cacheDir = `${projectRoot}/.cache/guest`;
  const qemu = findOnPath("qemu-system-x86_64");
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find(isElf) ?? findOnPath("busybox");
  const deno = findDenoBinary();
  const missing: string[] = [];
  let image: string | null = null;
  let modulesDir: string | null = null;
  if (kernel === "6.12") {
    const found = findKernel612(cacheDir);
    if (typeof found === "string") missing.push(found);
    else ({ kernel: image, modulesDir } = found);
  } else {
    image = findKernel(cacheDir);
    if (!image) {
      const fromEnv = Deno.env.get("VIOMMU_VMLINUZ");
      missing.push(
        fromEnv
          ? `no kernel at VIOMMU_VMLINUZ=${fromEnv}`
          : `no kernel: ${cacheDir}/vmlinuz-* is missing`,
      );
    }
  }
  if (!qemu) missing.push("qemu-system-x86_64 is not installed");
  if (!busybox) missing.push("busybox (busybox-static) is not installed");
  if (!deno) missing.push("cannot find Deno's ELF binary (Deno.execPath() or the npx cache)");
  if (missing.length > 0 || !qemu || !busybox || !image || !deno) return missing;
  return { qemu, busybox, kernel: image, modulesDir, deno };
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
  const setup = guestSetupScript(kernel, options.iommuDriver ?? "userspace");
  const tools = locateTools(projectRoot, kernel);
  if (Array.isArray(tools)) {
    throw new GuestSetupError(`Cannot boot the guest: ${tools.join("; ")}; ${INSTALL_HINT}`);
  }
  if (command.length === 0) throw new TypeError("No command given to run in the guest");

  const buildStart = performance.now();
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
