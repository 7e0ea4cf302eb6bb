/**
 * Every fuzz target, in the order `deno task fuzz` runs them. Adding a reader of device or user
 * input means adding one entry here (tests/fuzz_test.ts runs each with a small budget).
 *
 * @module
 */

import type { FuzzTarget } from "./engine.ts";
import { faultTarget, probeTarget, splitUsedRingTarget } from "./targets_bytes.ts";
import { packedUsedRingTarget } from "./targets_packed.ts";
import {
  mmioRegistersTarget,
  pciCapabilitiesTarget,
  pciRegistersTarget,
} from "./targets_registers.ts";
import { mockConfigTarget, shellTarget } from "./targets_text.ts";
import { builtinTarget, fdtTarget, pciConfigTarget, viotTarget } from "./targets_topology.ts";

/** Makes the targets afresh (some hold a device or memory of their own). */
export function allTargets(): FuzzTarget[] {
  return [
    probeTarget,
    faultTarget,
    splitUsedRingTarget(),
    packedUsedRingTarget(),
    viotTarget,
    fdtTarget,
    builtinTarget,
    pciConfigTarget,
    pciCapabilitiesTarget(),
    mmioRegistersTarget(),
    pciRegistersTarget(),
    shellTarget(),
    mockConfigTarget,
  ];
}
