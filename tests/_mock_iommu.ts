/** Feature masks, MAP flags and harness builders shared by the mock_iommu_*_test.ts files. */

import assert from "node:assert/strict";
import type { MockIommuDevice } from "../mock/iommu/device.ts";
import { attachRequest, RawHarness, S } from "./_raw_requests.ts";

// Literal feature masks (virtio 1.3 §5.13.3), not imported, on purpose.
export const F_INPUT_RANGE = 1n << 0n;
export const F_DOMAIN_RANGE = 1n << 1n;
export const F_MAP_UNMAP = 1n << 2n;
export const F_BYPASS = 1n << 3n;
export const F_PROBE = 1n << 4n;
export const F_MMIO = 1n << 5n;
export const F_BYPASS_CONFIG = 1n << 6n;
export const QEMU_FEATURES = 0x0000010130000077n;
export const READ = 1;
export const WRITE = 2;
export const MMIO = 4;

export function map(
  start: bigint,
  end: bigint,
  phys = start,
): { start: bigint; end: bigint; phys: bigint } {
  return { start, end, phys };
}

export function attached(
  options: ConstructorParameters<typeof MockIommuDevice>[0] = {},
  negotiated?: bigint,
): RawHarness {
  const h = new RawHarness(options, negotiated);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  return h;
}
