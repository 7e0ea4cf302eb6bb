/**
 * Fuzz targets for what the driver reads from device registers: the virtio-mmio register file
 * (virtio 1.3 §4.2.2) and the virtio-pci config space, capability list and common config
 * (§4.1.4), through initialisation and a few requests; and the capability walk alone over
 * mutated config bytes.
 *
 * The register targets wrap the real mock device in a {@link HostileRegisters} window: the
 * input is a stream of 32-bit XOR masks, the n-th register read returns the device's value
 * XOR the n-th mask (all zero: an honest device). So mutations of the honest stream change
 * one read at a time (magic, version, features, queue sizes, config, status read-backs,
 * config generation, capability pointers, …). Driver create, ATTACH, MAP, PROBE, UNMAP,
 * DETACH and close must each resolve or reject with a typed error, and every request settles.
 *
 * @module
 */

import { MAP_READ, MAP_WRITE, VirtioIommu } from "../../driver/iommu/device.ts";
import { IommuConfigError } from "../../driver/iommu/config.ts";
import { DeviceResetError, IommuError, RequestTimeoutError } from "../../driver/iommu/errors.ts";
import { ReservedRegionConflictError } from "../../driver/iommu/probe.ts";
import { DeviceInitError, DeviceNeedsResetError } from "../../driver/virtio/init.ts";
import { VirtqueueError } from "../../driver/virtio/virtqueue.ts";
import { MockIommuDevice } from "../../mock/iommu/device.ts";
import { MmioDevice } from "../../mock/mmio_device.ts";
import { PciFunction } from "../../mock/pci_device.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { MmioTransport } from "../../transport/mmio.ts";
import { PciTransport, walkCapabilities } from "../../transport/pci.ts";
import { MemoryRegisters, type RegisterSpace } from "../../transport/registers.ts";
import { TransportError } from "../../transport/transport.ts";
import type { Transport } from "../../transport/transport.ts";
import { FuzzCrash, type FuzzTarget, type Outcome } from "./engine.ts";

/** A register window whose reads are XORed with masks taken from a stream, one per read. */
export class HostileRegisters implements RegisterSpace {
  readonly size: number;
  #inner: RegisterSpace;
  #masks: DataView = new DataView(new ArrayBuffer(0));
  #at = 0;

  /** Wraps `inner`; {@link HostileRegisters.feed} sets the stream. */
  constructor(inner: RegisterSpace) {
    this.#inner = inner;
    this.size = inner.size;
  }

  /** Starts a new stream of masks (shared by every window fed the same view). */
  feed(masks: DataView, at = 0): void {
    this.#masks = masks;
    this.#at = at;
  }

  #mask(): number {
    const m = this.#masks;
    if (this.#at + 4 > m.byteLength) return 0;
    const v = m.getUint32(this.#at, true);
    this.#at += 4;
    return v;
  }

  read8(offset: number): number {
    return (this.#inner.read8(offset) ^ this.#mask()) & 0xff;
  }
  read16(offset: number): number {
    return (this.#inner.read16(offset) ^ this.#mask()) & 0xffff;
  }
  read32(offset: number): number {
    return (this.#inner.read32(offset) ^ this.#mask()) >>> 0;
  }
  write8(offset: number, value: number): void {
    this.#inner.write8(offset, value);
  }
  write16(offset: number, value: number): void {
    this.#inner.write16(offset, value);
  }
  write32(offset: number, value: number): void {
    this.#inner.write32(offset, value);
  }
}

/** Errors a caller of the driver is told to expect from a bad device. */
function isTyped(error: unknown): boolean {
  return error instanceof TransportError || error instanceof DeviceInitError ||
    error instanceof DeviceNeedsResetError || error instanceof IommuError ||
    error instanceof RequestTimeoutError || error instanceof DeviceResetError ||
    error instanceof VirtqueueError || error instanceof IommuConfigError ||
    error instanceof ReservedRegionConflictError;
}

/** One rig: a mock device behind hostile windows, and the transport over them. */
interface Rig {
  memory: SimulatedMemory;
  windows: HostileRegisters[];
  transport: () => Transport;
}

/** Runs create + requests + close on `rig` with the input's masks; counts lost requests. */
async function driveOnce(rig: Rig, input: Uint8Array, lost: { n: number }): Promise<Outcome> {
  const masks = new DataView(input.buffer, input.byteOffset, input.byteLength & ~3);
  // Each window reads its own share of the stream (for PCI: config space, then BAR 4).
  const share = Math.floor(masks.byteLength / rig.windows.length) & ~3;
  rig.windows.forEach((w, i) =>
    w.feed(new DataView(masks.buffer, masks.byteOffset + i * share, share))
  );
  let iommu: VirtioIommu;
  try {
    iommu = await VirtioIommu.create(rig.transport(), rig.memory, { timeoutMs: 20, spinMs: 0 });
  } catch (error) {
    if (isTyped(error)) return "rejected";
    throw error;
  }
  let outcome: Outcome = "ok";
  const settle = async (p: Promise<unknown>): Promise<void> => {
    try {
      await p;
    } catch (error) {
      if (!isTyped(error)) throw error;
      outcome = "rejected";
    }
  };
  const requests = [
    settle(iommu.attach(1, 8)),
    settle(iommu.map(1, 0x10000, 0x20000, 0x1000, MAP_READ | MAP_WRITE)),
    settle(iommu.probe(8)),
    settle(iommu.unmap(1, 0x10000, 0x1000)),
    settle(iommu.detach(1, 8)),
  ];
  let settled = 0;
  for (const r of requests) r.then(() => settled++, () => settled++);
  await Promise.allSettled(requests);
  for (const r of requests) await r; // rethrows an untyped error: a crash
  if (iommu.pending !== 0) {
    lost.n += iommu.pending;
    throw new FuzzCrash(`${iommu.pending} requests still pending after all settled`);
  }
  await settle(iommu.close());
  if (settled !== requests.length) {
    lost.n += requests.length - settled;
    throw new FuzzCrash(`${requests.length - settled} requests never settled`);
  }
  return outcome;
}

/** Honest streams of a few lengths (mutations make them dishonest one read at a time). */
function registerSeeds(): Uint8Array[] {
  return [new Uint8Array(256), new Uint8Array(1024), new Uint8Array(4096)];
}

/** Recreates the rig when the driver left DMA memory behind (a reset it never saw finish). */
function registerTarget(name: string, make: () => Rig): FuzzTarget {
  let rig = make();
  const lost = { n: 0 };
  return {
    name,
    maxLength: 4096,
    seeds: registerSeeds,
    async run(input: Uint8Array): Promise<Outcome> {
      if (rig.memory.allocated > 1 << 20) rig = make();
      return await driveOnce(rig, input, lost);
    },
    lost: (): number => lost.n,
  };
}

/** virtio-mmio: the register file of the mock device (§4.2.2). */
export function mmioRegistersTarget(): FuzzTarget {
  return registerTarget("virtio-mmio registers", () => {
    const memory = new SimulatedMemory();
    const regs = new HostileRegisters(new MmioDevice(new MockIommuDevice(), memory));
    return { memory, windows: [regs], transport: () => MmioTransport.create(regs) };
  });
}

/** virtio-pci: config space (capability list) and BAR 4 (common config, notify, ISR, device). */
export function pciRegistersTarget(): FuzzTarget {
  return registerTarget("virtio-pci registers", () => {
    const memory = new SimulatedMemory();
    const fn = new PciFunction(new MockIommuDevice(), memory);
    const config = new HostileRegisters(fn.config);
    const bars = new Map<number, HostileRegisters>();
    for (let i = 0; i < 6; i++) {
      const b = fn.bar(i);
      if (b !== null) bars.set(i, new HostileRegisters(b));
    }
    return {
      memory,
      windows: [config, ...bars.values()],
      transport: () => PciTransport.create(config, (i) => bars.get(i) ?? null),
    };
  });
}

/**
 * The capability walk alone (§4.1.4) over mutated config bytes, with the mock's BAR windows:
 * every location it returns lies inside its BAR and fits the rules of its type.
 */
export function pciCapabilitiesTarget(): FuzzTarget {
  const memory = new SimulatedMemory();
  const fn = new PciFunction(new MockIommuDevice(), memory);
  const honest = new Uint8Array(256);
  for (let i = 0; i < 256; i += 4) {
    new DataView(honest.buffer).setUint32(i, fn.config.read32(i), true);
  }
  const bars = [0, 1, 2, 3, 4, 5].map((i) => fn.bar(i));
  return {
    name: "PCI capability list",
    maxLength: 256,
    seeds: (): Uint8Array[] => [honest],
    dictionary: (): Uint8Array[] => [Uint8Array.of(0x09), Uint8Array.of(0x40), Uint8Array.of(0xfc)],
    run(input: Uint8Array): Outcome {
      const config = new MemoryRegisters(256);
      new Uint8Array(config.view.buffer).set(input.subarray(0, 256));
      const walk = walkCapabilities(config, (i) => (i >= 0 && i < 6 ? bars[i] : null));
      let found = 0;
      for (let type = 1; type < walk.caps.length; type++) {
        const cap = walk.caps[type];
        if (cap === null) continue;
        found++;
        const window = bars[cap.bar];
        if (window === null || cap.offset + cap.length > window.size) {
          throw new FuzzCrash(
            `cap type ${type} at BAR${cap.bar} ${cap.offset}+${cap.length} outside it`,
          );
        }
        if (cap.cap < 0x40 || cap.cap + 16 > 256) throw new FuzzCrash(`cap at ${cap.cap}`);
      }
      try {
        PciTransport.create(config, (i) => (i >= 0 && i < 6 ? bars[i] : null));
      } catch (error) {
        if (!(error instanceof TransportError)) throw error;
        return "rejected";
      }
      return found === 4 ? "ok" : "rejected";
    },
  };
}
