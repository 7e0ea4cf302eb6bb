/**
 * The tour: a virtio-iommu driven end to end against the mock device, no VM needed.
 * Initialise (every status step), probe an endpoint, attach, map, translate a simulated DMA,
 * unmap, and watch the same DMA fault.
 *
 * Run: `deno task demo`
 *
 * @module
 */

import { hex } from "../mod.ts";
import { styleText } from "node:util";
import {
  describeViot,
  MAP_READ,
  MAP_WRITE,
  MmioTransport,
  parseViot,
  PciTree,
  type QueueAddresses,
  regionAddress,
  resolveTopology,
  statusNames,
  type Transport,
  type TransportKind,
  VirtioIommu,
} from "../mod.ts";
import { MmioDevice, MockIommuDevice, q35Viot, SimulatedMemory } from "../testing.ts";

const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
type Style = Parameters<typeof styleText>[0];
function paint(style: Style, text: string): string {
  return color ? styleText(style, text) : text;
}
function step(title: string): void {
  console.log("\n" + paint(["bold", "cyan"], "▸ " + title));
}
function say(label: string, value: string): void {
  console.log("  " + paint("dim", label.padEnd(14)) + value);
}

/** A transport that prints every status write, to show the init sequence as it happens. */
class StatusTrace implements Transport {
  readonly kind: TransportKind;
  readonly deviceId: number;
  #t: Transport;
  constructor(t: Transport) {
    this.#t = t;
    this.kind = t.kind;
    this.deviceId = t.deviceId;
  }
  getStatus(): number {
    return this.#t.getStatus();
  }
  setStatus(status: number): void {
    say("status ←", status === 0 ? "0 (reset)" : statusNames(status));
    this.#t.setStatus(status);
  }
  readDeviceFeatures(): bigint {
    return this.#t.readDeviceFeatures();
  }
  writeDriverFeatures(features: bigint): void {
    this.#t.writeDriverFeatures(features);
  }
  configGeneration(): number {
    return this.#t.configGeneration();
  }
  readConfig8(offset: number): number {
    return this.#t.readConfig8(offset);
  }
  readConfig16(offset: number): number {
    return this.#t.readConfig16(offset);
  }
  readConfig32(offset: number): number {
    return this.#t.readConfig32(offset);
  }
  writeConfig8(offset: number, value: number): void {
    this.#t.writeConfig8(offset, value);
  }
  maxQueueSize(index: number): number {
    return this.#t.maxQueueSize(index);
  }
  enableQueue(index: number, size: number, addresses: QueueAddresses): void {
    this.#t.enableQueue(index, size, addresses);
  }
  notify(index: number): void {
    this.#t.notify(index);
  }
  resetQueue(index: number): void {
    this.#t.resetQueue(index);
  }
  queueResetPending(index: number): boolean {
    return this.#t.queueResetPending(index);
  }
  queueEnabled(index: number): boolean {
    return this.#t.queueEnabled(index);
  }
  takeInterrupt(): number {
    return this.#t.takeInterrupt();
  }
}

// The mock mirrors QEMU 7.2's q35 virtio-iommu: endpoints 0x00, 0x08, 0x10, 0x18, each with the
// x86 MSI doorbell 0xfee00000-0xfeefffff as a reserved region.
const memory = new SimulatedMemory();
const device = new MockIommuDevice();
const mmio = new MmioDevice(device, memory);

step("Initialise (virtio 1.3 §3.1.1) over virtio-mmio");
const iommu = await VirtioIommu.create(new StatusTrace(MmioTransport.create(mmio)), memory);
const { info } = iommu;
say("features", info.featureNames.join(" "));
say("page sizes", hex(info.config.pageSizeMask) + " (granule 4 KiB)");
say("domains", `${info.config.domainStart}..${info.config.domainEnd}`);
say("queues", `request ${info.requestQueueSize}, event ${info.eventQueueSize}`);

step("Topology: QEMU's ACPI VIOT table says which endpoint ID each PCI function has");
const tree = new PciTree([0x00, 0x08, 0x10, 0x18].map((devfn) => ({
  segment: 0,
  bus: 0,
  devfn,
  type: devfn === 0 ? "host-bridge" as const : "endpoint" as const,
})));
for (const row of resolveTopology(tree, describeViot(parseViot(q35Viot()))).rows) {
  say(
    row.device,
    row.endpointId === null
      ? "the IOMMU itself: never translated"
      : `endpoint ${hex(row.endpointId)}`,
  );
}

const endpoint = 0x08; // PCI 00:01.0
step(`Probe endpoint ${hex(endpoint)} (PCI 00:01.0)`);
for (const r of (await iommu.probe(endpoint)).regions) {
  say("reserved", `${r.kind} ${hex(r.start)}-${hex(r.end)}`);
}

step("Attach it to domain 1 and map one page");
const iova = 0x10000n;
const page = memory.alloc(0x1000); // a page of simulated RAM for the endpoint's DMA
const phys = regionAddress(page);
await iommu.attach(1, endpoint);
await iommu.map(1, iova, phys, 0x1000, MAP_READ | MAP_WRITE);
say("map", `iova ${hex(iova)} → phys ${hex(phys)} rw`);

step("The endpoint DMAs to iova 0x10010");
const ok = device.translate(endpoint, 0x10010n, "write");
say("translate", ok.ok ? paint("green", `→ ${hex(ok.address)}`) : paint("red", "fault"));

step("Unmap, and the same DMA faults");
await iommu.unmap(1, iova, 0x1000);
const bad = device.translate(endpoint, 0x10010n, "write");
say(
  "translate",
  bad.ok ? paint("red", "still mapped!") : paint("yellow", `fault ${bad.fault.reason}`),
);
for (const f of iommu.takeFaults()) {
  say(
    "event queue",
    `${f.reason} fault, endpoint ${hex(f.endpoint)}, ${f.write ? "write" : "read"} at ${
      hex(f.address ?? 0n)
    }`,
  );
}

const violations = mmio.core.violations;
step("Spec rules the driver broke, as the strict mock saw them");
say("violations", violations.length === 0 ? paint("green", "none") : violations.join("; "));

step("Close: the driver resets the device before freeing its memory");
await iommu.close();
