/** Assertions and a fixture runner shared by the iommu_driver_*_test.ts files. */

import assert from "node:assert/strict";
import { MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import { type Bus, type Fixture, setup } from "./_fixtures.ts";
import type { MockIommuDevice } from "../mock/iommu/device.ts";

export const RW = MAP_READ | MAP_WRITE;
export const MSI_START = 0xfee00000n;
export const MSI_END = 0xfeefffffn;

/** Asserts that `promise` rejects with an IommuError of `status`; returns the error. */
export async function rejectsWith(promise: Promise<unknown>, status: string): Promise<IommuError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof IommuError, `expected IommuError ${status}, got ${String(error)}`);
  assert.equal(error.status, status, error.message);
  return error;
}

/** Asserts that the driver refused `run()` itself: status DRIVER and nothing reached the mock. */
export async function refused(f: Fixture, run: () => Promise<unknown>): Promise<IommuError> {
  const before = f.device.requestsHandled;
  const error = await rejectsWith(run(), "DRIVER");
  assert.equal(f.device.requestsHandled, before, "a refused request must not be sent");
  return error;
}

/** Runs `body` on a fresh fixture and closes it; checks the mock saw no rule broken. */
export async function withIommu(
  kind: Bus,
  body: (f: Fixture) => Promise<void> | void,
  mockOptions: Parameters<typeof setup>[1] = {},
  driverOptions: Parameters<typeof setup>[2] = {},
): Promise<void> {
  const f = await setup(kind, mockOptions, driverOptions);
  try {
    await body(f);
    assert.deepEqual(f.core.violations, []);
  } finally {
    await f.iommu.close();
  }
}

export function read(device: MockIommuDevice, endpoint: number, iova: bigint): bigint | string {
  const r = device.translate(endpoint, iova, "read");
  return r.ok ? r.address : r.fault.reason;
}
