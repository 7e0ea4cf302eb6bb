/** Fixture runners and outcome helpers shared by the iommu_misbehaving_*_test.ts files. */

import { MAP_READ, MAP_WRITE } from "../driver/iommu/device.ts";
import { type Bus, type Fixture, setup } from "./_fixtures.ts";

export const RW = MAP_READ | MAP_WRITE;

/** Settles `p` and returns the rejection reason, or "resolved". */
export function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "resolved", (e: unknown) => e);
}

export async function withFixture(
  kind: Bus,
  body: (f: Fixture) => Promise<void> | void,
  mockOptions: Parameters<typeof setup>[1] = {},
  driverOptions: Parameters<typeof setup>[2] = {},
): Promise<void> {
  const f = await setup(kind, mockOptions, driverOptions);
  try {
    await body(f);
  } finally {
    await f.iommu.close();
  }
}
