/** The FaultyDevice rig of the robustness_*_test.ts files, per ring layout. */

import assert from "node:assert/strict";
import {
  MAP_READ,
  MAP_WRITE,
  VirtioIommu,
  type VirtioIommuOptions,
} from "../driver/iommu/device.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { type FaultPlan, FaultyDevice } from "../mock/iommu/faults.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import { type Kind, plug } from "./_fixtures.ts";
import { ringMock } from "./_ring_layouts.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";

export const RW = MAP_READ | MAP_WRITE;
export const NONE: FaultPlan = { kinds: [] };

/** A driver on the mock behind a {@link FaultyDevice}. */
export interface Rig {
  iommu: VirtioIommu;
  device: MockIommuDevice;
  faulty: FaultyDevice;
}

export async function rigOn(
  ring: RingLayout,
  plan: FaultPlan = NONE,
  mock: MockIommuOptions = {},
  driver: VirtioIommuOptions = {},
  kind: Kind = "mmio",
): Promise<Rig> {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice(ringMock(ring, { bypass: false, ...mock }));
  const faulty = new FaultyDevice(device, plan);
  const { transport } = plug(kind, faulty, memory);
  const iommu = await VirtioIommu.create(transport, memory, { timeoutMs: 100, ...driver });
  return { iommu, device, faulty };
}

export async function withRigOn(
  ring: RingLayout,
  body: (r: Rig) => Promise<void>,
  plan: FaultPlan = NONE,
  mock: MockIommuOptions = {},
  driver: VirtioIommuOptions = {},
): Promise<void> {
  const r = await rigOn(ring, plan, mock, driver);
  try {
    await body(r);
  } finally {
    await r.iommu.close();
  }
}

/** Settles `p`: "ok" or the rejection reason. */
export function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => "ok", (e: unknown) => e);
}

/** Fails unless `p` settles within `ms` (the no-hang guarantee). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** The device and the driver agree on domain 1's mappings. */
export function sameMappings(r: Rig, domain = 1): void {
  const device = r.device.mappings(domain).map((m) => [m.start, m.end, m.phys, m.flags]);
  const driver = r.iommu.mappings(domain).map((m) => [m.iova, m.last, m.phys, m.flags]);
  assert.deepEqual(device, driver);
}

/** The per-ring helpers: `test` registers, `rig` and `withRig` build on `ring`. */
export function onRing(ring: RingLayout) {
  /** Registers a test, named with the ring layout unless it is the split one. */
  const test = (name: string, fn: () => Promise<void>): void => {
    Deno.test(ring === "split" ? name : `[packed] ${name}`, fn);
  };
  const rig = (
    plan?: FaultPlan,
    mock?: MockIommuOptions,
    driver?: VirtioIommuOptions,
    kind?: Kind,
  ): Promise<Rig> => rigOn(ring, plan, mock, driver, kind);
  const withRig = (
    body: (r: Rig) => Promise<void>,
    plan?: FaultPlan,
    mock?: MockIommuOptions,
    driver?: VirtioIommuOptions,
  ): Promise<void> => withRigOn(ring, body, plan, mock, driver);

  return { test, rig, withRig };
}
