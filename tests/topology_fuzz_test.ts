/**
 * Seeded random-mutation fuzzing of every topology parser: only TopologyError (or success)
 * may come out. Seeds are fixed so a failure reproduces; the failing input is printed.
 */
import assert from "node:assert/strict";
import { readBuiltinTopology } from "../driver/topology/builtin.ts";
import { describeFdt, describeViot } from "../driver/topology/description.ts";
import { TopologyError } from "../driver/topology/errors.ts";
import { fdtTopology } from "../driver/topology/fdt.ts";
import { pciDeviceFromConfig, PciTree } from "../driver/topology/pci_tree.ts";
import { resolveTopology } from "../driver/topology/resolve.ts";
import { parseViot } from "../driver/topology/viot.ts";
import {
  buildViot,
  fixChecksum,
  qemuQ35Viot,
  viotMmioEndpoint,
  viotMmioIommu,
  viotPciIommu,
  viotPciRange,
} from "./_topology_viot.ts";
import { FdtBuilder, virtLikeFdt } from "./_topology_fdt.ts";
import { ConfigSpace } from "./_topology_builtin.ts";
import { mutate, Prng } from "./_topology_fuzz.ts";

const ITERATIONS = 3000;

function hexDump(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs `parse` on mutations of `seeds`; returns [successes, typed errors]. */
function fuzz(
  seed: number,
  seeds: Uint8Array[],
  parse: (bytes: Uint8Array) => void,
): [number, number] {
  const rng = new Prng(seed);
  let ok = 0;
  let rejected = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const input = mutate(rng, seeds[rng.below(seeds.length)]);
    try {
      parse(input);
      ok++;
    } catch (error) {
      if (!(error instanceof TopologyError)) {
        throw new Error(`iteration ${i}: ${String(error)} for input ${hexDump(input)}`);
      }
      rejected++;
    }
  }
  return [ok, rejected];
}

Deno.test("parseViot() fuzz: mutated tables give a table or a TopologyError", () => {
  const seeds = [
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
  ];
  const tree = new PciTree([{ segment: 0, bus: 0, devfn: 0x18, type: "endpoint" }]);
  const [ok, rejected] = fuzz(0x5eed0001, seeds, (bytes) => {
    // Half the time, fix the checksum so the mutation reaches the node walk.
    const input = bytes.length >= 10 && bytes[3] % 2 === 0 ? fixChecksum(bytes) : bytes;
    resolveTopology(tree, describeViot(parseViot(input)));
  });
  assert.equal(ok + rejected, ITERATIONS);
  assert.ok(rejected > 0 && ok > 0, `ok ${ok}, rejected ${rejected}`);
});

Deno.test("fdtTopology() fuzz: mutated blobs give a topology or a TopologyError", () => {
  const seeds = [
    virtLikeFdt(),
    new FdtBuilder().begin("").begin("i").cells("#iommu-cells", 1).cells("phandle", 2).end()
      .begin("pci").str("device_type", "pci").cells("iommu-map-mask", 0xfff8)
      .cells("iommu-map", 0, 2, 0, 0x10000).end().end().finish(),
  ];
  const tree = new PciTree([{ segment: 0, bus: 0, devfn: 0x18, type: "endpoint" }]);
  const [ok, rejected] = fuzz(0x5eed0002, seeds, (bytes) => {
    resolveTopology(tree, describeFdt(fdtTopology(bytes)));
  });
  assert.equal(ok + rejected, ITERATIONS);
  assert.ok(rejected > 0 && ok > 0, `ok ${ok}, rejected ${rejected}`);
});

Deno.test("readBuiltinTopology() fuzz: mutated config spaces give a topology, null or a TopologyError", () => {
  const base = new ConfigSpace(0x100).topo(0x40, 3, 16)
    .pciRange(0x40, { start: 0, end: 0xff, endpointStart: 0 })
    .endpoint(0x50, { endpoint: 9, address: 0xa000000n })
    .set16(0x60, 7);
  const [ok, rejected] = fuzz(0x5eed0003, [base.bytes.slice(0, 0x80)], (bytes) => {
    const window = new ConfigSpace(0x100);
    window.bytes.set(bytes.subarray(0, 0x100));
    // ConfigSpace.read32 throws RangeError for any access outside the window: that would
    // surface here as a non-TopologyError and fail the test.
    readBuiltinTopology((offset) => window.read32(offset), "draft", { configSize: 0x100 });
  });
  assert.equal(ok + rejected, ITERATIONS);
  assert.ok(rejected > 0 && ok > 0, `ok ${ok}, rejected ${rejected}`);
});

Deno.test("pciDeviceFromConfig() fuzz: mutated config headers give a device or a TopologyError", () => {
  const seed = new Uint8Array(256);
  const v = new DataView(seed.buffer);
  v.setUint16(0, 0x1b36, true);
  v.setUint16(0x0a, 0x0604, true);
  seed[0x0e] = 1;
  seed[0x19] = 2;
  seed[0x06] = 0x10;
  seed[0x34] = 0x40;
  seed[0x40] = 0x10;
  seed[0x42] = 0x42;
  const [ok, rejected] = fuzz(0x5eed0004, [seed], (bytes) => {
    pciDeviceFromConfig({ segment: 0, bus: 0, devfn: 8 }, bytes);
  });
  assert.equal(ok + rejected, ITERATIONS);
  assert.ok(ok > 0, `ok ${ok}, rejected ${rejected}`);
});
