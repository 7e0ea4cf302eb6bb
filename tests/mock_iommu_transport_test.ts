/** MockIommuDevice over virtio-mmio and virtio-pci, driven by a hand driver. */

import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { PciFunction } from "../mock/pci_device.ts";
import { HandDriver } from "./_iommu_hand_driver.ts";
import { attachRequest, mapRequest, probeRequest, S, unmapRequest } from "./_raw_requests.ts";
import {
  F_BYPASS_CONFIG,
  F_DOMAIN_RANGE,
  F_INPUT_RANGE,
  F_MAP_UNMAP,
  F_MMIO,
  F_PROBE,
  map,
  READ,
  WRITE,
} from "./_mock_iommu.ts";

// ---------------------------------------------------------------------------------------------
// Through the transports: the real harness (VirtioCore, SplitDeviceQueue) and a hand driver.

const HAND_FEATURES = (1n << 32n) | F_INPUT_RANGE | F_DOMAIN_RANGE | F_MAP_UNMAP | F_PROBE |
  F_MMIO | F_BYPASS_CONFIG;

function viaTransport(
  kind: "mmio" | "pci",
): { driver: HandDriver; device: MockIommuDevice; violations: string[] } {
  const memory = new SimulatedMemory();
  const device = new MockIommuDevice({ bypass: false });
  if (kind === "mmio") {
    const mmio = new MmioDevice(device, memory);
    return {
      driver: new HandDriver("mmio", mmio, memory, HAND_FEATURES),
      device,
      violations: mmio.core.violations,
    };
  }
  const pci = new PciFunction(device, memory);
  const bar = pci.bar(4);
  if (bar === null) throw new Error("BAR 4 missing");
  return {
    driver: new HandDriver("pci", bar, memory, HAND_FEATURES),
    device,
    violations: pci.core.violations,
  };
}

for (const kind of ["mmio", "pci"] as const) {
  Deno.test(`MockIommuDevice over ${kind}: attach, map, translate, unmap, probe with no violation`, () => {
    const { driver, device, violations } = viaTransport(kind);
    assert.equal(driver.readConfig32(32), 512);
    assert.deepEqual([...driver.request(attachRequest(1, 0x08)).bytes], [S.OK, 0, 0, 0]);
    const m = driver.request(
      mapRequest(1, map(0x1_0000_0000n, 0x1_0000_ffffn, 0x4000_0000n), READ | WRITE),
    );
    assert.deepEqual([m.used, m.bytes[0]], [4, S.OK]);
    assert.deepEqual(device.translate(0x08, 0x1_0000_0042n, "write"), {
      ok: true,
      address: 0x4000_0042n,
      bypass: false,
    });
    assert.equal(driver.request(unmapRequest(1, 0x1_0000_0000n, 0x1_0000_7fffn)).bytes[0], S.RANGE);
    assert.equal(driver.request(unmapRequest(1, 0x1_0000_0000n, 0x1_0000_ffffn)).bytes[0], S.OK);
    const p = driver.request(probeRequest(0x08), 516);
    assert.equal(p.used, 516);
    assert.equal(new DataView(p.bytes.buffer).getBigUint64(8, true), 0xfee00000n);
    assert.equal(p.bytes[512], S.OK);
    const unknown = new Uint8Array(20);
    unknown[0] = 0x7f;
    assert.equal(driver.request(unknown).used, 0);
    assert.deepEqual(violations, []);
  });

  Deno.test(`MockIommuDevice over ${kind}: a fault arrives on the event queue`, () => {
    const { driver, device, violations } = viaTransport(kind);
    const buf = driver.addEventBuffer();
    const r = device.translate(0x10, 0xdead_b000n, "read");
    assert.equal(r.ok, false);
    assert.deepEqual(driver.takeEvent(), { id: 0, len: 24 });
    assert.equal(buf[0], 1, "reason DOMAIN");
    assert.equal(new DataView(buf.buffer, buf.byteOffset).getUint32(8, true), 0x10);
    assert.equal(device.faultsPosted, 1);
    assert.deepEqual(violations, []);
  });

  Deno.test(`MockIommuDevice over ${kind}: bypass config writes and their violations`, () => {
    const { driver, device, violations } = viaTransport(kind);
    driver.writeConfig8(36, 1);
    assert.equal(device.bypass, true);
    assert.deepEqual(violations, []);
    driver.writeConfig8(36, 3);
    driver.writeConfig8(32, 0);
    assert.equal(device.bypass, true);
    assert.equal(violations.length, 2);
    assert.match(violations[0], /§5\.13\.4\.1/);
  });
}
