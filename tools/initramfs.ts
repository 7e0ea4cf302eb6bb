/**
 * Builds the guest's initramfs: an uncompressed newc cpio archive (uncompressed boots faster
 * under TCG) made of three concatenated pieces, each cached in `.cache/guest/` by content:
 *
 * 1. the base: busybox, Deno's own binary, the libraries `ldd` lists for it, and `/init`;
 * 2. the project: every file `git ls-files` lists (tracked and untracked-but-not-ignored);
 * 3. the command: a tiny `/cmd` script with the setup lines and the command to run;
 * 4. optionally, kernel modules: the `.ko` files of a folder under {@link GUEST_MODULES_DIR}.
 *
 * The kernel unpacks concatenated newc archives in order, so only the small pieces are
 * rebuilt between runs. Archives are written by `busybox cpio -o -H newc` (there is no `cpio`
 * binary on the hosts this runs on). What the cache keeps, and for how long: `guest_cache.ts`.
 *
 * @module
 */

import { pruneCache, removeStale } from "./guest_cache.ts";

/** Thrown when something the guest needs is missing on the host. */
export class GuestSetupError extends Error {
  /** Creates the error with a message saying what is missing and how to get it. */
  constructor(message: string) {
    super(message);
    this.name = "GuestSetupError";
  }
}

/** Printed by `/init` right before the command runs. */
export const BEGIN_MARKER = "@@viommu-guest-begin-7f3a@@";
/** Printed by `/init` after the command, followed by ` rc=<exit code>@@`. */
export const END_MARKER = "@@viommu-guest-end-7f3a";

/** Where the project copy lives inside the guest. */
export const GUEST_PROJECT_DIR = "/project";

/** Where the project piece puts a copy of the npm packages deno.lock pins (for DENO_DIR). */
export const GUEST_NPM_DIR = "/deno_npm";

/** Where the modules piece puts its `.ko` files inside the guest. */
export const GUEST_MODULES_DIR = "/lib/modules/viommu";

/** The `/init` script: mounts, environment, runs `/cmd` between markers, powers off. */
const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /usr/bin /usr/sbin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root DENO_DIR=/tmp/deno_dir
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1 VIOMMU_GUEST=1
# The npm packages deno.lock pins (fast-check, for tests and tools): a guest has no network,
# and deno task installs them before it runs anything.
[ -d ${GUEST_NPM_DIR} ] && mkdir -p /tmp/deno_dir && cp -a ${GUEST_NPM_DIR} /tmp/deno_dir/npm
cd ${GUEST_PROJECT_DIR}
echo "${BEGIN_MARKER}"
sh /cmd
rc=$?
echo "${END_MARKER} rc=$rc@@"
sync
poweroff -f
`;

/** Everything {@link buildInitramfs} needs to know about the host. */
export interface InitramfsInputs {
  /** The project root (a git work tree). */
  projectRoot: string;
  /** The cache folder, normally `<projectRoot>/.cache/guest`. */
  cacheDir: string;
  /** Path of a static busybox. */
  busybox: string;
  /** Path of Deno's real ELF binary. */
  deno: string;
  /** The command to run, as argv; joined with shell quoting into `/cmd`. */
  command: string[];
  /** Shell lines `/cmd` runs before the command (module loading, driver unbinds). */
  setup?: string[];
  /** A folder of decompressed `.ko` files to put in {@link GUEST_MODULES_DIR}; none when absent. */
  modulesDir?: string;
}

/** The pieces of a built initramfs, in boot order. */
export interface InitramfsPieces {
  /** Paths of the cpio archives to concatenate, base first. */
  pieces: string[];
  /** Whether the base piece came from the cache. */
  baseCached: boolean;
}

/** Quotes `arg` for a POSIX shell. */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return "'" + arg.replaceAll("'", `'"'"'`) + "'";
}

/** Returns the hex SHA-256 of `data`. */
async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), toHex).join("").slice(0, 24);
}

/** Formats one byte as two hex digits. */
function toHex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** Runs `cmd` and returns its stdout, throwing with its stderr when it fails. */
async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new GuestSetupError(
      `${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** Lists the shared libraries (absolute paths as the loader looks them up) `ldd` reports. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const text = await run("ldd", [binary]);
  const libs: string[] = [];
  for (const line of text.split("\n")) {
    const arrow = line.match(/=>\s+(\/\S+)/);
    const bare = line.match(/^\s*(\/\S+)\s+\(/);
    const path = arrow?.[1] ?? bare?.[1];
    if (path) libs.push(path);
  }
  return libs;
}

/**
 * Packs the tree under `stageDir` into the newc archive `output` with busybox cpio.
 * Paths are stored relative (`./bin/...`), which the kernel accepts.
 */
async function packDirectory(busybox: string, stageDir: string, output: string): Promise<void> {
  const cmd = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `cd "$1" && "$2" find . -mindepth 1 | "$2" cpio -o -H newc > "$3.tmp" && mv "$3.tmp" "$3"`,
      "pack",
      stageDir,
      busybox,
      output,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const out = await cmd.output();
  if (!out.success) {
    throw new GuestSetupError(
      `busybox cpio failed for ${stageDir}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** Returns whether `path` exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Copies `from` to `to`, creating parent folders and keeping the mode. */
async function copyInto(from: string, to: string): Promise<void> {
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(from, to);
  const info = await Deno.stat(from);
  if (info.mode !== null) await Deno.chmod(to, info.mode & 0o777);
}

/** Builds (or reuses) the base piece: busybox, deno, its libraries, `/init`. */
async function buildBase(inputs: InitramfsInputs): Promise<{ path: string; cached: boolean }> {
  const libs = await sharedLibraries(inputs.deno);
  const identity: string[] = [INIT_SCRIPT];
  for (const file of [inputs.busybox, inputs.deno, ...libs]) {
    const info = await Deno.stat(file);
    identity.push(`${file} ${info.size} ${info.mtime?.getTime() ?? 0}`);
  }
  const key = await sha256(identity.join("\n"));
  const path = `${inputs.cacheDir}/base-${key}.cpio`;
  if (await exists(path)) return { path, cached: true };

  const stage = await Deno.makeTempDir({ dir: inputs.cacheDir, prefix: "stage-base-" });
  try {
    await copyInto(inputs.busybox, `${stage}/bin/busybox`);
    await copyInto(inputs.deno, `${stage}/bin/deno`);
    for (const lib of libs) await copyInto(lib, `${stage}${lib}`);
    await Deno.writeTextFile(`${stage}/init`, INIT_SCRIPT, { mode: 0o755 });
    await Deno.chmod(`${stage}/init`, 0o755);
    await packDirectory(inputs.busybox, stage, path);
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  await removeStale(inputs.cacheDir, "base-", path);
  return { path, cached: false };
}

/**
 * Lists the project's files: tracked plus untracked-but-not-ignored, minus the cache and
 * anything that is not a file. A symlinked `.cache` is no folder to git, so `.gitignore`'s
 * `.cache/` does not hide it and git lists `.cache` itself; it, and any other symlink to a
 * folder, is left out instead of being read as a file (which failed with IsADirectory).
 */
export async function projectFiles(projectRoot: string): Promise<string[]> {
  const text = await run(
    "git",
    ["ls-files", "--cached", "--others", "--exclude-standard", "-z"],
    projectRoot,
  );
  const files: string[] = [];
  for (const name of text.split("\0")) {
    if (name === "" || name === ".cache" || name.startsWith(".cache/")) continue;
    if (name === ".git" || name.startsWith(".git/")) continue;
    try {
      if (!(await Deno.stat(`${projectRoot}/${name}`)).isFile) continue;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // deleted in the work tree
      throw err;
    }
    files.push(name);
  }
  return [...new Set(files)].sort();
}

/** Builds (or reuses) the project piece, keyed by the paths and contents of its files. */
async function buildProject(inputs: InitramfsInputs): Promise<string> {
  const files = projectFiles(inputs.projectRoot);
  const parts: Uint8Array[] = [];
  const present: string[] = [];
  const encoder = new TextEncoder();
  for (const name of await files) {
    let data: Uint8Array;
    try {
      data = await Deno.readFile(`${inputs.projectRoot}/${name}`);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // deleted in the work tree
      throw err;
    }
    present.push(name);
    parts.push(encoder.encode(`${name}\0${data.length}\0`), data);
  }
  let total = 0;
  for (const part of parts) total += part.length;
  const all = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  const key = await sha256(all);
  const path = `${inputs.cacheDir}/project-${key}.cpio`;
  if (await exists(path)) return path;

  const stage = await Deno.makeTempDir({ dir: inputs.cacheDir, prefix: "stage-project-" });
  try {
    for (const name of present) {
      await copyInto(`${inputs.projectRoot}/${name}`, `${stage}${GUEST_PROJECT_DIR}/${name}`);
    }
    await copyLockedNpm(inputs, `${stage}${GUEST_NPM_DIR}`);
    await packDirectory(inputs.busybox, stage, path);
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  await removeStale(inputs.cacheDir, "project-", path);
  return path;
}

/**
 * Copies the npm packages deno.lock pins from the host's Deno cache (where `deno task test`
 * put them) to `to`, laid out as DENO_DIR/npm. The project piece's key covers deno.lock, so a
 * new pin gives a new piece. Nothing to do without a lock file or a package in it.
 */
async function copyLockedNpm(inputs: InitramfsInputs, to: string): Promise<void> {
  let lock: { npm?: Record<string, unknown> };
  try {
    lock = JSON.parse(await Deno.readTextFile(`${inputs.projectRoot}/deno.lock`));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  const packages = Object.keys(lock.npm ?? {});
  if (packages.length === 0) return;
  const info = JSON.parse(await run(inputs.deno, ["info", "--json"]));
  const registry = `${info.npmCache}/registry.npmjs.org`;
  for (const key of packages) {
    const at = key.lastIndexOf("@");
    const name = key.slice(0, at), version = key.slice(at + 1);
    const from = `${registry}/${name}/${version}`;
    if (!(await exists(from))) {
      throw new GuestSetupError(
        `npm package ${key} is not in ${registry}: run deno task test once`,
      );
    }
    await copyTree(from, `${to}/registry.npmjs.org/${name}/${version}`);
  }
}

/** Copies the folder `from` to `to`, recursively. */
async function copyTree(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await copyInto(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/** Builds (or reuses) the command piece: `/cmd` (setup lines, then the command). */
async function buildCommand(inputs: InitramfsInputs): Promise<string> {
  const setup = (inputs.setup ?? []).map((line) => line + "\n").join("");
  const script = setup + inputs.command.map(shellQuote).join(" ") + "\n";
  const key = await sha256(script);
  const path = `${inputs.cacheDir}/cmd-${key}.cpio`;
  if (await exists(path)) {
    // Mark it as used: pruneCache keeps the most recently used command archives.
    const now = new Date();
    await Deno.utime(path, now, now).catch(() => {});
    return path;
  }
  const stage = await Deno.makeTempDir({ dir: inputs.cacheDir, prefix: "stage-cmd-" });
  try {
    await Deno.writeTextFile(`${stage}/cmd`, script, { mode: 0o755 });
    await packDirectory(inputs.busybox, stage, path);
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  return path;
}

/** Builds (or reuses) the modules piece from the `.ko` files in `modulesDir`. */
async function buildModules(inputs: InitramfsInputs, modulesDir: string): Promise<string> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(modulesDir)) {
    if (entry.isFile && entry.name.endsWith(".ko")) names.push(entry.name);
  }
  if (names.length === 0) {
    throw new GuestSetupError(`No kernel modules (.ko) in ${modulesDir}`);
  }
  names.sort();
  const identity: string[] = [modulesDir];
  for (const name of names) {
    const info = await Deno.stat(`${modulesDir}/${name}`);
    identity.push(`${name} ${info.size} ${info.mtime?.getTime() ?? 0}`);
  }
  const key = await sha256(identity.join("\n"));
  const path = `${inputs.cacheDir}/modules-${key}.cpio`;
  if (await exists(path)) return path;
  const stage = await Deno.makeTempDir({ dir: inputs.cacheDir, prefix: "stage-modules-" });
  try {
    for (const name of names) {
      await copyInto(`${modulesDir}/${name}`, `${stage}${GUEST_MODULES_DIR}/${name}`);
    }
    await packDirectory(inputs.busybox, stage, path);
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  await removeStale(inputs.cacheDir, "modules-", path);
  return path;
}

/** Builds the three pieces of the initramfs (reusing cached ones) and returns their paths. */
export async function buildInitramfs(inputs: InitramfsInputs): Promise<InitramfsPieces> {
  await Deno.mkdir(inputs.cacheDir, { recursive: true });
  await pruneCache(inputs.cacheDir);
  const [base, project, command, modules] = await Promise.all([
    buildBase(inputs),
    buildProject(inputs),
    buildCommand(inputs),
    inputs.modulesDir === undefined ? null : buildModules(inputs, inputs.modulesDir),
  ]);
  const pieces = [base.path, project, command];
  if (modules !== null) pieces.push(modules);
  return { pieces, baseCached: base.cached };
}

/** Concatenates `pieces` into the single file `output` (QEMU takes one `-initrd`). */
export async function concatenate(pieces: string[], output: string): Promise<void> {
  const out = await Deno.open(output, { write: true, create: true, truncate: true });
  try {
    for (const piece of pieces) {
      const input = await Deno.open(piece, { read: true });
      await input.readable.pipeTo(out.writable, { preventClose: true });
    }
  } finally {
    out.close();
  }
}
