/**
 * QEMU's `edu` device (hw/misc/edu.c, docs/specs/edu.rst) as the DMA oracle: a 4 KiB buffer
 * and a DMA engine programmed through BAR0. Its DMA goes through the IOMMU like any endpoint's,
 * so what arrives in memory shows what the virtio-iommu really translated.
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";
import {
  EDU_ADDRESS_LIMIT,
  EDU_ALIVE,
  EDU_BUFFER,
  EDU_BUFFER_SIZE,
  EDU_CMD_RUN,
  EDU_CMD_TO_RAM,
  EDU_DMA_CMD,
  EDU_DMA_COUNT,
  EDU_DMA_DST,
  EDU_DMA_SRC,
} from "../spec/edu.ts";
import type { DmaEngine } from "./types.ts";

/** Options of {@link EduDmaEngine}. */
export interface EduOptions {
  /** How long one DMA may take, in ms (default 5000; edu runs each after a 100 ms timer). */
  timeoutMs?: number;
}

/**
 * Programs one edu DMA of `count` bytes from `src` to `dst` (each written as two halves, low first) with command
 * `cmd` (EDU_CMD_TO_RAM, EDU_CMD_IRQ) and starts it; does not wait (see {@link eduWaitDma}).
 */
export function eduStartDma(
  bar: RegisterSpace,
  src: bigint,
  dst: bigint,
  count: number,
  cmd: number,
): void {
  bar.write32(EDU_DMA_SRC, Number(src & 0xffff_ffffn));
  bar.write32(EDU_DMA_SRC + 4, Number(src >> 32n));
  bar.write32(EDU_DMA_DST, Number(dst & 0xffff_ffffn));
  bar.write32(EDU_DMA_DST + 4, Number(dst >> 32n));
  bar.write32(EDU_DMA_COUNT, count);
  bar.write32(EDU_DMA_COUNT + 4, 0);
  bar.write32(EDU_DMA_CMD, cmd | EDU_CMD_RUN);
}

/**
 * Waits, reading the command register every 2 ms, until edu's DMA is done (bit 0 clears);
 * returns the wait in ms. Throws when it takes longer than `timeoutMs`.
 */
export async function eduWaitDma(bar: RegisterSpace, timeoutMs = 5000): Promise<number> {
  const start = performance.now();
  while ((bar.read32(EDU_DMA_CMD) & EDU_CMD_RUN) !== 0) {
    if (performance.now() - start > timeoutMs) {
      throw new Error(`edu's DMA did not finish within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return Math.round(performance.now() - start);
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
    eduStartDma(this.#bar, src, dst, length, cmd);
    await eduWaitDma(this.#bar, this.#timeoutMs);
  }
}
