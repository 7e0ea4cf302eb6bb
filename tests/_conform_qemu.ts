/**
 * What `viommu conform` finds on QEMU 7.2's virtio-iommu-pci (q35, Debian's 7.2.22), as seen in
 * guest runs: every rule not listed here passes. The mock's QEMU personality (`qemuCompat`) must
 * give exactly these outcomes (tests/conform_test.ts), and the real device too
 * (tests/conform_device_test.ts). The README's deviation table explains each one.
 *
 * @module
 */

import type { Outcome } from "../conform/types.ts";

/** The rules QEMU 7.2 breaks, and how. */
export const QEMU_7_2_DEVIATIONS: Readonly<Record<string, Outcome>> = {
  "status.no-early-use": "fail",
  "attach.reserved": "fail",
  "attach.unknown-endpoint": "fail",
  "ops.unknown-type": "deviation",
  "framing.unparsable": "deviation",
  "attach.bypass-mismatch": "deviation",
  "map.alignment": "deviation",
  "unmap.split-atomic": "deviation",
  "probe.unknown-endpoint": "deviation",
  "resv.map-refused": "deviation",
  "fault.reason": "deviation",
};

/**
 * Rules that do not apply to QEMU's q35 device (full input and domain ranges, PROBE offered),
 * and the one that is run only with --hazardous because QEMU 7.2 aborts on it.
 */
export const QEMU_7_2_SKIPPED: readonly string[] = [
  "attach.domain-range",
  "map.input-range",
  "probe.not-offered",
  "probe.small-buffer",
];

/** The outcome QEMU 7.2 has for rule `id` in a run without --hazardous. */
export function qemuOutcome(id: string): Outcome {
  return QEMU_7_2_DEVIATIONS[id] ?? (QEMU_7_2_SKIPPED.includes(id) ? "skipped" : "pass");
}

/**
 * The rules whose requests exercise the rings, run again in the guest without EVENT_IDX and
 * INDIRECT_DESC negotiated (QEMU takes its other ring paths then).
 */
export const RING_RULES: readonly string[] = [
  "status.*",
  "reset.quiet",
  "ops.*",
  "framing.*",
  "notify.*",
  "attach.attaches",
  "map.translation",
  "probe.reserved",
  "fault.one-buffer",
];
