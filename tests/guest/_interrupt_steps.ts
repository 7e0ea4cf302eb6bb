/**
 * Measurements the guest scripts make of interrupts against polling with edu: how long a fault
 * takes from edu's DMA command to the listener, and how many timers the wait made (an
 * interrupt-driven wait makes one: its own deadline). What idling costs is measured by
 * tools/idle_cost.ts, re-exported here. Runs inside the guest.
 *
 * @module
 */

import type { RegisterSpace } from "../../transport/registers.ts";
import type { VirtioIommu } from "../../driver/iommu/device.ts";
import { countTimers } from "../../tools/idle_cost.ts";

export { countTimers, idleCost, median } from "../../tools/idle_cost.ts";
export { EDU_DMA_DELAY_MS } from "../../spec/edu.ts";
import { EDU_BUFFER, EDU_CMD_TO_RAM } from "../../spec/edu.ts";
import { eduStartDma, eduWaitDma } from "../../conform/edu.ts";

/** Starts an edu DMA of 256 bytes from its buffer to `iova`, without waiting for it. */
export function eduStartWrite(bar: RegisterSpace, iova: number): void {
  eduStartDma(bar, BigInt(EDU_BUFFER), BigInt(iova), 256, EDU_CMD_TO_RAM);
}

/** Waits (polling edu's register every 2 ms, outside any measurement) until its DMA is done. */
export async function eduWait(bar: RegisterSpace): Promise<void> {
  await eduWaitDma(bar, 5000);
}

/** One fault's way from edu's DMA command to the driver's listener. */
export interface FaultTrip {
  /** From the DMA command to the onFault() listener (edu adds its 100 ms timer first), ms. */
  toListenerMs: number;
  /** Timers the nextFault() wait made. */
  timers: number;
  /** The fault's address. */
  address: bigint | null;
}

/**
 * Sends edu's DMA at the unmapped `iova` `samples` times (its endpoint attached, nothing
 * mapped there) and times each fault from the command to the listener, with nextFault()
 * waiting meanwhile. The burst each DMA causes is drained before the next.
 */
export async function faultTrips(
  iommu: VirtioIommu,
  bar: RegisterSpace,
  iova: number,
  samples: number,
): Promise<FaultTrip[]> {
  const trips: FaultTrip[] = [];
  let heardAt = 0;
  const unsubscribe = iommu.onFault(() => {
    if (heardAt === 0) heardAt = performance.now();
  });
  try {
    for (let i = 0; i < samples; i++) {
      iommu.takeFaults();
      heardAt = 0;
      const start = performance.now();
      eduStartWrite(bar, iova);
      const { result, timers } = await countTimers(() => iommu.nextFault(3000));
      trips.push({
        toListenerMs: heardAt === 0 ? -1 : Math.round((heardAt - start) * 100) / 100,
        timers,
        address: result?.address ?? null,
      });
      await eduWait(bar);
      await new Promise((resolve) => setTimeout(resolve, 20));
      iommu.takeFaults();
    }
  } finally {
    unsubscribe();
  }
  return trips;
}
