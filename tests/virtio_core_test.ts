import assert from "node:assert/strict";
import { SimulatedMemory } from "../transport/memory.ts";
import { VirtioCore } from "../mock/virtio_core.ts";
import { ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import { HandRing } from "./_hand_ring.ts";

interface Parts {
  memory: SimulatedMemory;
  model: EchoDevice;
  core: VirtioCore;
}

function make(): Parts {
  const memory = new SimulatedMemory();
  const model = new EchoDevice();
  return { memory, model, core: new VirtioCore(model, memory) };
}

function writeFeatures(core: VirtioCore, f: bigint): void {
  core.writeDriverFeatures(0, Number(f & 0xffff_ffffn));
  core.writeDriverFeatures(1, Number(f >> 32n));
}

/** Brings `core` to FEATURES_OK with the echo device's features. */
function toFeaturesOk(core: VirtioCore): void {
  core.writeStatus(1);
  core.writeStatus(3);
  writeFeatures(core, ECHO_FEATURES);
  core.writeStatus(11);
  assert.equal(core.status, 11);
}

function programQueue(core: VirtioCore, ring: HandRing): void {
  const a = ring.addresses;
  core.setQueueSize(0, ring.size);
  core.setQueueAddress(0, 0, 0, a.descLo);
  core.setQueueAddress(0, 0, 1, a.descHi);
  core.setQueueAddress(0, 1, 0, a.driverLo);
  core.setQueueAddress(0, 1, 1, a.driverHi);
  core.setQueueAddress(0, 2, 0, a.deviceLo);
  core.setQueueAddress(0, 2, 1, a.deviceHi);
}

Deno.test("VirtioCore.writeStatus(0) resets status, features, queues and interrupts", () => {
  const { memory, model, core } = make();
  toFeaturesOk(core);
  const ring = new HandRing(memory, 8);
  programQueue(core, ring);
  core.setQueueReady(0, true);
  core.writeStatus(15);
  core.needsReset("test");
  assert.notEqual(core.interruptStatus, 0);
  core.writeStatus(0);
  assert.equal(core.status, 0);
  assert.equal(core.negotiated, 0n);
  assert.equal(core.interruptStatus, 0);
  assert.equal(core.queue(0), null);
  assert.equal(core.queueSize(0), 8, "queue size reads the maximum again");
  assert.equal(core.queueAddress(0, 0, 0), 0);
  assert.equal(model.resets, 1);
  assert.equal(core.needsResetReason, null);
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore accepts FEATURES_OK for offered features including VERSION_1", () => {
  const { core } = make();
  toFeaturesOk(core);
  assert.equal(core.negotiated, ECHO_FEATURES);
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore refuses FEATURES_OK for a feature not offered", () => {
  const { core } = make();
  core.writeStatus(1);
  core.writeStatus(3);
  writeFeatures(core, ECHO_FEATURES | (1n << 40n));
  core.writeStatus(11);
  assert.equal(core.readStatus() & 8, 0);
  assert.equal(core.negotiated, 0n);
  assert.match(core.violations[0], /§2\.2\.1: driver accepted feature bits 0x10000000000/);
});

Deno.test("VirtioCore refuses FEATURES_OK without VERSION_1", () => {
  const { core } = make();
  core.writeStatus(1);
  core.writeStatus(3);
  writeFeatures(core, ECHO_FEATURES & ~(1n << 32n));
  core.writeStatus(11);
  assert.equal(core.readStatus() & 8, 0);
  assert.match(core.violations[0], /VERSION_1/);
});

Deno.test("VirtioCore.faults.refuseFeatures refuses FEATURES_OK without a violation", () => {
  const { core } = make();
  core.faults.refuseFeatures = true;
  core.writeStatus(1);
  core.writeStatus(3);
  writeFeatures(core, ECHO_FEATURES);
  core.writeStatus(11);
  assert.equal(core.readStatus(), 3);
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore records a driver clearing a status bit", () => {
  const { core } = make();
  core.writeStatus(1);
  core.writeStatus(3);
  core.writeStatus(1);
  assert.match(core.violations[0], /§2\.1\.1: driver cleared status bit\(s\) DRIVER/);
});

Deno.test("VirtioCore records DRIVER without ACKNOWLEDGE and DRIVER_OK before FEATURES_OK", () => {
  const { core } = make();
  core.writeStatus(2);
  core.writeStatus(2 | 4);
  assert.equal(core.violations.length, 2);
  assert.match(core.violations[0], /DRIVER set without ACKNOWLEDGE/);
  assert.match(core.violations[1], /DRIVER_OK set before FEATURES_OK/);
});

Deno.test("VirtioCore ignores driver features written outside DRIVER..FEATURES_OK", () => {
  const { core } = make();
  writeFeatures(core, ECHO_FEATURES);
  assert.equal(core.readDriverFeatures(1), 0, "ignored before DRIVER");
  toFeaturesOk(core);
  core.writeDriverFeatures(0, 0);
  assert.equal(core.readDriverFeatures(0), Number(ECHO_FEATURES & 0xffff_ffffn));
  assert.equal(core.violations.length, 3);
  for (const v of core.violations) assert.match(v, /not between DRIVER and FEATURES_OK/);
});

Deno.test("VirtioCore.notify() before DRIVER_OK is a violation and is not delivered", () => {
  const { memory, model, core } = make();
  toFeaturesOk(core);
  programQueue(core, new HandRing(memory, 8));
  core.setQueueReady(0, true);
  core.notify(0);
  assert.deepEqual(model.notified, []);
  assert.match(core.violations[0], /§3\.1\.1: queue 0 notified before DRIVER_OK/);
  core.writeStatus(15);
  core.notify(0);
  assert.deepEqual(model.notified, [0]);
});

Deno.test("VirtioCore.notify() of a queue not enabled is a violation", () => {
  const { model, core } = make();
  toFeaturesOk(core);
  core.writeStatus(15);
  core.notify(1);
  assert.deepEqual(model.notified, []);
  assert.match(core.violations[0], /queue 1 notified but it is not enabled/);
});

Deno.test("VirtioCore.writeConfig() before FEATURES_OK is a violation and ignored", () => {
  const { model, core } = make();
  core.writeStatus(1);
  core.writeConfig(4, 1, 7);
  assert.equal(model.config.getUint8(4), 0);
  assert.match(core.violations[0], /config written at 0x4 before FEATURES_OK/);
  toFeaturesOk(core);
  core.writeConfig(4, 1, 7);
  assert.equal(model.config.getUint8(4), 7);
  assert.equal(core.violations.length, 1);
});

Deno.test("VirtioCore.needsReset() sets DEVICE_NEEDS_RESET and a config interrupt after DRIVER_OK", () => {
  const { core } = make();
  toFeaturesOk(core);
  core.needsReset("before DRIVER_OK");
  assert.equal(core.status & 64, 64);
  assert.equal(core.interruptStatus & 2, 0);
  core.writeStatus(15 | 64);
  core.needsReset("again");
  assert.equal(core.interruptStatus & 2, 2);
  assert.equal(core.needsResetReason, "before DRIVER_OK");
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore.configChanged() bumps the generation", () => {
  const { core } = make();
  const g = core.configGeneration;
  core.configChanged();
  assert.notEqual(core.configGeneration, g);
});

Deno.test("VirtioCore.faults.resetReads catches a driver that does not wait for reset", () => {
  const { core } = make();
  toFeaturesOk(core);
  core.faults.resetReads = 2;
  core.writeStatus(0);
  assert.equal(core.readStatus(), 11);
  core.writeStatus(1);
  assert.match(core.violations[0], /status written before a read returned 0 after reset/);
  core.clearViolations();
  core.writeStatus(0);
  assert.equal(core.readStatus(), 1);
  assert.equal(core.readStatus(), 1);
  assert.equal(core.readStatus(), 0);
  core.writeStatus(1);
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore refuses to enable a queue before FEATURES_OK", () => {
  const { memory, core } = make();
  core.writeStatus(1);
  core.writeStatus(3);
  programQueue(core, new HandRing(memory, 8));
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), false);
  assert.match(core.violations[0], /queue 0 enabled before FEATURES_OK/);
});

Deno.test("VirtioCore records a queue size that is not a power of two or too large", () => {
  const { core } = make();
  toFeaturesOk(core);
  core.setQueueSize(0, 6);
  core.setQueueSize(0, 16);
  assert.equal(core.violations.length, 2);
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), false);
  assert.match(core.violations[2], /enabled with size 16/);
});

Deno.test("VirtioCore records queue registers written while the queue is enabled", () => {
  const { memory, core } = make();
  toFeaturesOk(core);
  const ring = new HandRing(memory, 8);
  programQueue(core, ring);
  core.setQueueReady(0, true);
  core.setQueueSize(0, 4);
  core.setQueueAddress(0, 0, 0, 0);
  assert.equal(core.queueSize(0), 8);
  assert.equal(core.queueAddress(0, 0, 0), ring.desc.addrLo);
  assert.equal(core.violations.length, 2);
  for (const v of core.violations) assert.match(v, /while queue 0 is enabled/);
});

Deno.test("VirtioCore refuses a queue whose rings lie outside memory or are misaligned", () => {
  const { memory, core } = make();
  toFeaturesOk(core);
  programQueue(core, new HandRing(memory, 8));
  core.setQueueAddress(0, 2, 1, 7);
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), false);
  assert.match(core.violations[0], /device area lies outside guest memory/);
  core.clearViolations();
  core.setQueueAddress(0, 2, 1, memory.baseHi);
  core.setQueueAddress(0, 0, 0, core.queueAddress(0, 0, 0) + 8);
  core.setQueueReady(0, true);
  assert.match(core.violations[0], /descriptor table is not 16-byte aligned/);
});

Deno.test("VirtioCore refuses a driver area off 2 bytes and a device area off 4 (§2.7)", () => {
  const { memory, core } = make();
  toFeaturesOk(core);
  const ring = new HandRing(memory, 8);
  programQueue(core, ring);
  // Part 1 is the driver area (avail ring): 2-byte alignment; an odd address is refused.
  core.setQueueAddress(0, 1, 0, core.queueAddress(0, 1, 0) + 1);
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), false);
  assert.match(core.violations[0], /driver area is not 2-byte aligned/);
  // Back to aligned, then part 2 (the used ring) off by 2: 4-byte alignment is required.
  core.clearViolations();
  core.setQueueAddress(0, 1, 0, core.queueAddress(0, 1, 0) - 1);
  core.setQueueAddress(0, 2, 0, core.queueAddress(0, 2, 0) + 2);
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), false);
  assert.match(core.violations[0], /device area is not 4-byte aligned/);
  // Both back to aligned: the queue comes up.
  core.clearViolations();
  core.setQueueAddress(0, 2, 0, core.queueAddress(0, 2, 0) - 2);
  core.setQueueReady(0, true);
  assert.equal(core.queueReady(0), true);
  assert.deepEqual(core.violations, []);
});

Deno.test("VirtioCore calls onViolation for each violation", () => {
  const seen: string[] = [];
  const core = new VirtioCore(new EchoDevice(), new SimulatedMemory(), {
    onViolation: (rule) => seen.push(rule),
  });
  core.writeStatus(2);
  assert.equal(seen.length, 1);
  assert.equal(seen[0], core.violations[0]);
});
