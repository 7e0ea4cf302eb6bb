/**
 * What `viommu` needs from Deno for a real device, checked before anything is opened. Deno 2.9.6
 * opens files under `/sys` and `/proc` only when every permission is granted ("Requires all
 * access to /sys/…, run again with the --allow-all flag"), so `--allow-read --allow-write
 * --allow-ffi` is not enough: the real-device paths need `--allow-all` (and root). The mock
 * needs none of this.
 *
 * @module
 */

/** Every Deno permission; Deno 2.9.6's "all access" is all of them granted, unscoped. */
export const DENO_PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "sys",
  "run",
  "ffi",
  "import",
] as const;

/** The command that runs the CLI with what real hardware needs. */
export const HOST_COMMAND = "deno task cli:host -- …  (or: deno run --allow-all cli.ts …)";

/** The process lacks a permission a real device needs; the message says what to run instead. */
export class PermissionProblem extends Error {
  /** The Deno permissions that are not granted. */
  readonly missing: readonly string[];
  /** Creates the problem for `what`, listing `missing`. */
  constructor(what: string, missing: readonly string[]) {
    super(
      `${what} needs root and Deno's --allow-all: Deno 2.9.6 opens /sys only when every ` +
        `permission is granted (not granted: ${
          missing.map((m) => `--allow-${m}`).join(" ")
        }); run as root with ${HOST_COMMAND}`,
    );
    this.name = "PermissionProblem";
    this.missing = missing;
  }
}

/** The Deno permissions this process has not been granted (empty under `--allow-all`). */
export function missingPermissions(): string[] {
  return DENO_PERMISSIONS.filter((name) =>
    Deno.permissions.querySync({ name } as Deno.PermissionDescriptor).state !== "granted"
  );
}

/** Throws {@link PermissionProblem} naming `what` unless every Deno permission is granted. */
export function requireHostPermissions(what: string): void {
  const missing = missingPermissions();
  if (missing.length > 0) throw new PermissionProblem(`--device ${what}`, missing);
}
