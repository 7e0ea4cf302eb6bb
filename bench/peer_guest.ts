/**
 * The guest half of the peer benchmark (bench/peer.ts boots the guests): times 4 KiB
 * MAP+UNMAP pairs against QEMU's virtio-iommu with edu as the endpoint, and prints one line
 * `PEER <json>`.
 *
 * - `--side linux` (6.12 guest, Linux's virtio-iommu + VFIO loaded): edu bound to vfio-pci,
 *   VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA ioctls from Deno FFI (each one MAP or UNMAP
 *   request sent by Linux's driver), one pair at a time and "batched" (N MAPs, then one range
 *   UNMAP: the fewest syscalls VFIO allows), plus a null ioctl (VFIO_GET_API_VERSION) as the
 *   syscall floor.
 * - `--side ours` (virtio-pci unbound, or the 6.1 guest): our driver's public API over the
 *   sysfs backend, one pair at a time (await each) and batched (a reusable RequestBatch of
 *   `--batch` MAPs, then one of as many UNMAPs), plus Promise.all batching for comparison.
 *
 * Each mode runs `--warmup` discarded repetitions (JIT warm-up under TCG), then `--reps`
 * measured ones of `--pairs` pairs; the report keeps every repetition's µs per pair.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import {
  libc,
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_PRIVATE,
  mmap,
  munmap,
  pointerAddress,
  PROT_READ,
  PROT_WRITE,
} from "../host/ffi.ts";
import { openVfioPci } from "../host/vfio.ts";
import {
  encodeDmaMap,
  encodeDmaUnmap,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GET_API_VERSION,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
} from "../host/vfio_abi.ts";
import { openSysfsPci } from "../host/sysfs_pci.ts";
import { PagemapDma } from "../host/pagemap.ts";
import { PciTransport } from "../transport/pci.ts";
import { MAP_READ, MAP_WRITE, VirtioIommu } from "../driver/iommu/device.ts";
import { Baseline } from "./_setup.ts";
import { RequiredWork } from "./_required.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";
import { bindToVfioPci, boundDriver, EDU_DEVICE, EDU_VENDOR, findPciDevice } from "../tools/edu.ts";

/** The benchmark's parameters. */
export interface PeerParams {
  /** MAP+UNMAP pairs per repetition. */
  pairs: number;
  /** Measured repetitions. */
  reps: number;
  /** Discarded repetitions before them. */
  warmup: number;
  /** Requests per batch (batched modes). */
  batch: number;
  /** Runs only this mode (for a profile, bench/profile_tcg.ts); every mode when absent. */
  only?: string;
  /** Keeps measuring (past `reps`) until this many seconds have passed (for a profile). */
  seconds?: number;
  /**
   * Reports when the measured repetitions ran (`window`, µs of CLOCK_MONOTONIC, as a
   * `--cpu-prof` profile's timestamps), so a profile can leave out start-up and warm-up.
   */
  profile?: boolean;
}

/** The modes each side measures, as their report keys them. */
export const PEER_MODES = {
  linux: ["one", "batched", "nullIoctl"],
  ours: [
    "one",
    "batched",
    "batchedRange",
    "promiseAll",
    "floorOne",
    "floorBatched",
    "floorBatchedRange",
    "requiredOne",
    "requiredBatched",
  ],
} as const;

/** When the measured repetitions of `--profile` began and ended, µs of CLOCK_MONOTONIC. */
const measuredWindow: [number, number] = [0, 0];

/**
 * CLOCK_MONOTONIC in µs, to 10 ms, read as the uptime (the same clock in a guest that never
 * suspends): the clock V8 stamps profile samples with, which Deno does not expose.
 */
function monotonicUs(): number {
  return Math.round(Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]) * 1e6);
}

/** Whether mode `mode` runs (no `--only`, or `--only` names it). */
function only(params: PeerParams, mode: string): boolean {
  return params.only === undefined || params.only === mode;
}

/** First IOVA the benchmark maps (below edu's 28-bit DMA mask, clear of the allocator's). */
const IOVA_BASE = 0x400_0000;
const PAGE = 0x1000;
/** The virtio-iommu's PCI IDs. */
const VIRTIO_VENDOR = 0x1af4;
const VIRTIO_IOMMU_DEVICE = 0x1057;

/**
 * Parses `--side`, `--pairs`, `--reps`, `--warmup`, `--batch`, `--ring`, `--only`, `--seconds`,
 * `--profile`.
 */
function parseArgs(
  argv: string[],
): { side: "linux" | "ours"; params: PeerParams; ring: RingLayout } {
  const get = (name: string, fallback: number): number => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return fallback;
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value < 0) throw new TypeError(`--${name} needs an integer`);
    return value;
  };
  const sideAt = argv.indexOf("--side");
  const side = argv[sideAt + 1];
  if (sideAt < 0 || (side !== "linux" && side !== "ours")) {
    throw new TypeError("--side needs linux or ours");
  }
  const onlyAt = argv.indexOf("--only");
  const mode = onlyAt < 0 ? undefined : argv[onlyAt + 1];
  const modes: readonly string[] = PEER_MODES[side];
  if (mode !== undefined && !modes.includes(mode)) {
    throw new TypeError(`--only needs one of ${modes.join(", ")} (side ${side})`);
  }
  const params: PeerParams = {
    pairs: get("pairs", 256),
    reps: get("reps", 10),
    warmup: get("warmup", 3),
    batch: get("batch", 32),
    ...(mode === undefined ? {} : { only: mode }),
    ...(argv.includes("--seconds") ? { seconds: get("seconds", 0) } : {}),
    ...(argv.includes("--profile") ? { profile: true } : {}),
  };
  if (params.profile === true && params.only === undefined) {
    throw new TypeError("--profile needs --only <mode>");
  }
  if (params.pairs % params.batch !== 0) {
    throw new RangeError(`--pairs ${params.pairs} must be a multiple of --batch ${params.batch}`);
  }
  const ringAt = argv.indexOf("--ring");
  const ring = ringAt < 0 ? "split" : argv[ringAt + 1];
  if (ring !== "split" && ring !== "packed") throw new TypeError("--ring needs split or packed");
  return { side, params, ring };
}

/**
 * Runs `once()` (which does `units` operations) `warmup + reps` times (and more until
 * `seconds` have passed, when given) and returns the measured repetitions' µs per unit.
 */
async function measure(
  params: PeerParams,
  units: number,
  once: () => unknown,
): Promise<number[]> {
  const samples: number[] = [];
  // With --seconds, measured repetitions go on until that much time has passed as well.
  let until = 0;
  for (let r = 0; r < params.warmup + params.reps || performance.now() < until; r++) {
    if (r === params.warmup) {
      until = performance.now() + (params.seconds ?? 0) * 1000;
      if (params.profile === true) measuredWindow[0] = monotonicUs();
    }
    const start = performance.now();
    await once();
    const us = ((performance.now() - start) * 1000) / units;
    if (r >= params.warmup) samples.push(Math.round(us * 100) / 100);
  }
  if (params.profile === true) measuredWindow[1] = monotonicUs();
  return samples;
}

/** Linux's driver through VFIO type1. */
async function linuxSide(params: PeerParams): Promise<Record<string, unknown>> {
  const edu = findPciDevice(EDU_VENDOR, EDU_DEVICE);
  if (edu === null) throw new Error("no edu device (boot with -device edu)");
  const binding = await bindToVfioPci(edu);
  const dev = openVfioPci(edu);
  const fd = dev.containerFd;
  const n = params.pairs;
  const memory = mmap(
    "bench pages",
    n * PAGE,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
  );
  const base = pointerAddress(memory);
  const rw = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  // Every request encoded once, so the loop is only the ioctls.
  const maps = Array.from(
    { length: n },
    (_, i) => encodeDmaMap(base + BigInt(i * PAGE), BigInt(IOVA_BASE + i * PAGE), BigInt(PAGE), rw),
  );
  const unmaps = Array.from(
    { length: n },
    (_, i) => encodeDmaUnmap(BigInt(IOVA_BASE + i * PAGE), BigInt(PAGE)),
  );
  const rangeUnmap = encodeDmaUnmap(BigInt(IOVA_BASE), BigInt(n * PAGE));
  const c = libc();
  const MAP = BigInt(VFIO_IOMMU_MAP_DMA);
  const UNMAP = BigInt(VFIO_IOMMU_UNMAP_DMA);
  const NULL = BigInt(VFIO_GET_API_VERSION);
  const check = (rc: number, what: string): void => {
    if (rc < 0) throw new Error(`${what} failed`);
  };
  const result: Record<string, unknown> = { binding, group: dev.group, iommuType: dev.iommuType };
  try {
    if (only(params, "one")) {
      result.one = await measure(params, n, () => {
        const map = maps[0], unmap = unmaps[0];
        for (let i = 0; i < n; i++) {
          check(c.ioctl(fd, MAP, map), "VFIO_IOMMU_MAP_DMA");
          check(c.ioctl(fd, UNMAP, unmap), "VFIO_IOMMU_UNMAP_DMA");
        }
      });
    }
    if (only(params, "batched")) {
      result.batched = await measure(params, n, () => {
        for (let i = 0; i < n; i++) check(c.ioctl(fd, MAP, maps[i]), "VFIO_IOMMU_MAP_DMA");
        new DataView(rangeUnmap.buffer).setBigUint64(16, BigInt(n * PAGE), true);
        check(c.ioctl(fd, UNMAP, rangeUnmap), "VFIO_IOMMU_UNMAP_DMA (range)");
      });
    }
    if (only(params, "nullIoctl")) {
      result.nullIoctl = await measure(params, n, () => {
        for (let i = 0; i < n; i++) check(c.ioctlInt(fd, NULL, 0n), "VFIO_GET_API_VERSION");
      });
    }
  } finally {
    munmap(memory, n * PAGE);
    dev.close();
  }
  return result;
}

/** Our driver over the sysfs backend, on ring layout `ring`. */
async function oursSide(params: PeerParams, ring: RingLayout): Promise<Record<string, unknown>> {
  const edu = findPciDevice(EDU_VENDOR, EDU_DEVICE);
  const bdf = findPciDevice(VIRTIO_VENDOR, VIRTIO_IOMMU_DEVICE);
  if (edu === null || bdf === null) throw new Error("need edu and a virtio-iommu-pci");
  const driverOfIommu = boundDriver(bdf);
  if (driverOfIommu !== null) throw new Error(`${bdf} is bound to ${driverOfIommu}`);
  const [, bus, slotFn] = edu.split(":");
  const [slot, fn] = slotFn.split(".");
  const endpoint = (parseInt(bus, 16) << 8) | (parseInt(slot, 16) << 3) | parseInt(fn, 16);

  const dev = openSysfsPci(bdf);
  const dma = new PagemapDma();
  const transport = new PciTransport(dev.config, (i) => dev.bar(i));
  const iommu = await VirtioIommu.create(transport, dma, { timeoutMs: 5000, ring });
  const domain = 1;
  await iommu.attach(domain, endpoint);
  const n = params.pairs;
  const b = params.batch;
  // One batch's worth of pages; IOVA i maps page i % batch (MAP/UNMAP never touch memory).
  const pages = dma.alloc(b * PAGE);
  const phys = pages.addrLo + pages.addrHi * 0x1_0000_0000;
  const rw = MAP_READ | MAP_WRITE;
  const batch = iommu.batch();
  /** Empties the batch and queues the MAPs of IOVAs `at` … `at + b - 1` (pages 0 … b - 1). */
  const queueMaps = (at: number): void => {
    batch.clear();
    for (let i = at; i < at + b; i++) {
      batch.map(domain, IOVA_BASE + i * PAGE, phys + (i - at) * PAGE, PAGE, rw);
    }
  };
  const result: Record<string, unknown> = {
    bdf,
    endpoint,
    requestQueueSize: iommu.info.requestQueueSize,
    ring: iommu.info.ring,
    phys: hex(phys),
    features: iommu.info.featureNames,
  };
  try {
    if (only(params, "one")) {
      result.one = await measure(params, n, async () => {
        for (let i = 0; i < n; i++) {
          await iommu.map(domain, IOVA_BASE, phys, PAGE, rw);
          await iommu.unmap(domain, IOVA_BASE, PAGE);
        }
      });
    }
    if (only(params, "batched")) {
      result.batched = await measure(params, n, async () => {
        for (let at = 0; at < n; at += b) {
          queueMaps(at);
          if (await batch.submit() !== 0) throw new Error(`MAP batch failed: ${batch.error(0)}`);
          batch.clear();
          for (let i = at; i < at + b; i++) batch.unmap(domain, IOVA_BASE + i * PAGE, PAGE);
          if (await batch.submit() !== 0) throw new Error(`UNMAP batch failed: ${batch.error(0)}`);
        }
      });
    }
    // As Linux's best mode does: N MAPs then one UNMAP of the whole range, here in one submit
    // (the device removes every mapping the range covers, §5.13.6.6).
    if (only(params, "batchedRange")) {
      result.batchedRange = await measure(params, n, async () => {
        for (let at = 0; at < n; at += b) {
          queueMaps(at);
          batch.unmap(domain, IOVA_BASE + at * PAGE, b * PAGE);
          if (await batch.submit() !== 0) throw new Error(`range batch failed: ${batch.error(0)}`);
        }
      });
    }
    const promises: Promise<void>[] = new Array(b);
    if (only(params, "promiseAll")) {
      result.promiseAll = await measure(params, n, async () => {
        for (let at = 0; at < n; at += b) {
          for (let i = 0; i < b; i++) {
            promises[i] = iommu.map(domain, IOVA_BASE + (at + i) * PAGE, phys + i * PAGE, PAGE, rw);
          }
          await Promise.all(promises);
          for (let i = 0; i < b; i++) {
            promises[i] = iommu.unmap(domain, IOVA_BASE + (at + i) * PAGE, PAGE);
          }
          await Promise.all(promises);
        }
      });
    }
    result.mappingsLeft = iommu.mappings(domain).length;
  } finally {
    await iommu.detach(domain, endpoint).catch(() => {});
    await iommu.close();
    dma.free(pages);
  }
  try {
    if (params.only === undefined || /^(floor|required)/.test(params.only)) {
      Object.assign(result, await floorOf(transport, dma, endpoint, params, ring));
    }
  } finally {
    dma.close();
    dev.close();
  }
  return result;
}

/**
 * The device's own cost: the same requests from the hand-written loop of bench/_setup.ts (no
 * checks, no records, no promises, pre-encoded bytes), which initialises the device itself.
 * What is left between it and our driver is the driver's JavaScript.
 */
async function floorOf(
  transport: PciTransport,
  dma: PagemapDma,
  endpoint: number,
  params: PeerParams,
  ring: RingLayout,
): Promise<Record<string, number[]>> {
  const n = params.pairs;
  const b = params.batch;
  const base = await Baseline.overFor(ring, transport, dma, { endpoint, iovaBase: IOVA_BASE });
  const required = new RequiredWork(base, IOVA_BASE);
  try {
    return {
      floorOne: !only(params, "floorOne") ? [] : await measure(params, n, () => {
        for (let i = 0; i < n; i++) base.pairOneAtATime(i);
      }),
      floorBatched: !only(params, "floorBatched") ? [] : await measure(params, n, () => {
        for (let at = 0; at < n; at += b) base.batch(2 * b);
      }),
      floorBatchedRange: !only(params, "floorBatchedRange") ? [] : await measure(params, n, () => {
        for (let at = 0; at < n; at += b) base.batchRange(b);
      }),
      // The same loops plus what every driver must add: the floor of ours.
      requiredOne: !only(params, "requiredOne") ? [] : await measure(params, n, async () => {
        for (let i = 0; i < n; i++) {
          const settled = required.pairOneAtATime(i);
          await settled; // the MAP's
          await settled; // the UNMAP's
        }
      }),
      requiredBatched: !only(params, "requiredBatched")
        ? []
        : await measure(params, n, async () => {
          for (let at = 0; at < n; at += b) await required.batch(2 * b);
        }),
    };
  } finally {
    await base.close();
  }
}

if (import.meta.main) {
  const { side, params, ring } = parseArgs(Deno.args);
  const kernel = Deno.readTextFileSync("/proc/sys/kernel/osrelease").trim();
  const start = performance.now();
  const result = side === "linux" ? await linuxSide(params) : await oursSide(params, ring);
  const ms = Math.round(performance.now() - start);
  if (params.profile === true) result.window = measuredWindow;
  console.log("PEER " + JSON.stringify({ side, kernel, params, ms, ...result }));
}
