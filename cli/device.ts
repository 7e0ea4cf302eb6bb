/**
 * Device selection for `viommu`: `--device mock` (the default, QEMU q35's virtio-iommu-pci as
 * a mock, shaped by flags or `--mock-config file.json`, see `mock_config.ts`) or
 * `--device pci:SSSS:BB:DD.F` (the real device through sysfs; loaded lazily so the mock path
 * needs no permissions, and refused up front with what to run when the permissions are short).
 *
 * @module
 */

import { type CliFlags, UsageError } from "./args.ts";
import { mockConfigFromJson, type MockFileConfig, mockOptionsFromFlags } from "./mock_config.ts";
import { parseU32 } from "./numbers.ts";
import { requireHostPermissions } from "./permissions.ts";
import { DraftTopologyModel } from "./draft_model.ts";
import type { TopologyLayout } from "../driver/topology/builtin.ts";
import type { RingLayout } from "../driver/virtio/virtqueue.ts";
import { SUPPORTED_FEATURES, VirtioIommu } from "../driver/iommu/device.ts";
import { VIRTIO_IOMMU_F_BYPASS_CONFIG } from "../spec/iommu.ts";
import type { DmaAllocator } from "../transport/dma.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { PciTransport } from "../transport/pci.ts";
import type { Transport } from "../transport/transport.ts";
import type { DeviceModel } from "../mock/device.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
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
  /** The ring layout the driver asks for (`--ring`). */
  ring?: RingLayout | "auto";
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
  /** The ring layout the driver asks for (`--ring`). */
  ring?: RingLayout | "auto";
}

/** Which device a command talks to. */
export type DeviceSpec = MockDeviceSpec | PciDeviceSpec;

/** An initialised device and its driver. */
export interface DeviceSession {
  /** What was opened. */
  readonly spec: DeviceSpec;
  /** The driver, initialised. */
  readonly iommu: VirtioIommu;
  /** The feature bits the device offered (the driver accepted those in `iommu.info.features`). */
  readonly offeredFeatures: bigint;
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
  let timeoutMs: number | undefined;
  if (flags.timeout !== undefined) {
    timeoutMs = parseU32(flags.timeout, "--timeout");
    if (timeoutMs === 0) throw new UsageError(`Invalid --timeout "0": at least 1 ms`);
  }
  const ring = parseRing(flags.ring);
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
      ["--packed", flags.packed ? "" : undefined],
    ];
    for (const [name, value] of mockOnly) {
      if (value !== undefined) throw new UsageError(`${name} applies to --device mock only`);
    }
    return { kind: "pci", bdf, layout, timeoutMs, ring };
  }
  if (flags.device !== "mock") {
    throw new UsageError(
      `Unknown device "${flags.device}": expected mock or pci:SSSS:BB:DD.F`,
    );
  }
  const file = flags.mockConfig === undefined ? {} : await readMockConfig(flags.mockConfig);
  const options = mockOptionsFromFlags(flags, file.options ?? {});
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
    ring,
  };
}

/** Reads `--ring`: split, packed or auto (undefined: the driver's default, auto). */
function parseRing(text: string | undefined): RingLayout | "auto" | undefined {
  if (text === undefined || text === "split" || text === "packed" || text === "auto") return text;
  throw new UsageError(`Invalid --ring "${text}": expected split, packed or auto`);
}

/** Reads and checks the `--mock-config` file at `path`. */
async function readMockConfig(path: string): Promise<MockFileConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new UsageError(
        `Cannot read --mock-config ${path}: Deno has no read permission for it ` +
          `(deno task cli grants --allow-read; with deno run, add --allow-read=${path})`,
      );
    }
    throw new UsageError(`Cannot read --mock-config ${path}: ${messageOf(error)}`);
  }
  return mockConfigFromText(text, path);
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

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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

/**
 * The feature bits `transport`'s device offers, read after the driver initialised it. A
 * read of device_feature has no effect on the device (virtio 1.3 §4.1.4.3, §4.2.2: the device
 * reports its features there at any time); the driver's own init read the same bits.
 */
function offeredFeatures(transport: Transport): bigint {
  return transport.readDeviceFeatures();
}

/** Opens the device of `spec` and initialises the driver. */
export async function openDevice(spec: DeviceSpec): Promise<DeviceSession> {
  const driverOptions = {
    features: driverFeatures(spec.layout),
    timeoutMs: spec.timeoutMs,
    ring: spec.ring,
  };
  if (spec.kind === "mock") {
    const plugged = plugMock(spec);
    const iommu = await VirtioIommu.create(plugged.transport, plugged.memory, driverOptions);
    return {
      spec,
      iommu,
      offeredFeatures: offeredFeatures(plugged.transport),
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
      offeredFeatures: offeredFeatures(host.transport),
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
 * Opens the real virtio-iommu at `bdf` through sysfs with pagemap DMA memory (and its INTx when
 * it is bound to uio_pci_generic). The host backend is imported here, on demand, so that the
 * mock path loads no FFI code and needs no permission; without the permissions real hardware
 * needs this throws `PermissionProblem` first.
 */
export async function openHostPci(bdf: string): Promise<HostPci> {
  requireHostPermissions(`pci:${bdf}`);
  const { openSysfsPci, PagemapDma } = await import("../host.ts");
  const device = openSysfsPci(bdf);
  let dma;
  try {
    dma = new PagemapDma();
  } catch (error) {
    device.close();
    throw error;
  }
  // A function bound to uio_pci_generic interrupts through /dev/uioN; otherwise the driver polls.
  const transport = PciTransport.create(device.config, (i: number) => device.bar(i), {
    interrupts: device.interrupts,
  });
  return {
    transport,
    dma,
    close: (): void => {
      dma.close();
      device.close();
    },
  };
}
