/**
 * Fuzz targets for the topology parsers: ACPI VIOT ({@link parseViot}), flattened device trees
 * ({@link fdtTopology}), the draft built-in topology in config space
 * ({@link readBuiltinTopology}) and PCI config headers ({@link pciDeviceFromConfig}); each
 * followed through to {@link resolveTopology} where it describes a topology. Only
 * {@link TopologyError} (or success) may come out, and the built-in reader may only make
 * aligned 32-bit reads inside its config window.
 *
 * @module
 */

import { readBuiltinTopology } from "../../driver/topology/builtin.ts";
import { describeFdt, describeViot } from "../../driver/topology/description.ts";
import { TopologyError } from "../../driver/topology/errors.ts";
import { fdtTopology } from "../../driver/topology/fdt.ts";
import { pciDeviceFromConfig, PciTree } from "../../driver/topology/pci_tree.ts";
import { resolveTopology } from "../../driver/topology/resolve.ts";
import { parseViot } from "../../driver/topology/viot.ts";
import {
  buildViot,
  fixChecksum,
  qemuQ35Viot,
  viotMmioEndpoint,
  viotMmioIommu,
  viotPciIommu,
  viotPciRange,
} from "../topology/viot.ts";
import { FdtBuilder, virtLikeFdt } from "../topology/fdt.ts";
import { ConfigSpace } from "../topology/builtin.ts";
import { FuzzCrash, type FuzzTarget, type Outcome } from "./engine.ts";

/** Runs `parse`; a TopologyError is a typed rejection, anything else a crash. */
function typed(parse: () => void): Outcome {
  try {
    parse();
    return "ok";
  } catch (error) {
    if (error instanceof TopologyError) return "rejected";
    throw error;
  }
}

const TREE = new PciTree([
  { segment: 0, bus: 0, devfn: 0x10, type: "endpoint" },
  { segment: 0, bus: 0, devfn: 0x18, type: "endpoint" },
]);

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** VIOT: most inputs get their checksum fixed so that mutations reach the node walk. */
export const viotTarget: FuzzTarget = {
  name: "VIOT",
  seeds: (): Uint8Array[] => [
    qemuQ35Viot(),
    buildViot([
      viotMmioIommu({ baseAddress: 0xa000000n }),
      viotPciIommu({ segment: 1, bdf: 8 }),
      viotPciRange({
        endpointStart: 0x100,
        segmentEnd: 1,
        bdfStart: 0,
        bdfEnd: 0xffff,
        outputNode: 64,
      }),
      viotMmioEndpoint({ endpoint: 3, baseAddress: 0xa000200n, outputNode: 48 }),
    ]),
  ],
  dictionary: (): Uint8Array[] => [ascii("VIOT"), Uint8Array.of(1, 0, 24, 0), Uint8Array.of(3, 0)],
  run(input: Uint8Array): Outcome {
    const bytes = input.length >= 10 && input.length % 8 !== 7 ? fixChecksum(input) : input;
    return typed(() => resolveTopology(TREE, describeViot(parseViot(bytes))));
  },
};

/** Flattened device trees, resolved against a small PCI tree. */
export const fdtTarget: FuzzTarget = {
  name: "device tree",
  seeds: (): Uint8Array[] => [
    virtLikeFdt(),
    new FdtBuilder().begin("").begin("i").cells("#iommu-cells", 1).cells("phandle", 2).end()
      .begin("pci").str("device_type", "pci").cells("iommu-map-mask", 0xfff8)
      .cells("iommu-map", 0, 2, 0, 0x10000).end().end().finish(),
  ],
  dictionary: (): Uint8Array[] => [
    Uint8Array.of(0xd0, 0x0d, 0xfe, 0xed),
    Uint8Array.of(0, 0, 0, 1),
    Uint8Array.of(0, 0, 0, 2),
    Uint8Array.of(0, 0, 0, 3),
    Uint8Array.of(0, 0, 0, 9),
    ascii("iommu-map\0"),
    ascii("iommus\0"),
  ],
  run: (input: Uint8Array): Outcome =>
    typed(() => resolveTopology(TREE, describeFdt(fdtTopology(input)))),
};

/** The config window of the built-in topology target. */
const BUILTIN_WINDOW = 0x100;

/**
 * The draft built-in topology (seed 001): the input is the first bytes of the config window
 * (the rest zero). Reads must be aligned 32-bit ones inside the window.
 */
export const builtinTarget: FuzzTarget = {
  name: "built-in topology",
  maxLength: BUILTIN_WINDOW,
  seeds(): Uint8Array[] {
    const a = new ConfigSpace(BUILTIN_WINDOW).topo(0x40, 3, 16)
      .pciRange(0x40, { start: 0, end: 0xff, endpointStart: 0 })
      .endpoint(0x50, { endpoint: 9, address: 0xa000000n })
      .set16(0x60, 7);
    const b = new ConfigSpace(BUILTIN_WINDOW).topo(0x30, 2, 12)
      .pciRange(0x30, { hierarchy: 1, start: 8, end: 0x1f, endpointStart: 0x100 })
      .pciRange(0x3c, { start: 0x20, end: 0x20, endpointStart: 3 });
    return [a.bytes.slice(0, 0x80), b.bytes.slice(0, 0x60)];
  },
  run(input: Uint8Array): Outcome {
    const window = new Uint8Array(BUILTIN_WINDOW);
    window.set(input.subarray(0, BUILTIN_WINDOW));
    const view = new DataView(window.buffer);
    const read32 = (offset: number): number => {
      if (
        !Number.isInteger(offset) || offset % 4 !== 0 || offset < 0 || offset + 4 > BUILTIN_WINDOW
      ) {
        throw new FuzzCrash(`readBuiltinTopology read config at ${offset}`);
      }
      return view.getUint32(offset, true);
    };
    return typed(() => {
      readBuiltinTopology(read32, "draft", { configSize: BUILTIN_WINDOW });
    });
  },
};

/** A PCI config header: a PCIe root port with a capability list. */
export const pciConfigTarget: FuzzTarget = {
  name: "PCI config (topology)",
  maxLength: 256,
  seeds(): Uint8Array[] {
    const bridge = new Uint8Array(256);
    const v = new DataView(bridge.buffer);
    v.setUint16(0, 0x1b36, true);
    v.setUint16(0x0a, 0x0604, true);
    bridge[0x0e] = 1;
    bridge[0x19] = 2;
    bridge[0x06] = 0x10;
    bridge[0x34] = 0x40;
    bridge[0x40] = 0x10; // PCI Express capability
    bridge[0x42] = 0x42;
    const endpoint = new Uint8Array(64);
    new DataView(endpoint.buffer).setUint32(0, 0x11e8_1234, true);
    return [bridge, endpoint];
  },
  run: (input: Uint8Array): Outcome =>
    typed(() => pciDeviceFromConfig({ segment: 0, bus: 0, devfn: 8 }, input)),
};
