/**
 * A tiny device model for transport and harness tests: every chain's readable bytes are copied
 * into its writable part, and the chain is returned with the number of bytes written.
 *
 * @module
 */

import type { DeviceContext, DeviceModel } from "../mock/device.ts";

/** VERSION_1 | INDIRECT_DESC | EVENT_IDX. */
export const ECHO_FEATURES: bigint = (1n << 32n) | (1n << 28n) | (1n << 29n);
/** The u32 at config offset 0. */
export const ECHO_CONFIG_MAGIC = 0x12345678;

/** Options for {@link EchoDevice}. */
export interface EchoDeviceOptions {
  /** Virtio device ID; default 42. */
  deviceId?: number;
  /** Offered features; default {@link ECHO_FEATURES}. */
  features?: bigint;
  /** Queue maxima; default [8, 4, 0] (queue 2 absent). */
  queueSizes?: number[];
  /** When true, notify() only records the index; call process() by hand. */
  manual?: boolean;
}

/** The echo device. Config: u32 magic at 0, a writable u8 at 4, a u16 at 6. */
export class EchoDevice implements DeviceModel {
  /** Virtio device ID. */
  readonly deviceId: number;
  /** Offered features. */
  readonly features: bigint;
  /** Queue maxima. */
  readonly queueSizes: readonly number[];
  /** Device config size. */
  readonly configSize = 8;
  /** The context the core gave us. */
  context: DeviceContext | null = null;
  /** Number of resets seen. */
  resets = 0;
  /** Queue indices notified, in order. */
  notified: number[] = [];
  /** The config bytes. */
  readonly config: DataView = new DataView(new ArrayBuffer(8));
  #manual: boolean;

  /** Creates the device. */
  constructor(options: EchoDeviceOptions = {}) {
    this.deviceId = options.deviceId ?? 42;
    this.features = options.features ?? ECHO_FEATURES;
    this.queueSizes = options.queueSizes ?? [8, 4, 0];
    this.#manual = options.manual ?? false;
    this.config.setUint32(0, ECHO_CONFIG_MAGIC, true);
    this.config.setUint16(6, 0xbeef, true);
  }

  /** Keeps the context. */
  attach(context: DeviceContext): void {
    this.context = context;
  }

  /** Reads config. */
  readConfig(offset: number, width: number): number {
    if (width === 1) return this.config.getUint8(offset);
    if (width === 2) return this.config.getUint16(offset, true);
    return this.config.getUint32(offset, true);
  }

  /** Only the byte at 4 is writable. */
  writeConfig(offset: number, width: number, value: number): void {
    if (offset === 4 && width === 1) this.config.setUint8(4, value);
  }

  /** Records the notification and echoes unless manual. */
  notify(index: number): void {
    this.notified.push(index);
    if (!this.#manual) this.process(index);
  }

  /** Echoes every pending chain of queue `index`, then interrupts. Returns chains handled. */
  process(index: number): number {
    const ctx = this.context!;
    const q = ctx.queue(index);
    if (!q) return 0;
    const bytes = ctx.memory.bytes;
    let n = 0;
    for (let chain = q.pop(); chain !== null; chain = q.pop()) {
      let written = 0;
      let w = 0;
      let wOff = 0;
      for (let r = 0; r < chain.readableCount; r++) {
        const seg = chain.readable[r];
        for (let i = 0; i < seg.length && w < chain.writableCount; i++) {
          const dst = chain.writable[w];
          bytes[dst.offset + wOff] = bytes[seg.offset + i];
          written++;
          if (++wOff === dst.length) {
            w++;
            wOff = 0;
          }
        }
      }
      q.push(chain.head, written);
      n++;
    }
    if (n > 0) ctx.interrupt(index);
    return n;
  }

  /** Counts resets. */
  reset(): void {
    this.resets++;
  }
}
