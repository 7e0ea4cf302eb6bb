/**
 * The conformance suite against the mock: the strict mock passes every rule (over MMIO and
 * PCI, and the rules that do not apply to QEMU's shape on a mock shaped for them); the QEMU
 * personality gives exactly QEMU 7.2's deviations; rule selection, the oracle and hazards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CATALOGUE, countByLevel, selectRules } from "../conform/catalogue.ts";
import { runConformance } from "../conform/runner.ts";
import type { ConformTarget } from "../conform/types.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { PciTransport } from "../transport/pci.ts";
import { MockIommuDevice } from "../mock/iommu/device.ts";
import { MockDmaEngine } from "../mock/iommu/dma_engine.ts";
import type { MockIommuOptions } from "../mock/iommu/options.ts";
import { PciFunction } from "../mock/pci_device.ts";
import { MOCK_ENDPOINTS, mutantTarget } from "./_conform_mutants.ts";
import { QEMU_7_2_DEVIATIONS, QEMU_7_2_SKIPPED, qemuOutcome } from "./_conform_qemu.ts";

/** The three rules the default (QEMU-shaped) mock gives nothing to check. */
const NOT_APPLICABLE = ["attach.domain-range", "map.input-range", "probe.not-offered"];

/** The mock behind its PCI function, as the CLI builds it. */
function pciTarget(options: MockIommuOptions = {}): ConformTarget {
  const memory = new SimulatedMemory({ size: 32 * 1024 * 1024 });
  const device = new MockIommuDevice(options);
  const fn = new PciFunction(device, memory);
  return {
    transport: PciTransport.create(fn.config, (i) => fn.bar(i)),
    dma: memory,
    endpoints: MOCK_ENDPOINTS,
    missingEndpoint: 0xff,
    oracle: new MockDmaEngine(device, memory, { endpoint: MOCK_ENDPOINTS[0] }),
  };
}

Deno.test("CATALOGUE: ids are unique, sections are §5.13 or generic, every level counted", () => {
  const ids = CATALOGUE.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const r of CATALOGUE) {
    assert.match(r.id, /^[a-z]+\.[a-z0-9-]+$/, r.id);
    assert.match(r.section, /^(5\.13(\.\d+)*|2\.\d+(\.\d+)*|4\.1\.4\.3\.1|6\.2)$/, r.id);
    assert.ok(r.summary.length > 10 && !r.summary.endsWith("."), r.id);
  }
  const counts = countByLevel();
  assert.deepEqual(counts, { MUST: 34, SHOULD: 39, MAY: 5 });
  assert.equal(counts.MUST + counts.SHOULD + counts.MAY, CATALOGUE.length);
});

for (
  const [name, target] of [["MMIO", () => mutantTarget().target], [
    "PCI",
    () => pciTarget(),
  ]] as const
) {
  Deno.test(`runConformance() passes every applicable rule of the strict mock over ${name}`, async () => {
    const report = await runConformance(target(), { hazardous: true, quietMs: 20 });
    const bad = report.results.filter((r) =>
      r.outcome !== "pass" && !NOT_APPLICABLE.includes(r.id)
    );
    assert.deepEqual(bad.map((r) => `${r.id}: ${r.outcome} ${r.detail}`), []);
    assert.deepEqual(
      report.results.filter((r) => r.outcome === "skipped").map((r) => r.id),
      NOT_APPLICABLE,
    );
    assert.equal(report.results.length, CATALOGUE.length);
    assert.equal(report.mustFailed, false);
    assert.equal(report.totals.pass, CATALOGUE.length - NOT_APPLICABLE.length);
  });
}

Deno.test("runConformance() passes the rules QEMU's shape leaves out on a mock shaped for them", async () => {
  const ranged = mutantTarget({
    options: {
      domainRange: { start: 0, end: 1023 },
      inputRange: { start: 0n, end: (1n << 40n) - 1n },
    },
  }).target;
  const limited = await runConformance(ranged, {
    only: ["attach.domain-range", "map.input-range"],
  });
  assert.deepEqual(limited.results.map((r) => [r.id, r.outcome]), [
    ["attach.domain-range", "pass"],
    ["map.input-range", "pass"],
  ]);
  const noProbe = mutantTarget({ options: { features: 0x10130000067n } }).target;
  const probe = await runConformance(noProbe, { only: ["probe.*"] });
  assert.equal(probe.results.find((r) => r.id === "probe.not-offered")?.outcome, "pass");
  // Every other PROBE rule has nothing to judge then.
  assert.ok(
    probe.results.filter((r) => r.id !== "probe.not-offered").every((r) => r.outcome === "skipped"),
  );
});

Deno.test("runConformance() finds exactly QEMU 7.2's deviations in the mock's QEMU personality", async () => {
  const target = mutantTarget({ options: { qemuCompat: true } }).target;
  const report = await runConformance(target, { quietMs: 20 });
  const outcomes = Object.fromEntries(report.results.map((r) => [r.id, r.outcome]));
  const expected = Object.fromEntries(CATALOGUE.map((r) => [r.id, qemuOutcome(r.id)]));
  assert.deepEqual(outcomes, expected);
  assert.equal(report.mustFailed, true);
  assert.equal(Object.keys(QEMU_7_2_DEVIATIONS).length, 11);
  assert.equal(QEMU_7_2_SKIPPED.length, 4);
});

Deno.test("runConformance() runs the rules only selects, in catalogue order", async () => {
  const { target } = mutantTarget();
  const report = await runConformance(target, { only: ["unmap.split", "attach.*"] });
  assert.deepEqual(report.results.map((r) => r.id), [
    ...CATALOGUE.filter((r) => r.id.startsWith("attach.")).map((r) => r.id),
    "unmap.split",
  ]);
  assert.throws(() => selectRules(["attach.nope"]), /No conformance rule matches "attach.nope"/);
  await assert.rejects(runConformance(target, { only: ["zzz.*"] }), RangeError);
});

Deno.test("runConformance() skips oracle rules without an oracle and hazardous ones unless asked", async () => {
  const { target } = mutantTarget();
  const report = await runConformance({ ...target, oracle: undefined }, {
    only: ["map.translation", "fault.reason", "probe.small-buffer", "map.overlap"],
  });
  assert.deepEqual(report.results.map((r) => [r.id, r.outcome]), [
    ["map.overlap", "pass"],
    ["map.translation", "skipped"],
    ["probe.small-buffer", "skipped"],
    ["fault.reason", "skipped"],
  ]);
  assert.match(report.results[1].detail, /needs a DMA oracle/);
  assert.match(report.results[2].detail, /may take the device down: QEMU 7.2 aborts/);
});

Deno.test("runConformance() leaves bypass as it found it and the device reset", async () => {
  const { target, mutant } = mutantTarget();
  assert.equal(mutant.inner.bypass, true);
  await runConformance(target, { only: ["config.bypass-sticky", "detach.no-access"] });
  assert.equal(mutant.inner.bypass, true, "bypass restored after checks that turned it off");
  assert.equal(target.transport.getStatus(), 0);
  assert.deepEqual(mutant.inner.domains(), []);
});

Deno.test("runConformance() reports a precondition the device refused as skipped, with the step", async () => {
  // A device that refuses every ATTACH cannot be judged on MAP rules: they need a domain.
  const { target } = mutantTarget({
    request: (r, m) => r.type === 1 ? m.status(r.chain, 4) : undefined,
  });
  const report = await runConformance(target, { only: ["map.overlap", "attach.attaches"] });
  assert.deepEqual(report.results.map((r) => [r.id, r.outcome]), [
    ["attach.attaches", "skipped"],
    ["map.overlap", "skipped"],
  ]);
  assert.match(report.results[1].detail, /^setup failed: ATTACH domain 1 answered INVAL/);
});
