/**
 * Fuzz targets for text the command line reads: request-shell lines ({@link runShellLine},
 * against the mock device) and `--mock-config` files ({@link mockConfigFromText}, then the
 * mock's own validation, as `viommu` does). A shell line never throws and every request it
 * makes settles; a config file is read or refused with UsageError (the mock's RangeError
 * becomes one in the CLI).
 *
 * @module
 */

import { UsageError } from "../../cli/args.ts";
import { type DeviceSession, mockConfigFromText, openDevice } from "../../cli/device.ts";
import { runShellLine } from "../../cli/shell.ts";
import { MockIommuDevice } from "../../mock/iommu/device.ts";
import { STATUS_NAMES } from "../../spec/iommu.ts";
import { FuzzCrash, type FuzzTarget, type Outcome } from "./engine.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const lines = (text: string): Uint8Array => encoder.encode(text);

/** Statuses a failed shell result may carry: the spec's (but OK), DRIVER and USAGE. */
const SHELL_STATUSES = new Set([...STATUS_NAMES.filter((n) => n && n !== "OK"), "DRIVER", "USAGE"]);

/** Inputs per session before a fresh device (mappings pile up otherwise). */
const SESSION_INPUTS = 5000;

/** Shell lines: each input is up to 8 lines run one after another on one mock session. */
export function shellTarget(): FuzzTarget {
  let session: DeviceSession | null = null;
  let used = 0;
  const lost = { n: 0 };
  return {
    name: "CLI shell lines",
    maxLength: 200,
    seeds: (): Uint8Array[] => [
      lines(
        "attach 1 8\nmap 1 0x10000 0x20000 0x1000 rw\ntranslate 8 0x10010 w\nunmap 1 0x10000 0x1000",
      ),
      lines("probe 0x08\nprobe 0x10\nevents"),
      lines("attach 2 0x10 bypass\ndetach 2 0x10\nreset"),
      lines(
        "attach 3 0x10\nmap 3 0x0 0xfffff000 0x2000 r,mmio\nunmap 3 0 0x2000\n# comment\n\nhelp",
      ),
      lines("attach 1 0x18\nmap 1 0x40000 0x1000 0x1000 w\ntranslate 0x18 0xfee00004 r"),
    ],
    dictionary: (): Uint8Array[] =>
      [
        "attach ",
        "detach ",
        "map ",
        "unmap ",
        "probe ",
        "translate ",
        "events",
        "reset",
        " 0x",
        " -1",
        " 18446744073709551616",
        " 0xffffffffffffffff",
        " 1e400",
        " NaN",
        " rw",
        " r,mmio",
        "\n",
        "\t",
        "#",
        "\u0000",
        "\u00ff",
      ].map(lines),
    async run(input: Uint8Array): Promise<Outcome> {
      if (session === null || used++ >= SESSION_INPUTS) {
        await session?.close();
        session = await openDevice({ kind: "mock", options: {}, transport: "pci", layout: "spec" });
        used = 0;
      }
      let outcome: Outcome = "ok";
      for (const line of decoder.decode(input).split("\n").slice(0, 8)) {
        if (line.trim().toLowerCase() === "quit") continue;
        const result = await runShellLine({ session }, line);
        const pending = session.iommu.pending;
        if (pending !== 0) {
          lost.n += pending;
          throw new FuzzCrash(`${pending} requests pending after "${line}" settled`);
        }
        if (result === null) continue;
        if (typeof result.ok !== "boolean" || typeof result.cmd !== "string") {
          throw new FuzzCrash(`malformed result for "${line}": ${JSON.stringify(result)}`);
        }
        if (!result.ok) {
          if (!SHELL_STATUSES.has(String(result.status))) {
            throw new FuzzCrash(`"${line}" failed with status ${result.status}`);
          }
          // Anything other than a typed driver or device error comes out as "DRIVER: Name:".
          if (
            /^(TypeError|RangeError|ReferenceError|SyntaxError|Error):/.test(result.message ?? "")
          ) {
            throw new FuzzCrash(`"${line}" failed untyped: ${result.message}`);
          }
          outcome = "rejected";
        }
        if (session.violations().length > 0) {
          throw new FuzzCrash(`"${line}" broke a device rule: ${session.violations()[0]}`);
        }
      }
      return outcome;
    },
    lost: (): number => lost.n,
  };
}

/** `--mock-config` files: JSON read, then validated by the mock device as the CLI does. */
export const mockConfigTarget: FuzzTarget = {
  name: "mock config files",
  maxLength: 400,
  seeds: (): Uint8Array[] =>
    [
      `{"features": "0x10130000077", "pageSizeMask": "0xfffffffffffff000", "probeSize": 512,
        "inputRange": {"start": "0", "end": "0xffffffffffffffff"}, "domainRange": {"start": 0, "end": 65535},
        "bypass": true, "queueSizes": [256, 256], "endpoints": [0, 8, 16, 24]}`,
      `{"transport": "mmio", "topologyLayout": "draft", "qemuCompat": true,
        "endpoints": [{"id": 8, "reservedRegions": [{"start": "0xfee00000", "end": "0xfeefffff", "subtype": "msi"},
        {"start": 4096, "end": 8191, "subtype": 1}]}], "unknownRequest": "qemu", "eventOverflow": "drop"}`,
      `{}`,
    ].map(lines),
  dictionary: (): Uint8Array[] =>
    [
      "{",
      "}",
      "[",
      "]",
      '"',
      ",",
      ":",
      "null",
      "true",
      "-1",
      "1e999",
      '"0x"',
      '"0xffffffffffffffffff"',
      "4294967296",
      '"__proto__"',
      '"endpoints"',
    ]
      .map(lines),
  run(input: Uint8Array): Outcome {
    try {
      const file = mockConfigFromText(decoder.decode(input), "fuzz.json");
      try {
        new MockIommuDevice(file.options);
      } catch (error) {
        if (error instanceof RangeError) return "rejected"; // the CLI's "Invalid mock device option"
        throw error;
      }
      return "ok";
    } catch (error) {
      if (error instanceof UsageError) return "rejected";
      throw error;
    }
  },
};
