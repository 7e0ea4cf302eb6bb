import assert from "node:assert/strict";
import { MmioTransport } from "../transport/mmio.ts";
import { MmioReg } from "../spec/mmio.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { MemoryRegisters } from "../transport/registers.ts";
import { type QueueAddresses, TransportError } from "../transport/transport.ts";
import { ECHO_CONFIG_MAGIC, ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import { HandRing } from "./_hand_ring.ts";
import { RecordingRegisters } from "./_recording.ts";
import { bringUp, echoRoundTrip } from "./_bring_up.ts";
import type { MmioDeviceOptions } from "../mock/mmio_device.ts";

interface Rig {
  memory: SimulatedMemory;
  model: EchoDevice;
  device: MmioDevice;
  regs: RecordingRegisters;
  t: MmioTransport;
}

function rig(options: MmioDeviceOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const model = new EchoDevice();
  const device = new MmioDevice(model, memory, options);
  const regs = new RecordingRegisters(device);
  return { memory, model, device, regs, t: MmioTransport.create(regs) };
}

function zeroQueue(): QueueAddresses {
  return { descLo: 0, descHi: 0, driverLo: 0, driverHi: 0, deviceLo: 0, deviceHi: 0 };
}

Deno.test("MmioTransport.create() rejects a bad magic value", () => {
  const regs = new MemoryRegisters(0x200);
  regs.write32(0, 0x12345678);
  assert.throws(
    () => MmioTransport.create(regs),
    (e: unknown) =>
      e instanceof TransportError && /not a virtio-mmio device: magic 0x12345678/i.test(e.message),
  );
});

Deno.test("MmioTransport.create() reports a legacy version 1 device clearly", () => {
  const memory = new SimulatedMemory();
  const device = new MmioDevice(new EchoDevice(), memory, { version: 1 });
  const regs = new RecordingRegisters(device);
  assert.throws(
    () => MmioTransport.create(regs),
    (e: unknown) => e instanceof TransportError && /legacy \(version 1\)/.test(e.message),
  );
  assert.deepEqual(regs.writes(), [], "a legacy device is not touched");
});

Deno.test("MmioTransport.create() rejects an unknown version", () => {
  const memory = new SimulatedMemory();
  const device = new MmioDevice(new EchoDevice(), memory, { version: 3 });
  assert.throws(() => MmioTransport.create(device), /Unsupported virtio-mmio version 3/);
});

Deno.test("MmioTransport.create() rejects device ID 0 and touches nothing else", () => {
  const memory = new SimulatedMemory();
  const device = new MmioDevice(new EchoDevice(), memory, { deviceId: 0 });
  const regs = new RecordingRegisters(device);
  assert.throws(() => MmioTransport.create(regs), (e: unknown) => e instanceof TransportError);
  assert.deepEqual(
    regs.log.map((a) => `${a.op}${a.bits}@${a.offset}`),
    ["r32@0", "r32@4", "r32@8"],
  );
});

Deno.test("MmioTransport exposes device ID, version and vendor ID", () => {
  const { t } = rig({ vendorId: 0x1234 });
  assert.equal(t.kind, "mmio");
  assert.equal(t.deviceId, 42);
  assert.equal(t.version, 2);
  assert.equal(t.vendorId, 0x1234);
});

Deno.test("MmioTransport.readDeviceFeatures() writes the select before each read", () => {
  const { regs, t } = rig();
  regs.log.length = 0;
  assert.equal(t.readDeviceFeatures(), ECHO_FEATURES);
  assert.deepEqual(
    regs.log.map((a) => `${a.op}@${a.offset.toString(16)}=${a.op === "w" ? a.value : ""}`),
    ["w@14=0", "r@10=", "w@14=1", "r@10="],
  );
});

Deno.test("MmioTransport.writeDriverFeatures() writes the select before each half", () => {
  const { regs, device, t } = rig();
  t.setStatus(1);
  t.setStatus(3);
  regs.log.length = 0;
  t.writeDriverFeatures(ECHO_FEATURES);
  assert.deepEqual(
    regs.log.map((a) => `${a.offset.toString(16)}=${a.value.toString(16)}`),
    ["24=0", "20=30000000", "24=1", "20=1"],
  );
  assert.equal(device.core.readDriverFeatures(0), 0x30000000);
  assert.equal(device.core.readDriverFeatures(1), 1);
});

Deno.test("MmioTransport.enableQueue() programs size and addresses low half first, ready last", () => {
  const { memory, regs, device, t } = rig();
  const ring = new HandRing(memory, 8);
  t.setStatus(0);
  t.setStatus(1);
  t.setStatus(3);
  t.writeDriverFeatures(ECHO_FEATURES);
  t.setStatus(11);
  regs.log.length = 0;
  t.enableQueue(0, 8, ring.addresses);
  const a = ring.addresses;
  assert.deepEqual(regs.writes().map((w) => [w.offset, w.value]), [
    [MmioReg.QUEUE_SEL, 0],
    [MmioReg.QUEUE_SIZE, 8],
    [MmioReg.QUEUE_DESC_LOW, a.descLo],
    [MmioReg.QUEUE_DESC_HIGH, a.descHi],
    [MmioReg.QUEUE_DRIVER_LOW, a.driverLo],
    [MmioReg.QUEUE_DRIVER_HIGH, a.driverHi],
    [MmioReg.QUEUE_DEVICE_LOW, a.deviceLo],
    [MmioReg.QUEUE_DEVICE_HIGH, a.deviceHi],
    [MmioReg.QUEUE_READY, 1],
  ]);
  const reads = regs.log.filter((x) => x.op === "r").map((x) => x.offset);
  assert.deepEqual(reads, [MmioReg.QUEUE_READY, MmioReg.QUEUE_SIZE_MAX]);
  assert.ok(regs.log.every((x) => x.bits === 32));
  assert.equal(device.core.queue(0)?.size, 8);
  assert.deepEqual(device.core.violations, []);
});

Deno.test("MmioTransport.enableQueue() rejects an absent queue, a bad size and a ready queue", () => {
  const { memory, t } = rig();
  const ring = new HandRing(memory, 8);
  t.setStatus(1);
  t.setStatus(3);
  t.writeDriverFeatures(ECHO_FEATURES);
  t.setStatus(11);
  assert.equal(t.maxQueueSize(2), 0);
  assert.throws(() => t.enableQueue(2, 8, zeroQueue()), /does not have it/);
  assert.throws(() => t.enableQueue(5, 8, zeroQueue()), TransportError);
  assert.throws(() => t.enableQueue(0, 16, ring.addresses), /exceeds the device's maximum 8/);
  assert.throws(() => t.enableQueue(0, 0, ring.addresses), RangeError);
  assert.throws(() => t.enableQueue(0, 32769, ring.addresses), RangeError);
  t.enableQueue(0, 8, ring.addresses);
  assert.throws(() => t.enableQueue(0, 8, ring.addresses), /already enabled/);
});

Deno.test("MmioTransport.notify() writes the queue index to QueueNotify", () => {
  const { memory, regs, model, t } = rig();
  const ring = new HandRing(memory, 8);
  bringUp(t, ring);
  regs.log.length = 0;
  t.notify(0);
  assert.deepEqual(regs.log, [{ op: "w", bits: 32, offset: 0x50, value: 0 }]);
  assert.deepEqual(model.notified, [0]);
});

Deno.test("MmioTransport.takeInterrupt() reads InterruptStatus and acknowledges it", () => {
  const { memory, device, regs, t } = rig();
  bringUp(t, new HandRing(memory, 8));
  device.core.configChanged();
  regs.log.length = 0;
  assert.equal(t.takeInterrupt(), 2);
  assert.deepEqual(regs.log.map((a) => [a.op, a.offset, a.value]), [["r", 0x60, 2], [
    "w",
    0x64,
    2,
  ]]);
  assert.equal(t.takeInterrupt(), 0);
});

Deno.test("MmioTransport reads device config at 0x100 and ConfigGeneration at 0xfc", () => {
  const { device, regs, t } = rig();
  assert.equal(t.readConfig32(0), ECHO_CONFIG_MAGIC);
  assert.equal(t.readConfig16(6), 0xbeef);
  assert.equal(t.readConfig8(0), 0x78);
  const g = t.configGeneration();
  device.core.configChanged();
  assert.notEqual(t.configGeneration(), g);
  assert.ok(regs.log.some((a) => a.offset === 0xfc));
  assert.ok(regs.log.some((a) => a.offset === 0x106 && a.bits === 16));
});

Deno.test("MmioTransport.writeConfig8() reaches the device config after FEATURES_OK", () => {
  const { memory, model, t } = rig();
  bringUp(t, new HandRing(memory, 8));
  t.writeConfig8(4, 0x5a);
  assert.equal(model.config.getUint8(4), 0x5a);
});

Deno.test("MmioTransport drives the echo device end to end without violations", () => {
  const { memory, device, t } = rig();
  const ring = new HandRing(memory, 8);
  bringUp(t, ring);
  for (let i = 0; i < 20; i++) echoRoundTrip(t, memory, ring);
  assert.deepEqual(device.core.violations, []);
});

Deno.test("MmioTransport.getStatus() shows a refused FEATURES_OK", () => {
  const { device, t } = rig();
  device.core.faults.refuseFeatures = true;
  t.setStatus(1);
  t.setStatus(3);
  t.writeDriverFeatures(t.readDeviceFeatures());
  t.setStatus(11);
  assert.equal(t.getStatus(), 3);
});

Deno.test("MmioDevice records a register access that is not 32 bits wide", () => {
  const { device } = rig();
  assert.equal(device.read16(0x70), 0);
  device.write8(0x70, 1);
  assert.equal(device.core.status, 0);
  assert.equal(device.core.violations.length, 2);
  assert.match(device.core.violations[0], /16-bit read of register 0x70/);
});

Deno.test("MmioDevice records reads of write-only and writes of read-only registers", () => {
  const { device } = rig();
  device.read32(MmioReg.QUEUE_NOTIFY);
  device.write32(MmioReg.MAGIC_VALUE, 0);
  device.write32(0x040, 1); // legacy QueuePFN
  assert.equal(device.core.violations.length, 3);
  assert.match(device.core.violations[2], /legacy register 0x40/);
});

Deno.test("MmioDevice resets the device when 0 is written to Status", () => {
  const { memory, model, device, t } = rig();
  bringUp(t, new HandRing(memory, 8));
  const resets = model.resets;
  t.setStatus(0);
  assert.equal(t.getStatus(), 0);
  assert.equal(model.resets, resets + 1);
  assert.equal(device.core.queue(0), null);
  assert.equal(device.read32(MmioReg.QUEUE_READY), 0);
});
