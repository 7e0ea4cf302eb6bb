/**
 * Device selection for `viommu`: `--device mock` (the default, QEMU q35's virtio-iommu-pci as
 * a mock, shaped by flags or `--mock-config file.json`) or `--device pci:SSSS:BB:DD.F` (the
 * real device through sysfs; loaded lazily so the mock path needs no permissions).
 *
 * @module
 */

import { type CliFlags, parseRange, parseU32, parseU32List, parseU64, UsageError } from "./args.ts";
import { DraftTopologyModel } from "./draft_model.ts";
import type { TopologyLayout } from "../driver/topology/builtin.ts";
import { SUPPORTED_FEATURES, VirtioIommu } from "../driver/iommu/device.ts";
import { VIRTIO_IOMMU_F_BYPASS_CONFIG } from "../spec/iommu.ts";
import type { DmaAllocator } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import type { DeviceModel } from "../mock/device.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import {
  type EndpointConfig,
  type MockIommuOptions,
  QEMU_X86_MSI_REGION,
  type ReservedRegionConfig,
} from "../mock/iommu/options.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import type { VirtioCore } from "../mock/virtio_core.ts";

/** The endpoints of QEMU q35's default guest: BDFs 00:00.0 to 00:03.0. */
export const Q35_ENDPOINTS: readonly number[] = [0x00, 0x08, 0x10, 0x18];

/** Where the virtio-iommu sits in the q35 guest: 00:02.0. */
export const Q35_IOMMU_BDF = 0x10;

/** The mock device, as the flags describe it. */
export interface MockDeviceSpec {
  /** Discriminant. */
  kind: "mock";
  /** Options of the mock virtio-iommu. */
  options: MockIommuOptions;
  /** Transport the mock sits behind (default pci, as on q35). */
  transport: "pci" | "mmio";
  /** Config layout: the published spec, or the 2020 draft with its built-in topology. */
  layout: TopologyLayout;
  /** Request timeout in ms. */
  timeoutMs?: number;
}

/** A real device in this machine, owned through sysfs. */
export interface PciDeviceSpec {
  /** Discriminant. */
  kind: "pci";
  /** `SSSS:BB:DD.F`. */
  bdf: string;
  /** Config layout. */
  layout: TopologyLayout;
  /** Request timeout in ms. */
  timeoutMs?: number;
}

/** Which device a command talks to. */
export type DeviceSpec = MockDeviceSpec | PciDeviceSpec;

/** An initialised device and its driver. */
export interface DeviceSession {
  /** What was opened. */
  readonly spec: DeviceSpec;
  /** The driver, initialised. */
  readonly iommu: VirtioIommu;
  /** The mock device model, or null on a real device. */
  readonly mock: MockIommuDevice | null;
  /** Spec rules the driver broke as the strict mock saw them (empty on a real device). */
  violations(): readonly string[];
  /** Resets the device and frees what was opened. */
  close(): Promise<void>;
}

/** The endpoint IDs the mock manages (for the topology). */
export function mockEndpointIds(options: MockIommuOptions): number[] {
  return options.endpoints?.map((e) => e.id) ?? [...Q35_ENDPOINTS];
}

/** Builds the device spec from the flags (reading `--mock-config` when given). */
export async function deviceSpecFromFlags(flags: CliFlags): Promise<DeviceSpec> {
  const layout = parseLayout(flags.topologyLayout);
  const timeoutMs = flags.timeout === undefined ? undefined : parseU32(flags.timeout, "--timeout");
  if (flags.device.startsWith("pci:")) {
    const bdf = normalizeBdf(flags.device.slice(4));
    const mockOnly = [
      ["--mock-config", flags.mockConfig],
      ["--endpoints", flags.endpoints],
      ["--page-size-mask", flags.pageSizeMask],
      ["--features", flags.features],
      ["--probe-size", flags.probeSize],
      ["--input-range", flags.inputRange],
      ["--domain-range", flags.domainRange],
      ["--queue-size", flags.queueSize],
      ["--transport", flags.transport],
      ["--no-bypass", flags.noBypass ? "" : undefined],
      ["--qemu-compat", flags.qemuCompat ? "" : undefined],
    ];
    for (const [name, value] of mockOnly) {
      if (value !== undefined) throw new UsageError(`${name} applies to --device mock only`);
    }
    return { kind: "pci", bdf, layout, timeoutMs };
  }
  if (flags.device !== "mock") {
    throw new UsageError(
      `Unknown device "${flags.device}": expected mock or pci:SSSS:BB:DD.F`,
    );
  }
  let file: MockFileConfig = {};
  if (flags.mockConfig !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(flags.mockConfig);
    } catch (error) {
      throw new UsageError(`Cannot read --mock-config ${flags.mockConfig}: ${messageOf(error)}`);
    }
    file = mockConfigFromText(text, flags.mockConfig);
  }
  const options: MockIommuOptions = { ...file.options };
  if (flags.endpoints !== undefined) {
    options.endpoints = parseU32List(flags.endpoints, "--endpoints").map(qemuEndpoint);
  }
  if (flags.pageSizeMask !== undefined) {
    options.pageSizeMask = parseU64(flags.pageSizeMask, "--page-size-mask");
  }
  if (flags.features !== undefined) options.features = parseU64(flags.features, "--features");
  if (flags.probeSize !== undefined) options.probeSize = parseU32(flags.probeSize, "--probe-size");
  if (flags.noBypass) options.bypass = false;
  if (flags.inputRange !== undefined) {
    options.inputRange = parseRange(flags.inputRange, "--input-range");
  }
  if (flags.domainRange !== undefined) {
    const r = parseRange(flags.domainRange, "--domain-range");
    if (r.end > 0xffff_ffffn) throw new UsageError("Invalid --domain-range: larger than 32 bits");
    options.domainRange = { start: Number(r.start), end: Number(r.end) };
  }
  if (flags.queueSize !== undefined) {
    const size = parseU32(flags.queueSize, "--queue-size");
    options.queueSizes = [size, size];
  }
  if (flags.qemuCompat) options.qemuCompat = true;
  const transport = flags.transport ?? file.transport ?? "pci";
  if (transport !== "pci" && transport !== "mmio") {
    throw new UsageError(`Invalid --transport "${transport}": expected pci or mmio`);
  }
  try {
    // Let the mock validate now, so a bad option is a usage error rather than a failure later.
    new MockIommuDevice(options);
  } catch (error) {
    throw new UsageError(`Invalid mock device option: ${messageOf(error)}`);
  }
  return {
    kind: "mock",
    options,
    transport,
    layout: flags.topologyLayout === undefined ? file.layout ?? layout : layout,
    timeoutMs,
  };
}

function parseLayout(text: string | undefined): TopologyLayout {
  if (text === undefined || text === "spec") return "spec";
  if (text === "draft") return "draft";
  throw new UsageError(`Invalid --topology-layout "${text}": expected spec or draft`);
}

/** Accepts `SSSS:BB:DD.F` or `BB:DD.F`, returns the sysfs form `ssss:bb:dd.f`. */
function normalizeBdf(text: string): string {
  const m = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/.exec(text);
  if (m === null) {
    throw new UsageError(`Invalid PCI address "${text}": expected pci:SSSS:BB:DD.F`);
  }
  return `${(m[1] ?? "0000").toLowerCase()}:${m[2].toLowerCase()}:${m[3].toLowerCase()}.${m[4]}`;
}

function qemuEndpoint(id: number): EndpointConfig {
  return { id, reservedRegions: [QEMU_X86_MSI_REGION] };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What a `--mock-config` file holds. */
export interface MockFileConfig {
  /** Mock device options. */
  options?: MockIommuOptions;
  /** `"transport"`: pci or mmio. */
  transport?: "pci" | "mmio";
  /** `"topologyLayout"`: spec or draft. */
  layout?: TopologyLayout;
}

/** Reads the text of a `--mock-config` file named `source`; throws UsageError when malformed. */
export function mockConfigFromText(text: string, source: string): MockFileConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Cannot parse --mock-config ${source}: ${messageOf(error)}`);
  }
  return mockConfigFromJson(value);
}

/**
 * Reads a `--mock-config` JSON object. Numbers may be JSON numbers or strings in decimal or
 * `0x` hex. Keys: features, pageSizeMask, inputRange {start,end}, domainRange {start,end},
 * probeSize, bypass, queueSizes, qemuCompat, transport, topologyLayout, and endpoints: a list of
 * IDs (each gets QEMU's MSI region) or of `{id, reservedRegions: [{start, end, subtype}]}`.
 */
export function mockConfigFromJson(value: unknown): MockFileConfig {
  const obj = asObject(value, "the mock config");
  const known = new Set([
    "features",
    "pageSizeMask",
    "inputRange",
    "domainRange",
    "probeSize",
    "bypass",
    "queueSizes",
    "qemuCompat",
    "transport",
    "topologyLayout",
    "endpoints",
    "unknownRequest",
    "eventOverflow",
  ]);
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new UsageError(`Unknown mock config key "${key}"`);
  }
  const options: MockIommuOptions = {};
  if (obj.features !== undefined) options.features = big(obj.features, "features");
  if (obj.pageSizeMask !== undefined) options.pageSizeMask = big(obj.pageSizeMask, "pageSizeMask");
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
  if (obj.queueSizes !== undefined) {
    if (!Array.isArray(obj.queueSizes)) throw new UsageError("queueSizes must be a list");
    options.queueSizes = obj.queueSizes.map((v, i) => u32(v, `queueSizes[${i}]`));
  }
  if (obj.unknownRequest !== undefined) {
    if (obj.unknownRequest !== "spec" && obj.unknownRequest !== "qemu") {
      throw new UsageError(`unknownRequest must be "spec" or "qemu"`);
    }
    options.unknownRequest = obj.unknownRequest;
  }
  if (obj.eventOverflow !== undefined) {
    if (obj.eventOverflow !== "drop" && obj.eventOverflow !== "wait") {
      throw new UsageError(`eventOverflow must be "drop" or "wait"`);
    }
    options.eventOverflow = obj.eventOverflow;
  }
  if (obj.endpoints !== undefined) {
    if (!Array.isArray(obj.endpoints)) throw new UsageError("endpoints must be a list");
    options.endpoints = obj.endpoints.map((e, i) => endpointFromJson(e, `endpoints[${i}]`));
  }
  const out: MockFileConfig = { options };
  if (obj.transport !== undefined) {
    if (obj.transport !== "pci" && obj.transport !== "mmio") {
      throw new UsageError(`transport must be "pci" or "mmio"`);
    }
    out.transport = obj.transport;
  }
  if (obj.topologyLayout !== undefined) {
    if (obj.topologyLayout !== "spec" && obj.topologyLayout !== "draft") {
      throw new UsageError(`topologyLayout must be "spec" or "draft"`);
    }
    out.layout = obj.topologyLayout;
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

/** The mock's draft-layout topology: one PCI range, endpoint ID = requester ID. */
export function mockDraftRanges(options: MockIommuOptions): {
  hierarchy: number;
  requesterStart: number;
  requesterEnd: number;
  endpointStart: number;
}[] {
  return [{ hierarchy: 0, requesterStart: 0, requesterEnd: mockBdfEnd(options), endpointStart: 0 }];
}

/** Last requester ID the mock's topology covers: bus 0, or up to the highest endpoint's bus. */
export function mockBdfEnd(options: MockIommuOptions): number {
  const ids = mockEndpointIds(options).filter((id) => id <= 0xffff);
  const maxBus = Math.max(0, ...ids.map((id) => id >> 8));
  return (maxBus << 8) | 0xff;
}

/** A mock device plugged into its transport front-end, before any driver. */
export interface PluggedMock {
  /** The virtio-iommu model. */
  device: MockIommuDevice;
  /** The memory DMA regions live in. */
  memory: SimulatedMemory;
  /** The driver-side transport. */
  transport: Transport;
  /** The front-end's core (violations). */
  core: VirtioCore;
}

/** Creates the mock device of `spec` behind its transport. */
export function plugMock(spec: MockDeviceSpec): PluggedMock {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice(spec.options);
  const model: DeviceModel = spec.layout === "draft"
    ? new DraftTopologyModel(device, mockDraftRanges(spec.options))
    : device;
  if (spec.transport === "mmio") {
    const mmio = new MmioDevice(model, memory);
    return { device, memory, transport: MmioTransport.create(mmio), core: mmio.core };
  }
  const fn = new PciFunction(model, memory);
  const transport = PciTransport.create(fn.config, (i: number) => fn.bar(i));
  return { device, memory, transport, core: fn.core };
}

/**
 * The features the driver may accept for a layout: a draft device's bit 6 is F_TOPOLOGY, not
 * BYPASS_CONFIG (virtio 1.3 §5.13.3 gave the bit its current meaning).
 */
export function driverFeatures(layout: TopologyLayout): bigint {
  return layout === "draft"
    ? SUPPORTED_FEATURES & ~(1n << VIRTIO_IOMMU_F_BYPASS_CONFIG)
    : SUPPORTED_FEATURES;
}

/** Opens the device of `spec` and initialises the driver. */
export async function openDevice(spec: DeviceSpec): Promise<DeviceSession> {
  const driverOptions = { features: driverFeatures(spec.layout), timeoutMs: spec.timeoutMs };
  if (spec.kind === "mock") {
    const plugged = plugMock(spec);
    const iommu = await VirtioIommu.create(plugged.transport, plugged.memory, driverOptions);
    return {
      spec,
      iommu,
      mock: plugged.device,
      violations: (): readonly string[] => plugged.core.violations,
      close: (): Promise<void> => iommu.close(),
    };
  }
  const host = await openHostPci(spec.bdf);
  try {
    const iommu = await VirtioIommu.create(host.transport, host.dma, {
      ...driverOptions,
      timeoutMs: spec.timeoutMs ?? 5000,
    });
    return {
      spec,
      iommu,
      mock: null,
      violations: (): readonly string[] => [],
      close: async (): Promise<void> => {
        await iommu.close();
        host.close();
      },
    };
  } catch (error) {
    host.close();
    throw error;
  }
}

/** A real PCI device opened through sysfs. */
export interface HostPci {
  /** Its transport. */
  transport: Transport;
  /** DMA memory with physical addresses. */
  dma: DmaAllocator;
  /** Unmaps and closes everything. */
  close(): void;
}

/**
 * Opens the real virtio-iommu at `bdf` through sysfs with pagemap DMA memory. The host backend
 * is imported here, on demand, so that the mock path loads no FFI code and needs no permission.
 */
export async function openHostPci(bdf: string): Promise<HostPci> {
  const { openSysfsPci, PagemapDma } = await import("../host.ts");
  const device = openSysfsPci(bdf);
  let dma;
  try {
    dma = new PagemapDma();
  } catch (error) {
    device.close();
    throw error;
  }
  const transport = PciTransport.create(device.config, (i: number) => device.bar(i));
  return {
    transport,
    dma,
    close: (): void => {
      dma.close();
      device.close();
    },
  };
}
