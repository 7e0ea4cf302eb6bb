/**
 * The driver-side checks of caller input (virtio 1.3 §5.13.6): what the driver MUST NOT send
 * is refused with an IommuError of status "DRIVER" before anything reaches the device. The
 * checked range is left in mutable halves so the request path needs no allocation or bigint.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import { formatAddress } from "../../util/hex.ts";
import {
  type Address,
  compare,
  type Halves,
  halves,
  isAligned,
  lastOf,
  split,
} from "../../util/u64.ts";
import { granuleShift, type IommuConfig } from "./config.ts";
import { checkAddress, checkU32 } from "./arguments.ts";
import { VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE } from "../../spec/iommu.ts";
import { driverError } from "./errors.ts";

const TWO_32 = 0x1_0000_0000;
/** The access flags of a MAP (§5.13.6.5): a mapping needs at least one. */
const ACCESS = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;

/** Checks requests against one device's configuration. */
export class RequestChecks {
  /** First address of the range last checked by {@link RequestChecks.range}. */
  readonly iova: Halves = halves();
  /** Last address (inclusive) of that range. */
  readonly last: Halves = halves();
  /** Its physical address (MAP only). */
  readonly phys: Halves = halves();
  /** The granule: log2 of the smallest page size (§5.13.4: lowest bit of page_size_mask). */
  readonly granule: number;
  #size = halves();
  #scratch = halves();
  #inputStart = halves();
  #inputEnd = halves();
  #domainStart: number;
  #domainEnd: number;
  #mapFlags: number;
  /** Granule − 1 when {@link RequestChecks.range} may take its fast path, else −1. */
  #smallMask: number;

  /** Checks for a device with `config`, whose MAP accepts the `mapFlags` bits. */
  constructor(config: IommuConfig, mapFlags: number) {
    this.granule = granuleShift(config.pageSizeMask);
    split(config.inputStart, "input start", this.#inputStart);
    split(config.inputEnd, "input end", this.#inputEnd);
    this.#smallMask = this.granule <= 30 && config.inputStart === 0n &&
        config.inputEnd >= 0xffff_ffffn
      ? (1 << this.granule) - 1
      : -1;
    this.#domainStart = config.domainStart;
    this.#domainEnd = config.domainEnd;
    this.#mapFlags = mapFlags;
  }

  /** An endpoint or domain ID must be a u32 (they are le32 on the wire). */
  id(value: number, what: string): void {
    if (typeof value !== "number" || (value >>> 0) !== value) checkU32(value, what);
  }

  /** §5.13.6.3.1: with DOMAIN_RANGE the driver MUST NOT send a domain outside it. */
  domain(domain: number): void {
    if (
      typeof domain !== "number" || (domain >>> 0) !== domain || domain < this.#domainStart ||
      domain > this.#domainEnd
    ) {
      this.#refuseDomain(domain);
    }
  }

  /**
   * MAP flags: READ, WRITE, and MMIO only with F_MMIO (§5.13.6.5.1); and at least one of READ
   * and WRITE: the spec allows a mapping without access, but nothing could use it, so the
   * driver takes flags 0 for a caller's mistake rather than map it silently.
   */
  flags(flags: number): void {
    if (
      typeof flags !== "number" || (flags >>> 0) !== flags || (flags & ~this.#mapFlags) !== 0 ||
      (flags & ACCESS) === 0
    ) {
      this.#refuseFlags(flags);
    }
  }

  #refuseDomain(domain: number): never {
    checkU32(domain, "domain");
    throw driverError(
      `Cannot use domain ${domain}: outside the device's domain range ` +
        `${this.#domainStart}-${this.#domainEnd}`,
    );
  }

  #refuseFlags(flags: number): never {
    checkU32(flags, "flags");
    if ((flags & ACCESS) === 0 && (flags & ~this.#mapFlags) === 0) {
      throw driverError(
        `Invalid flags ${hex(flags)}: expected MAP_READ, MAP_WRITE or both (a mapping without ` +
          `access is refused)`,
      );
    }
    throw driverError(
      `Cannot map with flags ${hex(flags)}: the device accepts ${
        hex(this.#mapFlags)
      } (MMIO needs VIRTIO_IOMMU_F_MMIO)`,
    );
  }

  /**
   * Checks iova/size (and phys, for MAP) and leaves them in {@link RequestChecks.iova},
   * {@link RequestChecks.last} and {@link RequestChecks.phys}. §5.13.6.5.1: aligned to the
   * granule, inside input_range, no wrap past 2^64.
   */
  range(verb: string, iova: Address, size: Address, phys?: Address): void {
    // Fast path, the same rules for the common case: numbers below 2^32, a granule mask that
    // fits an int, and an input range covering [0, 2^32). Anything else takes the general path.
    const mask = this.#smallMask;
    if (
      mask >= 0 && typeof iova === "number" && typeof size === "number" &&
      (iova >>> 0) === iova && (size >>> 0) === size && size !== 0 &&
      iova + size <= TWO_32 && (iova & mask) === 0 && (size & mask) === 0
    ) {
      this.iova.lo = iova;
      this.iova.hi = 0;
      this.last.lo = iova + size - 1;
      this.last.hi = 0;
      if (phys === undefined) return;
      // phys + size − 1 cannot pass 2^64 when both are below 2^32.
      if (typeof phys === "number" && (phys >>> 0) === phys && (phys & mask) === 0) {
        this.phys.lo = phys;
        this.phys.hi = 0;
        return;
      }
    }
    this.#rangeGeneral(verb, iova, size, phys);
  }

  /** {@link RequestChecks.range} for any input (kept apart so the fast path stays inlinable). */
  #rangeGeneral(verb: string, iova: Address, size: Address, phys?: Address): void {
    const a = checkAddress(iova, "iova", this.iova);
    const s = checkAddress(size, "size", this.#size);
    if (!isAligned(a.lo, a.hi, this.granule)) {
      throw driverError(
        `Cannot ${verb} iova ${
          formatAddress(a.lo, a.hi)
        }: not aligned to page size ${this.#page()}`,
      );
    }
    if (!isAligned(s.lo, s.hi, this.granule) || (s.lo === 0 && s.hi === 0)) {
      throw driverError(
        `Cannot ${verb} size ${
          formatAddress(s.lo, s.hi)
        }: not a non-zero multiple of page size ${this.#page()}`,
      );
    }
    const b = this.last;
    if (!lastOf(a.lo, a.hi, s.lo, s.hi, b)) {
      throw driverError(
        `Cannot ${verb} iova ${formatAddress(a.lo, a.hi)} size ${
          formatAddress(s.lo, s.hi)
        }: range passes 2^64`,
      );
    }
    const lo = this.#inputStart, hi = this.#inputEnd;
    if (compare(a.lo, a.hi, lo.lo, lo.hi) < 0 || compare(b.lo, b.hi, hi.lo, hi.hi) > 0) {
      throw driverError(
        `Cannot ${verb} ${formatAddress(a.lo, a.hi)}-${
          formatAddress(b.lo, b.hi)
        }: outside the input range ` +
          `${formatAddress(lo.lo, lo.hi)}-${formatAddress(hi.lo, hi.hi)}`,
      );
    }
    if (phys === undefined) return;
    const p = checkAddress(phys, "phys", this.phys);
    if (!isAligned(p.lo, p.hi, this.granule)) {
      throw driverError(
        `Cannot ${verb} phys ${
          formatAddress(p.lo, p.hi)
        }: not aligned to page size ${this.#page()}`,
      );
    }
    if (!lastOf(p.lo, p.hi, s.lo, s.hi, this.#scratch)) {
      throw driverError(`Cannot ${verb} phys ${formatAddress(p.lo, p.hi)}: range passes 2^64`);
    }
  }

  /** The granule as `0x…`, for messages. */
  #page(): string {
    return hex(2n ** BigInt(this.granule));
  }
}
