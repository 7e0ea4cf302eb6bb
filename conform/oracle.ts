/**
 * The translation oracle: a DMA engine behind one endpoint ({@link DmaEngine}, QEMU's edu on a
 * real machine) moves bytes through the IOMMU, and pages the suite owns show whether they
 * arrived. Reads and writes are checked in two steps because the engine keeps what it read in
 * a buffer of its own:
 *
 * - a read through IOVA X: the engine reads X into its buffer, then writes the buffer out
 *   through a staging mapping the suite knows works; the staging page shows what was read;
 * - a write through X: the engine first loads a known pattern through a staging mapping, then
 *   writes it to X; the page behind X shows whether it arrived.
 *
 * Accesses that should be blocked are probed with reads wherever possible: a read that a buggy
 * device lets through changes nothing in the machine, a write could land anywhere.
 *
 * @module
 */

import {
  CONFIG_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
} from "../spec/iommu.ts";
import { type DmaRegion, regionAddress } from "../transport/dma.ts";
import { type CheckContext, describe } from "./context.ts";
import { mapRequest } from "./requests.ts";
import type { FaultRecord, RawSession } from "./session.ts";
import { type DmaEngine, PreconditionError } from "./types.ts";

/** Bytes moved by each probe DMA. */
export const DMA_LENGTH = 64;
/** IOVAs of the probes are multiples of 2 MiB (aligned for any granule up to 2 MiB). */
export const IOVA_STEP = 0x20_0000n;
/** The staging mapping the engine reads its known pattern from. */
const STAGE_SRC = 60n * IOVA_STEP;
/** The staging mapping the engine writes its buffer out to. */
const STAGE_DST = 61n * IOVA_STEP;
/** Byte the page behind a write probe holds before the write. */
const UNTOUCHED = 0x5a;

/** The IOVA of probe slot `k` (1 to 59; 60 and 61 are the staging slots). */
export function slot(k: number): bigint {
  return BigInt(k) * IOVA_STEP;
}

/** `length` bytes of a pattern no two seeds share, never all zero. */
export function pattern(seed: number, length = DMA_LENGTH): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 13 + seed * 29 + 7) & 0xff) | 1;
  return out;
}

/** Whether `bytes` starts with `expected`. */
export function startsWith(bytes: Uint8Array, expected: Uint8Array): boolean {
  for (let i = 0; i < expected.length; i++) if (bytes[i] !== expected[i]) return false;
  return true;
}

/** Turns `bypass` off when the device has the field, so unattached endpoints are translated. */
export async function bypassOff(session: RawSession): Promise<void> {
  if (((session.offered >> VIRTIO_IOMMU_F_BYPASS_CONFIG) & 1n) === 0n) return;
  if (((session.negotiated >> VIRTIO_IOMMU_F_BYPASS_CONFIG) & 1n) === 0n) {
    throw new PreconditionError("BYPASS_CONFIG is offered but was not negotiated");
  }
  session.transport.writeConfig8(CONFIG_BYPASS, 0);
  await Promise.resolve();
  if ((session.transport.readConfig8(CONFIG_BYPASS) & 1) !== 0) {
    throw new PreconditionError("Writing 0 to bypass did not turn it off");
  }
}

/** DMA through the oracle engine, with pages of the suite's own. */
export class DmaProbe {
  /** The engine. */
  readonly engine: DmaEngine;
  /** Bytes per mapping: the device's granule, at least 4 KiB. */
  readonly granule: bigint;
  #ctx: CheckContext;
  #session: RawSession;
  #pages: DmaRegion[] = [];
  #stageSrc: DmaRegion | null = null;
  #stageDst: DmaRegion | null = null;
  #loaded = pattern(0);

  private constructor(ctx: CheckContext, session: RawSession, engine: DmaEngine, granule: bigint) {
    this.#ctx = ctx;
    this.#session = session;
    this.engine = engine;
    this.granule = granule;
  }

  /**
   * The probe for `session`, or a {@link PreconditionError} when there is no oracle or the
   * device's granule is larger than the 2 MiB probe slots. Turns bypass off.
   */
  static async create(ctx: CheckContext, session: RawSession): Promise<DmaProbe> {
    const engine = ctx.target.oracle;
    if (engine === undefined) throw new PreconditionError("No DMA oracle");
    const mask = session.config().pageSizeMask;
    const low = mask & -mask;
    const granule = low < 4096n ? 4096n : low;
    if (mask === 0n || granule > IOVA_STEP) {
      throw new PreconditionError(
        `The granule of page_size_mask 0x${mask.toString(16)} is unusable`,
      );
    }
    if (STAGE_DST + IOVA_STEP > engine.addressLimit) {
      throw new PreconditionError("The engine cannot reach the staging IOVAs");
    }
    await bypassOff(session);
    const probe = new DmaProbe(ctx, session, engine, granule);
    ctx.onClose(() => probe.#free());
    return probe;
  }

  /** A fresh page of one granule, filled with `fill`. */
  page(fill = 0): DmaRegion {
    const region = this.#ctx.target.dma.alloc(Number(this.granule), Number(this.granule));
    region.bytes.fill(fill);
    this.#pages.push(region);
    return region;
  }

  /**
   * A page whose physical address the engine can reach as an IOVA (for identity checks), or
   * null when none of a few tries lands below the engine's limit.
   */
  lowPage(): DmaRegion | null {
    const tries: DmaRegion[] = [];
    for (let i = 0; i < 16; i++) {
      const p = this.page();
      if (regionAddress(p) + this.granule <= this.engine.addressLimit) return p;
      tries.push(p);
    }
    return null;
  }

  /**
   * Maps `granules` granules from `iova` to `page` in `domain` with `flags`, requiring OK (a
   * setup step).
   */
  async map(
    domain: number,
    iova: bigint,
    page: DmaRegion,
    flags: number,
    granules = 1,
  ): Promise<void> {
    const phys = regionAddress(page);
    const answer = await this.#session.send(mapRequest({
      domain,
      virtStart: iova,
      virtEnd: iova + BigInt(granules) * this.granule - 1n,
      physStart: phys,
      flags,
    }));
    if (!answer.answered || answer.status !== 0) {
      throw new PreconditionError(
        `MAP 0x${iova.toString(16)} in domain ${domain}: ${describe(answer)}`,
      );
    }
  }

  /** Maps the staging pages in `domain` (the engine's endpoint must be attached to it). */
  async stage(domain: number): Promise<void> {
    this.#stageSrc ??= this.page();
    this.#stageDst ??= this.page();
    this.#stageSrc.bytes.set(pattern(0));
    await this.map(domain, STAGE_SRC, this.#stageSrc, VIRTIO_IOMMU_MAP_F_READ);
    await this.map(domain, STAGE_DST, this.#stageDst, VIRTIO_IOMMU_MAP_F_WRITE);
  }

  /** Writes the engine's buffer out through the staging mapping and returns what arrived. */
  async bufferOut(): Promise<Uint8Array> {
    const dst = this.#stageDst;
    if (dst === null) throw new Error("DmaProbe.bufferOut() before stage()");
    dst.bytes.fill(0, 0, DMA_LENGTH);
    await this.engine.write(STAGE_DST, DMA_LENGTH);
    return dst.bytes.slice(0, DMA_LENGTH);
  }

  /**
   * Checks that the staging mappings work (a known pattern goes in and comes back out);
   * a {@link PreconditionError} otherwise.
   */
  async baseline(): Promise<void> {
    await this.engine.read(STAGE_SRC, DMA_LENGTH);
    const out = await this.bufferOut();
    if (!startsWith(out, pattern(0))) {
      throw new PreconditionError("DMA through the staging mappings does not work");
    }
    this.#loaded = pattern(0);
  }

  /** Clears the engine's buffer (reads zeros through the staging mapping). */
  async clearBuffer(): Promise<void> {
    const src = this.#stageSrc;
    if (src === null) throw new Error("DmaProbe.clearBuffer() before stage()");
    src.bytes.fill(0, 0, DMA_LENGTH);
    await this.engine.read(STAGE_SRC, DMA_LENGTH);
    src.bytes.set(pattern(0));
  }

  /**
   * A DMA read of `page` through `iova` (the page is filled with pattern `seed` first), then the
   * buffer out through the staging mapping: whether the page's bytes arrived.
   */
  async canRead(iova: bigint, page: DmaRegion, seed: number): Promise<boolean> {
    page.bytes.set(pattern(seed));
    await this.engine.read(iova, DMA_LENGTH);
    return startsWith(await this.bufferOut(), pattern(seed));
  }

  /** A DMA write of the known pattern through `iova`: whether it arrived in `page`. */
  async canWrite(iova: bigint, page: DmaRegion): Promise<boolean> {
    await this.engine.read(STAGE_SRC, DMA_LENGTH);
    this.#loaded = pattern(0);
    page.bytes.fill(UNTOUCHED, 0, DMA_LENGTH);
    await this.engine.write(iova, DMA_LENGTH);
    return startsWith(page.bytes, this.#loaded);
  }

  /** Fault reports that arrived since the last call (waiting a little for the first). */
  faults(): Promise<FaultRecord[]> {
    return this.#session.takeFaults(this.#ctx.quietMs);
  }

  #free(): void {
    for (const p of this.#pages) this.#ctx.target.dma.free(p);
    this.#pages = [];
  }
}
