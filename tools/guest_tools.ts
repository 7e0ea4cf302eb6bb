/**
 * Finds what booting a guest takes on this host: qemu-system-x86_64, a static busybox,
 * Deno's real ELF binary (this process's, or npm's under npx) and the guest kernel (with its
 * modules for 6.12). Each missing piece is named, so a skipped test or a refused run says
 * exactly what to install.
 *
 * @module
 */

import { type GuestKernel, LINUX_IOMMU_MODULES, UIO_MODULES } from "./guest_setup.ts";

/** The hint every missing-tool error ends with. */
export const INSTALL_HINT =
  "run .ci/install-guest-deps (as root) to install the guest dependencies";

/** Where the host tools the guest needs live. */
export interface GuestTools {
  /** qemu-system-x86_64. */
  qemu: string;
  /** A static busybox. */
  busybox: string;
  /** A kernel image (vmlinuz). */
  kernel: string;
  /** The folder of decompressed modules that goes with the kernel, or null when absent. */
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
    // The uio modules are optional: without them the guest's driver polls.
    const uio = `${cacheDir}/6.1/modules`;
    if (UIO_MODULES.every((m) => isFile(`${uio}/${m.file}`))) modulesDir = uio;
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
