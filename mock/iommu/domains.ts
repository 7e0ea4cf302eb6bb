/**
 * The mock IOMMU's domains and endpoint attachments (virtio 1.3 §5.13.6.3, §5.13.6.4): which
 * endpoint is in which domain, domains that come into being on their first ATTACH and cease
 * to exist (mappings and all) when their last endpoint leaves.
 *
 * @module
 */

import { IntervalMap } from "../../util/interval_map.ts";
import type { ResolvedRegion } from "./options.ts";

/** One domain of the mock device. */
export interface MockDomain {
  /** Domain ID. */
  readonly id: number;
  /** Whether it was created with ATTACH_F_BYPASS (identity, no mappings). */
  readonly bypass: boolean;
  /** IDs of the endpoints attached to it, never empty while the domain exists. */
  readonly endpoints: Set<number>;
  /** Its mappings; null for a bypass domain. */
  readonly mappings: IntervalMap | null;
}

/** One endpoint of the mock device. */
export interface MockEndpoint {
  /** Endpoint ID. */
  readonly id: number;
  /** Its reserved regions. */
  readonly regions: readonly ResolvedRegion[];
  /** The domain it is attached to, or null. */
  domain: MockDomain | null;
  /** Whether it was attached since the last reset (QEMU 7.2 only knows those, see translate). */
  attachedSinceReset: boolean;
}

/** Domains and endpoints, with attach/detach as state operations (no status policy). */
export class IommuDomains {
  #domains = new Map<number, MockDomain>();
  #endpoints = new Map<number, MockEndpoint>();

  /** Creates the state for the given endpoints, all unattached. */
  constructor(endpoints: ReadonlyMap<number, readonly ResolvedRegion[]>) {
    for (const [id, regions] of endpoints) {
      this.#endpoints.set(id, { id, regions, domain: null, attachedSinceReset: false });
    }
  }

  /** The endpoint with ID `id`, or undefined when the device does not manage it. */
  endpoint(id: number): MockEndpoint | undefined {
    return this.#endpoints.get(id);
  }

  /** The existing domain with ID `id`, or undefined. */
  domain(id: number): MockDomain | undefined {
    return this.#domains.get(id);
  }

  /** All existing domains. */
  allDomains(): IterableIterator<MockDomain> {
    return this.#domains.values();
  }

  /** All endpoints. */
  allEndpoints(): IterableIterator<MockEndpoint> {
    return this.#endpoints.values();
  }

  /**
   * Puts `endpoint` into domain `id`, creating the domain (as a bypass domain when `bypass`)
   * if it does not exist. Detaches it from its previous domain first (the implicit DETACH of
   * §5.13.6.3). The caller has checked that an existing domain's bypass flag matches.
   */
  attach(endpoint: MockEndpoint, id: number, bypass: boolean): MockDomain {
    if (endpoint.domain !== null && endpoint.domain.id === id) return endpoint.domain;
    this.detach(endpoint);
    let domain = this.#domains.get(id);
    if (domain === undefined) {
      domain = { id, bypass, endpoints: new Set(), mappings: bypass ? null : new IntervalMap() };
      this.#domains.set(id, domain);
    }
    domain.endpoints.add(endpoint.id);
    endpoint.domain = domain;
    endpoint.attachedSinceReset = true;
    return domain;
  }

  /**
   * Takes `endpoint` out of its domain, if any; the domain ceases to exist when it was the
   * last endpoint (§5.13.6.4), which drops its mappings.
   */
  detach(endpoint: MockEndpoint): void {
    const domain = endpoint.domain;
    if (domain === null) return;
    domain.endpoints.delete(endpoint.id);
    endpoint.domain = null;
    if (domain.endpoints.size === 0) {
      domain.mappings?.clear();
      this.#domains.delete(domain.id);
    }
  }

  /** Destroys every domain and leaves every endpoint unattached (device reset). */
  clear(): void {
    for (const ep of this.#endpoints.values()) {
      ep.domain = null;
      ep.attachedSinceReset = false;
    }
    for (const d of this.#domains.values()) d.mappings?.clear();
    this.#domains.clear();
  }
}
