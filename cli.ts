/**
 * `viommu`, the command line: `deno task cli -- info`, `topology`, `probe <endpoint>`,
 * `shell`; `--help` on each. The mock device needs no permission; a real device
 * (`--device pci:0000:00:02.0`) needs root and `--allow-read --allow-write --allow-ffi`.
 *
 * @example
 * ```sh
 * deno run cli.ts probe 0x08 --json
 * printf 'attach 1 8\nmap 1 0x10000 0x20000 0x1000 rw\ntranslate 8 0x10010 w\n' | deno run cli.ts shell --json
 * ```
 *
 * @module
 */

import { main } from "./cli/main.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
