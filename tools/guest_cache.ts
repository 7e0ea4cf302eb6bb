/**
 * The guest runner's cache in `.cache/guest/`, bounded. Besides the kernels the installer put
 * there (`vmlinuz-*`, `6.12/`, `apt/`, never touched here), it holds:
 *
 * - one base archive (`base-*.cpio`, about 100 MB: busybox, Deno and its libraries, `/init`),
 *   one project archive and one modules archive: a new one replaces the old;
 * - the command archives (`cmd-*.cpio`, a few hundred bytes each): the newest
 *   {@link KEEP_COMMANDS} are kept;
 * - per run, the concatenated initrd (`initrd-<pid>-<n>.cpio`, as big as the base) and staging
 *   folders (`stage-*`): deleted when the run ends, and when a killed run left them behind,
 *   by the next run once they are {@link STALE_MS} old.
 *
 * `deno task guest -- --clean` ({@link cleanGuestCache}) deletes all of the above.
 *
 * @module
 */

/** Command archives kept (newest first). */
export const KEEP_COMMANDS = 16;

/** Age after which a run's initrd or staging folder is a leftover (runs time out long before). */
export const STALE_MS = 10 * 60 * 1000;

/** The prefixes of everything the runner writes into the cache. */
export const CACHE_PREFIXES = ["base-", "project-", "modules-", "cmd-", "initrd-", "stage-"];

/** Swallows an error (best-effort cleanup). */
function ignore(): void {}

/** One cache entry with its age and size. */
interface Entry {
  name: string;
  path: string;
  mtime: number;
  size: number;
  isDirectory: boolean;
}

async function entries(cacheDir: string): Promise<Entry[]> {
  const out: Entry[] = [];
  try {
    for await (const entry of Deno.readDir(cacheDir)) {
      if (!CACHE_PREFIXES.some((p) => entry.name.startsWith(p))) continue;
      const path = `${cacheDir}/${entry.name}`;
      try {
        const info = await Deno.lstat(path);
        out.push({
          name: entry.name,
          path,
          mtime: info.mtime?.getTime() ?? 0,
          size: info.size,
          isDirectory: info.isDirectory,
        });
      } catch {
        // removed by a concurrent run
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

/** Deletes cache files starting with `prefix` other than `keep` (old versions of a piece). */
export async function removeStale(cacheDir: string, prefix: string, keep: string): Promise<void> {
  for (const e of await entries(cacheDir)) {
    if (e.name.startsWith(prefix) && e.name.endsWith(".cpio") && e.path !== keep) {
      await Deno.remove(e.path).catch(ignore);
    }
  }
}

/**
 * Bounds the cache: keeps the newest {@link KEEP_COMMANDS} command archives and deletes
 * initrds and staging folders older than {@link STALE_MS} (a killed run's). `now` is for tests.
 */
export async function pruneCache(cacheDir: string, now: number = Date.now()): Promise<void> {
  const all = await entries(cacheDir);
  const commands = all.filter((e) => e.name.startsWith("cmd-")).sort((a, b) => b.mtime - a.mtime);
  for (const e of commands.slice(KEEP_COMMANDS)) await Deno.remove(e.path).catch(ignore);
  for (const e of all) {
    if (!e.name.startsWith("initrd-") && !e.name.startsWith("stage-")) continue;
    if (now - e.mtime > STALE_MS) await Deno.remove(e.path, { recursive: true }).catch(ignore);
  }
}

/** Deletes everything the runner cached (not the kernels); returns the bytes freed. */
export async function cleanGuestCache(cacheDir: string): Promise<number> {
  let freed = 0;
  for (const e of await entries(cacheDir)) {
    await Deno.remove(e.path, { recursive: true });
    freed += e.isDirectory ? 0 : e.size;
  }
  return freed;
}
