/**
 * Ordering (seed 003; Linux VIOT returns -EPROBE_DEFER): a device can appear before the IOMMU
 * that translates it is ready. It is queued, never failed and never silently left
 * untranslated, and handed to the attach callback when its IOMMU comes up. Hot-added devices
 * go through the same path. Pure logic: the caller supplies resolved rows and a callback.
 *
 * @module
 */

import type { ResolvedDevice } from "./resolve.ts";

/** What {@link EndpointRegistry.add} did with a device. */
export type AddOutcome =
  /** Its IOMMU is ready: the callback ran. */
  | "attached"
  /** Its IOMMU is not ready yet: queued. */
  | "deferred"
  /** No IOMMU translates it (no rule, or it is the IOMMU itself): the row's `note` says why. */
  | "untranslated";

/** Called with each device whose IOMMU is ready. Throwing keeps the device queued. */
export type AttachCallback = (device: ResolvedDevice) => void;

/** Queues devices until their IOMMU is ready, then hands them to the attach callback. */
export class EndpointRegistry {
  #attach: AttachCallback;
  #ready = new Set<string>();
  #pending = new Map<string, ResolvedDevice>();
  #attached = new Map<string, ResolvedDevice>();

  /** Creates a registry that hands ready devices to `attach`. */
  constructor(attach: AttachCallback) {
    this.#attach = attach;
  }

  /**
   * Adds a device found at boot or hot-added. Returns `"attached"` when its IOMMU is ready,
   * `"deferred"` when it is queued, `"untranslated"` when no IOMMU translates it. A device
   * already known is replaced (a hot-unplug then re-plug at the same address).
   */
  add(device: ResolvedDevice): AddOutcome {
    this.remove(device.device);
    if (device.endpointId === null || device.iommu === null) return "untranslated";
    if (!this.#ready.has(device.iommu)) {
      this.#pending.set(device.device, device);
      return "deferred";
    }
    this.#pending.set(device.device, device);
    this.#attach(device); // If it throws, the device stays pending.
    this.#pending.delete(device.device);
    this.#attached.set(device.device, device);
    return "attached";
  }

  /** Removes a device (hot-unplug). Returns whether it was known. */
  remove(device: string): boolean {
    return this.#pending.delete(device) || this.#attached.delete(device);
  }

  /**
   * Marks `iommu` ready and hands every device queued for it to the callback, in the order they
   * were added. Devices whose callback throws stay queued; the first error is rethrown after
   * the others were handed out. Returns the devices handed out.
   */
  iommuReady(iommu: string): ResolvedDevice[] {
    this.#ready.add(iommu);
    const handed: ResolvedDevice[] = [];
    let failure: { error: unknown } | null = null;
    for (const device of [...this.#pending.values()]) {
      if (device.iommu !== iommu) continue;
      try {
        this.#attach(device);
      } catch (error) {
        failure ??= { error };
        continue;
      }
      this.#pending.delete(device.device);
      this.#attached.set(device.device, device);
      handed.push(device);
    }
    if (failure !== null) throw failure.error;
    return handed;
  }

  /**
   * Marks `iommu` gone (driver removed or device reset): its attached devices go back to the
   * queue and are handed out again when it is ready once more.
   */
  iommuGone(iommu: string): void {
    this.#ready.delete(iommu);
    for (const [name, device] of this.#attached) {
      if (device.iommu !== iommu) continue;
      this.#attached.delete(name);
      this.#pending.set(name, device);
    }
  }

  /** Whether `iommu` is ready. */
  isReady(iommu: string): boolean {
    return this.#ready.has(iommu);
  }

  /** Devices waiting for their IOMMU (optionally only those of `iommu`), in order added. */
  pending(iommu?: string): ResolvedDevice[] {
    return [...this.#pending.values()].filter((d) => iommu === undefined || d.iommu === iommu);
  }

  /** Devices handed to the callback and not removed since. */
  attached(): ResolvedDevice[] {
    return [...this.#attached.values()];
  }
}
