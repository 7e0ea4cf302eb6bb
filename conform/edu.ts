/**
 * QEMU's `edu` device (hw/misc/edu.c, docs/specs/edu.rst) as the DMA oracle: a 4 KiB buffer
 * and a DMA engine programmed through BAR0. Its DMA goes through the IOMMU like any endpoint's,
 * so what arrives in memory shows what the virtio-iommu really translated.
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";
import type { DmaEngine } from "./types.ts";

/** BAR0: liveness check; reads back the bitwise inverse of what was written. */
const EDU_ALIVE = 0x04;
/** BAR0: DMA source address (64-bit). */
const EDU_DMA_SRC = 0x80;
/** BAR0: DMA destination address (64-bit). */
const EDU_DMA_DST = 0x88;
/** BAR0: DMA byte count (64-bit). */
const EDU_DMA_COUNT = 0x90;
/** BAR0: DMA command; bit 0 starts it and reads 1 while it runs, bit 1 = edu → RAM. */
const EDU_DMA_CMD = 0x98;
const EDU_CMD_RUN = 0x1;
const EDU_CMD_TO_RAM = 0x2;
/** Where edu's buffer sits in its own DMA address space. */
const EDU_BUFFER = 0x40000;
/** Bytes in edu's buffer. */
const EDU_BUFFER_SIZE = 4096;
/** edu's default DMA mask: 28 bits. */
const EDU_ADDRESS_LIMIT = 1n << 28n;

/** Options of {@link EduDmaEngine}. */
export interface EduOptions {
  /** How long one DMA may take, in ms (default 5000; edu runs each after a 100 ms timer). */
  timeoutMs?: number;
}

/** Waits `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** edu behind `endpoint`, driven through its BAR0 `bar`. */
export class EduDmaEngine implements DmaEngine {
  /** The endpoint ID of edu's requests (its BDF on q35). */
  readonly endpoint: number;
  /** edu clamps addresses to 28 bits. */
  readonly addressLimit: bigint = EDU_ADDRESS_LIMIT;
  /** edu's buffer. */
  readonly bufferSize: number = EDU_BUFFER_SIZE;
  #bar: RegisterSpace;
  #timeoutMs: number;

  /** Wraps edu's BAR0; throws TypeError when the liveness register does not answer like edu's. */
  constructor(bar: RegisterSpace, endpoint: number, options: EduOptions = {}) {
    bar.write32(EDU_ALIVE, 0x12345678);
    if (bar.read32(EDU_ALIVE) !== (~0x12345678 >>> 0)) {
      throw new TypeError("BAR0 does not behave like edu's (liveness register)");
    }
    this.#bar = bar;
    this.endpoint = endpoint;
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /** edu reads `length` bytes at `iova` into its buffer. */
  read(iova: bigint, length: number): Promise<void> {
    this.#check(iova, length);
    return this.#dma(iova, BigInt(EDU_BUFFER), length, 0);
  }

  /** edu writes `length` bytes of its buffer to `iova`. */
  write(iova: bigint, length: number): Promise<void> {
    this.#check(iova, length);
    return this.#dma(BigInt(EDU_BUFFER), iova, length, EDU_CMD_TO_RAM);
  }

  /** edu stops QEMU (hw_error) on a transfer outside its buffer: refuse those here. */
  #check(iova: bigint, length: number): void {
    if (!Number.isInteger(length) || length <= 0 || length > EDU_BUFFER_SIZE) {
      throw new RangeError(`edu cannot move ${length} bytes: its buffer holds ${EDU_BUFFER_SIZE}`);
    }
    if (iova < 0n || iova + BigInt(length) > EDU_ADDRESS_LIMIT) {
      throw new RangeError(`edu cannot reach iova 0x${iova.toString(16)}: above its 28-bit mask`);
    }
  }

  async #dma(src: bigint, dst: bigint, length: number, cmd: number): Promise<void> {
    const bar = this.#bar;
    bar.write32(EDU_DMA_SRC, Number(src & 0xffff_ffffn));
    bar.write32(EDU_DMA_SRC + 4, Number(src >> 32n));
    bar.write32(EDU_DMA_DST, Number(dst & 0xffff_ffffn));
    bar.write32(EDU_DMA_DST + 4, Number(dst >> 32n));
    bar.write32(EDU_DMA_COUNT, length);
    bar.write32(EDU_DMA_COUNT + 4, 0);
    const start = performance.now();
    bar.write32(EDU_DMA_CMD, cmd | EDU_CMD_RUN);
    while ((bar.read32(EDU_DMA_CMD) & EDU_CMD_RUN) !== 0) {
      if (performance.now() - start > this.#timeoutMs) {
        throw new Error(`edu's DMA did not finish within ${this.#timeoutMs} ms`);
      }
      await sleep(2);
    }
  }
}
