/**
 * A DMA engine behind one endpoint of the mock virtio-iommu, like QEMU's `edu` behind the real
 * one: a buffer of its own, and reads and writes that go through
 * {@link MockIommuDevice.translate} page by page, so blocked accesses post their faults on the
 * event queue. A blocked read fills that part of the buffer with zeros, as QEMU's unassigned
 * memory reads; a blocked write is dropped.
 *
 * @module
 */

import type { SimulatedMemory } from "../../transport/memory.ts";
import type { MockIommuDevice } from "./device.ts";

/** Bytes in the engine's buffer (edu's size). */
const BUFFER_SIZE = 4096;
/** Accesses are split at these boundaries, one translation each (as QEMU's are per page). */
const PAGE = 4096n;
const U64 = 1n << 64n;

/** Options of {@link MockDmaEngine}. */
export interface MockDmaEngineOptions {
  /** The endpoint its accesses carry (default 0x18: edu's place on QEMU's q35). */
  endpoint?: number;
}

/** A DMA engine at one endpoint of a mock IOMMU; the oracle of the conformance suite. */
export class MockDmaEngine {
  /** The endpoint ID its accesses carry. */
  readonly endpoint: number;
  /** The first address it cannot reach (none: 2^64). */
  readonly addressLimit: bigint = U64;
  /** Bytes in its buffer. */
  readonly bufferSize: number = BUFFER_SIZE;
  /** The buffer (a read fills it, a write copies it out). */
  readonly buffer: Uint8Array = new Uint8Array(BUFFER_SIZE);
  #device: Pick<MockIommuDevice, "translate">;
  #memory: SimulatedMemory;

  /** An engine behind `device`, whose DMA reaches `memory`. */
  constructor(
    device: Pick<MockIommuDevice, "translate">,
    memory: SimulatedMemory,
    options: MockDmaEngineOptions = {},
  ) {
    this.#device = device;
    this.#memory = memory;
    this.endpoint = options.endpoint ?? 0x18;
  }

  /** Reads `length` bytes at `iova` into the buffer. */
  read(iova: bigint, length: number): Promise<void> {
    this.#each(iova, length, "read", (offset, at, n) => {
      if (at < 0) this.buffer.fill(0, offset, offset + n);
      else this.buffer.set(this.#memory.bytes.subarray(at, at + n), offset);
    });
    return Promise.resolve();
  }

  /** Writes the first `length` bytes of the buffer to `iova`. */
  write(iova: bigint, length: number): Promise<void> {
    this.#each(iova, length, "write", (offset, at, n) => {
      if (at >= 0) this.#memory.bytes.set(this.buffer.subarray(offset, offset + n), at);
    });
    return Promise.resolve();
  }

  /** Calls `move` per page of [iova, iova + length) with the memory offset (-1: blocked). */
  #each(
    iova: bigint,
    length: number,
    access: "read" | "write",
    move: (offset: number, at: number, n: number) => void,
  ): void {
    if (!Number.isInteger(length) || length <= 0 || length > BUFFER_SIZE) {
      throw new RangeError(`Cannot move ${length} bytes: the buffer holds ${BUFFER_SIZE}`);
    }
    if (iova < 0n || iova + BigInt(length) > U64) {
      throw new RangeError(`Cannot reach iova 0x${iova.toString(16)}`);
    }
    let offset = 0;
    while (offset < length) {
      const address = iova + BigInt(offset);
      const n = Math.min(length - offset, Number(PAGE - (address % PAGE)));
      const result = this.#device.translate(this.endpoint, address, access);
      let at = -1;
      if (result.ok) {
        at = this.#memory.resolve(
          Number(result.address & 0xffff_ffffn),
          Number(result.address >> 32n),
          n,
        );
      }
      move(offset, at, n);
      offset += n;
    }
  }
}
