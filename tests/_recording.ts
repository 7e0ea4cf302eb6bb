/**
 * A register window that logs every access it forwards, for tests that check access order,
 * width and offset.
 *
 * @module
 */

import type { RegisterSpace } from "../transport/registers.ts";

/** One logged access. */
export interface Access {
  /** "r" or "w". */
  op: "r" | "w";
  /** Width in bits. */
  bits: 8 | 16 | 32;
  /** Offset in the window. */
  offset: number;
  /** Value read or written. */
  value: number;
}

/** Forwards to `inner` and logs into {@link RecordingRegisters.log}. */
export class RecordingRegisters implements RegisterSpace {
  /** Accesses so far. */
  readonly log: Access[] = [];
  readonly #inner: RegisterSpace;

  /** Wraps `inner`. */
  constructor(inner: RegisterSpace) {
    this.#inner = inner;
  }

  /** Window size. */
  get size(): number {
    return this.#inner.size;
  }

  /** Logged writes only. */
  writes(): Access[] {
    return this.log.filter((a) => a.op === "w");
  }

  read8(offset: number): number {
    return this.#r(8, offset, this.#inner.read8(offset));
  }
  read16(offset: number): number {
    return this.#r(16, offset, this.#inner.read16(offset));
  }
  read32(offset: number): number {
    return this.#r(32, offset, this.#inner.read32(offset));
  }
  write8(offset: number, value: number): void {
    this.log.push({ op: "w", bits: 8, offset, value });
    this.#inner.write8(offset, value);
  }
  write16(offset: number, value: number): void {
    this.log.push({ op: "w", bits: 16, offset, value });
    this.#inner.write16(offset, value);
  }
  write32(offset: number, value: number): void {
    this.log.push({ op: "w", bits: 32, offset, value });
    this.#inner.write32(offset, value);
  }
  #r(bits: 8 | 16 | 32, offset: number, value: number): number {
    this.log.push({ op: "r", bits, offset, value });
    return value;
  }
}
