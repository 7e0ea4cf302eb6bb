/**
 * The mock device's options as the command line gives them: flags (`--endpoints`,
 * `--page-size-mask`, …) over a `--mock-config file.json`. The library's mock accepts values a
 * spec-following device never presents (a test may want a broken device); the command line
 * refuses those with a message naming the option, the value and the rule, so a typo such as
 * `--queue-size 3` or `--page-size-mask 0x1001` is not a device that quietly behaves oddly.
 *
 * @module
 */

import type { TopologyLayout } from "../driver/topology/builtin.ts";
import {
  type EndpointConfig,
  type MockIommuOptions,
  QEMU_X86_MSI_REGION,
  type ReservedRegionConfig,
} from "../mock/iommu/options.ts";
import { hex } from "../util/hex.ts";
import { type CliFlags, UsageError } from "./args.ts";
import { parseRange, parseU32, parseU32List, parseU64 } from "./numbers.ts";

/** The largest split virtqueue (virtio 1.3 §2.7: Queue Size is a power of 2, at most 32768). */
export const MAX_QUEUE_SIZE = 32768;

/** The smallest granule the command line accepts for the mock: 4 KiB, the smallest QEMU offers. */
export const MIN_GRANULE = 0x1000n;

/** What a `--mock-config` file holds. */
export interface MockFileConfig {
  /** Mock device options. */
  options?: MockIommuOptions;
  /** `"transport"`: pci or mmio. */
  transport?: "pci" | "mmio";
  /** `"topologyLayout"`: spec or draft. */
  layout?: TopologyLayout;
}

/**
 * Checks a queue size the mock would present: a power of 2 from 1 to 32768 (virtio 1.3
 * §2.7). Throws {@link UsageError} naming `what`.
 */
export function checkQueueSize(size: number, what: string): number {
  if (size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
    throw new UsageError(
      `Invalid ${what} ${size}: a split virtqueue's size is a power of 2 from 1 to ` +
        `${MAX_QUEUE_SIZE} (virtio 1.3 §2.7)`,
    );
  }
  return size;
}

/**
 * Checks a page_size_mask the mock would present: at least one bit (virtio 1.3 §5.13.4: the
 * device MUST set one), and a granule (its lowest set bit, §5.13.4) of at least 4 KiB, as
 * every QEMU granule (4k, 16k, 64k) is. Throws {@link UsageError} naming `what`.
 */
export function checkPageSizeMask(mask: bigint, what: string): bigint {
  if (mask === 0n) {
    throw new UsageError(
      `Invalid ${what} 0x0: the device must set at least one bit (virtio 1.3 §5.13.4)`,
    );
  }
  const granule = mask & -mask;
  if (granule < MIN_GRANULE) {
    throw new UsageError(
      `Invalid ${what} ${hex(mask)}: its granule (lowest set bit) is ${granule} B; the ` +
        `mock wants at least 4 KiB, e.g. 0xfffffffffffff000 (4 KiB pages and up, as QEMU)`,
    );
  }
  return mask;
}

function qemuEndpoint(id: number): EndpointConfig {
  return { id, reservedRegions: [QEMU_X86_MSI_REGION] };
}

/**
 * The mock options of the flags, over those of the `--mock-config` file (`file`): each flag
 * replaces the file's value. Throws {@link UsageError} for a malformed or refused value.
 */
export function mockOptionsFromFlags(flags: CliFlags, file: MockIommuOptions): MockIommuOptions {
  const options: MockIommuOptions = { ...file };
  if (flags.endpoints !== undefined) {
    options.endpoints = parseU32List(flags.endpoints, "--endpoints").map(qemuEndpoint);
  }
  if (flags.pageSizeMask !== undefined) {
    options.pageSizeMask = checkPageSizeMask(
      parseU64(flags.pageSizeMask, "--page-size-mask"),
      "--page-size-mask",
    );
  }
  if (flags.features !== undefined) options.features = parseU64(flags.features, "--features");
  if (flags.probeSize !== undefined) options.probeSize = parseU32(flags.probeSize, "--probe-size");
  if (flags.noBypass) options.bypass = false;
  if (flags.inputRange !== undefined) {
    options.inputRange = parseRange(flags.inputRange, "--input-range");
  }
  if (flags.domainRange !== undefined) {
    const r = parseRange(flags.domainRange, "--domain-range");
    if (r.end > 0xffff_ffffn) {
      throw new UsageError(`Invalid --domain-range "${flags.domainRange}": larger than 32 bits`);
    }
    options.domainRange = { start: Number(r.start), end: Number(r.end) };
  }
  if (flags.queueSize !== undefined) {
    const size = checkQueueSize(parseU32(flags.queueSize, "--queue-size"), "--queue-size");
    options.queueSizes = [size, size];
  }
  if (flags.qemuCompat) options.qemuCompat = true;
  if (flags.packed) options.packed = true;
  return options;
}

/** The keys a `--mock-config` object may have. */
const KNOWN_KEYS = new Set([
  "features",
  "pageSizeMask",
  "inputRange",
  "domainRange",
  "probeSize",
  "bypass",
  "queueSizes",
  "qemuCompat",
  "packed",
  "transport",
  "topologyLayout",
  "endpoints",
  "unknownRequest",
  "eventOverflow",
]);

/**
 * Reads a `--mock-config` JSON object. Numbers may be JSON numbers or strings in decimal or
 * `0x` hex. Keys: features, pageSizeMask, inputRange {start,end}, domainRange {start,end},
 * probeSize, bypass, queueSizes, qemuCompat, packed, transport, topologyLayout, and endpoints: a list of
 * IDs (each gets QEMU's MSI region) or of `{id, reservedRegions: [{start, end, subtype}]}`.
 */
export function mockConfigFromJson(value: unknown): MockFileConfig {
  const obj = asObject(value, "the mock config");
  for (const key of Object.keys(obj)) {
    if (!KNOWN_KEYS.has(key)) throw new UsageError(`Unknown mock config key "${key}"`);
  }
  const options: MockIommuOptions = {};
  if (obj.features !== undefined) options.features = big(obj.features, "features");
  if (obj.pageSizeMask !== undefined) {
    options.pageSizeMask = checkPageSizeMask(big(obj.pageSizeMask, "pageSizeMask"), "pageSizeMask");
  }
  if (obj.inputRange !== undefined) {
    const r = asObject(obj.inputRange, "inputRange");
    options.inputRange = {
      start: big(r.start, "inputRange.start"),
      end: big(r.end, "inputRange.end"),
    };
  }
  if (obj.domainRange !== undefined) {
    const r = asObject(obj.domainRange, "domainRange");
    options.domainRange = {
      start: u32(r.start, "domainRange.start"),
      end: u32(r.end, "domainRange.end"),
    };
  }
  if (obj.probeSize !== undefined) options.probeSize = u32(obj.probeSize, "probeSize");
  if (obj.bypass !== undefined) options.bypass = bool(obj.bypass, "bypass");
  if (obj.qemuCompat !== undefined) options.qemuCompat = bool(obj.qemuCompat, "qemuCompat");
  if (obj.packed !== undefined) options.packed = bool(obj.packed, "packed");
  if (obj.queueSizes !== undefined) {
    if (!Array.isArray(obj.queueSizes)) throw new UsageError("queueSizes must be a list");
    options.queueSizes = obj.queueSizes.map((v, i) =>
      checkQueueSize(u32(v, `queueSizes[${i}]`), `queueSizes[${i}]`)
    );
  }
  if (obj.unknownRequest !== undefined) {
    options.unknownRequest = choice(obj.unknownRequest, ["spec", "qemu"], "unknownRequest");
  }
  if (obj.eventOverflow !== undefined) {
    options.eventOverflow = choice(obj.eventOverflow, ["drop", "wait"], "eventOverflow");
  }
  if (obj.endpoints !== undefined) {
    if (!Array.isArray(obj.endpoints)) throw new UsageError("endpoints must be a list");
    options.endpoints = obj.endpoints.map((e, i) => endpointFromJson(e, `endpoints[${i}]`));
  }
  const out: MockFileConfig = { options };
  if (obj.transport !== undefined) {
    out.transport = choice(obj.transport, ["pci", "mmio"], "transport");
  }
  if (obj.topologyLayout !== undefined) {
    out.layout = choice(obj.topologyLayout, ["spec", "draft"], "topologyLayout");
  }
  return out;
}

function endpointFromJson(value: unknown, what: string): EndpointConfig {
  if (typeof value === "number" || typeof value === "string") return qemuEndpoint(u32(value, what));
  const obj = asObject(value, what);
  const id = u32(obj.id, `${what}.id`);
  if (obj.reservedRegions === undefined) return qemuEndpoint(id);
  if (!Array.isArray(obj.reservedRegions)) {
    throw new UsageError(`${what}.reservedRegions must be a list`);
  }
  const reservedRegions = obj.reservedRegions.map((r, i): ReservedRegionConfig => {
    const where = `${what}.reservedRegions[${i}]`;
    const region = asObject(r, where);
    const subtype = region.subtype ?? "reserved";
    if (subtype !== "msi" && subtype !== "reserved" && typeof subtype !== "number") {
      throw new UsageError(`${where}.subtype must be "msi", "reserved" or a number`);
    }
    return {
      start: big(region.start, `${where}.start`),
      end: big(region.end, `${where}.end`),
      subtype,
    };
  });
  return { id, reservedRegions };
}

/** `value` if it is one of `allowed`, else a {@link UsageError} naming `what`. */
function choice<const T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) {
    throw new UsageError(`${what} must be ${allowed.map((a) => `"${a}"`).join(" or ")}`);
  }
  return value as T;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(`${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function big(value: unknown, what: string): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === "string") return parseU64(value, what);
  throw new UsageError(`${what} must be a non-negative integer or a "0x…" string`);
}

function u32(value: unknown, what: string): number {
  const v = big(value, what);
  if (v > 0xffff_ffffn) throw new UsageError(`${what} is larger than 32 bits`);
  return Number(v);
}

function bool(value: unknown, what: string): boolean {
  if (typeof value !== "boolean") throw new UsageError(`${what} must be true or false`);
  return value;
}
