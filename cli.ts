/**
 * `viommu`, the command line: `deno task cli -- info`, `topology [--tree]`,
 * `probe <endpoint>`, `shell`; `--help` on each, `--version`. The mock device needs no
 * permission (`deno task cli` grants only `--allow-read` for `--mock-config` files and
 * `--allow-env=NO_COLOR`); a real device (`--device pci:0000:00:02.0`) needs root and
 * `--allow-all`, since Deno 2.9.6 opens `/sys` only with every permission granted:
 * `deno task cli:host -- …`. Without them it exits 1 with status PERMISSION, saying so.
 *
 * @example
 * ```sh
 * deno run cli.ts probe 0x08 --json
 * printf 'attach 1 8\nmap 1 0x10000 0x20000 0x1000 rw\ntranslate 8 0x10010 w\n' | deno run cli.ts shell --json
 * sudo deno run --allow-all cli.ts info --device pci:0000:00:02.0
 * ```
 *
 * @module
 */

import { main } from "./cli/main.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
