/**
 * Help texts of `viommu` and its subcommands.
 *
 * @module
 */

import type { Subcommand } from "./args.ts";
import { SHELL_HELP } from "./shell.ts";

const DEVICE_OPTIONS = `device options:
  --device mock|pci:SSSS:BB:DD.F   the device (default mock: QEMU q35's virtio-iommu-pci);
                                   pci: needs root and --allow-all (deno task cli:host)
  --topology-layout spec|draft     config layout; draft has the 2020 built-in topology
  --timeout MS                     request timeout (default 2000; 5000 on a real device)
  --ring split|packed|auto         ring layout (default auto: packed when offered, §2.8)
mock device options (flags override --mock-config):
  --mock-config FILE.json          options as JSON, e.g. {"endpoints":[0,8],"probeSize":512}
  --transport pci|mmio             the mock's transport (default pci)
  --endpoints 0,8,0x10,0x18        endpoint IDs, each with the MSI region 0xfee00000-0xfeefffff
  --page-size-mask N               default 0xfffffffffffff000 (granule at least 4 KiB)
  --features N                     offered feature bits (default QEMU 7.2's 0x10130000077)
  --probe-size N                   default 512 (0: no properties)
  --input-range START-END          default the whole 64-bit space
  --domain-range START-END         default 0-0xffffffff
  --queue-size N                   both queues: a power of 2 up to 32768 (default 256)
  --no-bypass                      boot with bypass = 0
  --qemu-compat                    reproduce QEMU 7.2's deviations from the spec
  --packed                         also offer VIRTIO_F_RING_PACKED (QEMU's packed=on)
output:
  --json                           one JSON object per line: field names as in the library,
                                   32-bit values as numbers, 64-bit values as "0x…" strings
  -h, --help                       this help
  -V, --version                    the version
numbers: decimal or 0x hex (underscores allowed); negative numbers and leading zeros
  (010: decimal or octal?) are refused
exit codes: 0 ok, 1 request failed, 2 usage error; "status" says why a request failed: the
  device's (NOENT, RANGE, …), DRIVER (the driver refused), PERMISSION, ERROR
`;

const MAIN = `viommu: drive a virtio-iommu (virtio 1.3 §5.13) from userspace

usage: viommu <command> [options]

commands:
  info              transport, offered and negotiated features, config fields, ring, queues
  topology          the resolved topology: device, requester ID, alias, endpoint ID, group
                    (--tree: the PCI hierarchy as lspci -t draws it)
  probe <endpoint>  the endpoint's properties and reserved regions
  shell             a request shell (interactive on a terminal, line by line otherwise)
  conform           judge the device against every device rule of virtio 1.3 §5.13
  help <command>    help on a command

${DEVICE_OPTIONS}`;

const COMMANDS: Record<Subcommand, string> = {
  info: `usage: viommu info [options]

Initialises the device and shows the transport, the features the device offered and those
the driver accepted (by name; declinedFeatures lists the difference), the config fields
(virtio 1.3 §5.13.4), the ring layout in use (split §2.7 or packed §2.8) and the queue sizes.

${DEVICE_OPTIONS}`,
  topology: `usage: viommu topology [--tree] [options]

Shows which endpoint ID each PCI function gets: device, requesterId, DMA alias, endpointId
and isolation group ("-" for none). With --tree, the PCI hierarchy as lspci -t draws it,
each function with its endpoint ID, alias and group (with --json: a nested "tree" next to the
table's fields). The mock is QEMU's q35 guest (endpoint ID = BDF through its VIOT, or the
draft built-in topology with --topology-layout draft); a real device reads sysfs and
/sys/firmware/acpi/tables/VIOT.

${DEVICE_OPTIONS}`,
  probe: `usage: viommu probe <endpoint> [options]

Sends PROBE for <endpoint> (decimal or 0x hex) and shows its reserved regions. Exits 1 when
the device refuses (for example NOENT for an endpoint it does not know).

${DEVICE_OPTIONS}`,
  shell: `usage: viommu shell [options]

A request shell: one command per line, one result per line. Interactive with history on a
terminal; otherwise reads standard input line by line (exit code 0 when every line
succeeded, 1 when a request failed, 2 when a line was malformed). With --json each result
is one JSON object: {"cmd":"map","ok":true,...} or
{"cmd":"map","ok":false,"status":"RANGE","message":"..."} (status DRIVER for a request the
driver refused to send, USAGE for a malformed line).

${SHELL_HELP}
${DEVICE_OPTIONS}`,
  conform: `usage: viommu conform [--only ID[,ID…]] [--hazardous] [--oracle auto|none] [options]

Runs the conformance catalogue against the device: each device-side rule of virtio 1.3 §5.13
(and the generic device rules a driver can observe) on a freshly reset device, with raw
requests the driver would never send, and state checks after every refusal. One line per
rule: pass, fail (a MUST or MAY broken), deviation (a SHOULD not met) or skipped (with the
reason), then the totals. Exit code 1 when a MUST rule failed.

  --only ID[,ID…]   run these rules only (repeatable; "map.*" selects an area)
  --hazardous       also run rules that may take the device down (QEMU 7.2 aborts on one)
  --oracle none     do not use a DMA oracle (default auto: the mock's DMA engine, or QEMU's
                    edu device when the machine has one)

${DEVICE_OPTIONS}`,
};

/** The help for `command`, or the overview when null. */
export function helpText(command: Subcommand | null): string {
  return command === null ? MAIN : COMMANDS[command];
}
