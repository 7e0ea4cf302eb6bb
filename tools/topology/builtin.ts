/** A draft-layout config space and a fake transport over it, for built-in topology tests. */

import type { Transport } from "../../transport/transport.ts";

/** A little-endian config space that only allows aligned 32-bit reads inside its window. */
export class ConfigSpace {
  /** The bytes. */
  readonly bytes: Uint8Array;
  /** Offsets read, in order. */
  readonly reads: number[] = [];
  #view: DataView;

  /** Creates a zeroed window of `size` bytes. */
  constructor(size = 0x1000) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }

  /** Writes a u32. */
  set32(offset: number, value: number): this {
    this.#view.setUint32(offset, value >>> 0, true);
    return this;
  }

  /** Writes a u16. */
  set16(offset: number, value: number): this {
    this.#view.setUint16(offset, value, true);
    return this;
  }

  /** The 32-bit read the driver is allowed; anything else is a test failure. */
  read32(offset: number): number {
    if (
      !Number.isInteger(offset) || offset % 4 !== 0 || offset < 0 || offset + 4 > this.bytes.length
    ) {
      throw new RangeError(`bad config read at ${offset}`);
    }
    this.reads.push(offset);
    return this.#view.getUint32(offset, true);
  }

  /** Draft `topo_config` at 36/40/44. */
  topo(offset: number, numItems: number, itemLength: number): this {
    return this.set32(36, offset).set32(40, numItems).set32(44, itemLength);
  }

  /** A PCI_RANGE item at `at`. */
  pciRange(
    at: number,
    r: { hierarchy?: number; start: number; end: number; endpointStart: number },
  ): this {
    return this.set16(at, 1).set16(at + 2, r.hierarchy ?? 0).set16(at + 4, r.start).set16(
      at + 6,
      r.end,
    )
      .set32(at + 8, r.endpointStart);
  }

  /** An ENDPOINT item at `at`. */
  endpoint(at: number, r: { endpoint: number; address: bigint }): this {
    this.set16(at, 2).set16(at + 2, 0).set32(at + 4, r.endpoint);
    this.#view.setBigUint64(at + 8, r.address, true);
    return this;
  }
}

/** A fake transport over a {@link ConfigSpace} that records status writes. */
export class FakeTransport implements Transport {
  /** Kind. */
  readonly kind = "pci" as const;
  /** Device ID. */
  readonly deviceId: number = 23;
  /** Status writes in order. */
  readonly statusWrites: number[] = [];
  /** Offered features. */
  features: bigint;
  /** Config generation, bumped by `bumpEvery` reads if set. */
  generation = 0;
  /** Bump the generation on every config read (a device whose config never settles). */
  unstable = false;
  /** Reads of status that still return non-zero after a reset. */
  resetLag = 0;
  #status = 0;
  #lag = 0;
  #config: ConfigSpace;

  /** Creates the transport. */
  constructor(config: ConfigSpace, features: bigint) {
    this.#config = config;
    this.features = features;
  }

  /** Status. */
  getStatus(): number {
    if (this.#lag > 0) {
      this.#lag--;
      return 0x80;
    }
    return this.#status;
  }
  /** Status write. */
  setStatus(status: number): void {
    this.statusWrites.push(status);
    this.#status = status;
    if (status === 0) this.#lag = this.resetLag;
  }
  /** Features. */
  readDeviceFeatures(): bigint {
    return this.features;
  }
  /** Unused. */
  writeDriverFeatures(): void {
    throw new Error("the early probe must not negotiate features");
  }
  /** Generation. */
  configGeneration(): number {
    return this.generation;
  }
  /** Not allowed. */
  readConfig8(): number {
    throw new Error("8-bit config read");
  }
  /** Not allowed. */
  readConfig16(): number {
    throw new Error("16-bit config read");
  }
  /** 32-bit config read. */
  readConfig32(offset: number): number {
    if (this.unstable) this.generation++;
    return this.#config.read32(offset);
  }
  /** Not allowed. */
  writeConfig8(): void {
    throw new Error("config write");
  }
  /** Unused. */
  maxQueueSize(): number {
    return 0;
  }
  /** Unused. */
  enableQueue(): void {
    throw new Error("the early probe must not enable queues");
  }
  /** Unused. */
  notify(): void {}
  /** Unused. */
  resetQueue(): void {
    throw new Error("the early probe must not reset queues");
  }
  /** Unused. */
  queueResetPending(): boolean {
    return false;
  }
  /** Unused. */
  queueEnabled(): boolean {
    return false;
  }
  /** Unused. */
  takeInterrupt(): number {
    return 0;
  }
}
