import assert from "node:assert/strict";
import { PciTransport } from "../transport/pci.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { PciFunction, type PciFunctionOptions } from "../mock/pci_device.ts";
import { MemoryRegisters, type RegisterSpace } from "../transport/registers.ts";
import { TransportError } from "../transport/transport.ts";
import { ECHO_CONFIG_MAGIC, ECHO_FEATURES, EchoDevice } from "./_echo_device.ts";
import { HandRing } from "./_hand_ring.ts";
import { RecordingRegisters } from "./_recording.ts";
import { bringUp, echoRoundTrip } from "./_bring_up.ts";

interface Rig {
  memory: SimulatedMemory;
  model: EchoDevice;
  fn: PciFunction;
  config: RecordingRegisters;
  bar4: RecordingRegisters;
  bar: (index: number) => RegisterSpace | null;
}

function rig(options: PciFunctionOptions = {}): Rig {
  const memory = new SimulatedMemory();
  const model = new EchoDevice();
  const fn = new PciFunction(model, memory, options);
  const config = new RecordingRegisters(fn.config);
  const bar4 = new RecordingRegisters(fn.bar(4)!);
  const bar = (index: number): RegisterSpace | null => index === 4 ? bar4 : fn.bar(index);
  return { memory, model, fn, config, bar4, bar };
}

function transport(r: Rig): PciTransport {
  return PciTransport.create(r.config, r.bar);
}

function isTransportError(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown): boolean => e instanceof TransportError && pattern.test(e.message);
}

Deno.test("PciTransport.create() rejects a function that is not virtio", () => {
  const config = new MemoryRegisters(256);
  config.write16(0, 0x8086);
  assert.throws(() => PciTransport.create(config, () => null), isTransportError(/vendor 0x8086/));
  const r = rig({ pciDeviceId: 0x1100 });
  assert.throws(() => transport(r), isTransportError(/device ID 0x1100/));
});

Deno.test("PciTransport.create() refuses a legacy-only transitional device clearly", () => {
  const r = rig({ pciDeviceId: 0x1004, subsystemId: 42, capabilityList: false });
  assert.throws(() => transport(r), isTransportError(/legacy\/transitional .*not supported/));
});

Deno.test("PciTransport.create() drives a transitional device through its modern caps", () => {
  const r = rig({ pciDeviceId: 0x1004, subsystemId: 42 });
  const t = transport(r);
  assert.equal(t.deviceId, 42);
  assert.equal(t.pciDeviceId, 0x1004);
});

Deno.test("PciTransport.create() reads the modern device ID and accepts any revision", () => {
  const r = rig({ revision: 0x7f });
  const t = transport(r);
  assert.equal(t.kind, "pci");
  assert.equal(t.deviceId, 42);
  assert.equal(t.revision, 0x7f);
  assert.equal(t.numQueues, 3);
  assert.deepEqual(r.config.writes(), [], "config space is never written");
});

Deno.test("PciTransport.create() rejects a function without a capability list", () => {
  const r = rig({ capabilityList: false });
  assert.throws(() => transport(r), isTransportError(/no capability list/));
});

Deno.test("PciTransport.create() names a missing capability", () => {
  for (const [type, name] of [[1, "COMMON"], [2, "NOTIFY"], [3, "ISR"], [4, "DEVICE"]] as const) {
    const r = rig({ omitCaps: [type] });
    assert.throws(() => transport(r), isTransportError(new RegExp(`no usable ${name} cap`)));
  }
});

Deno.test("PciTransport uses the first capability of each type", () => {
  const r = rig({
    capsAfter: [
      { cfgType: 1, bar: 4, offset: 0x2000, length: 0x100 },
      { cfgType: 2, bar: 4, offset: 0x3800, length: 0x100, multiplier: 8 },
      { cfgType: 3, bar: 4, offset: 0x1004, length: 1 },
      { cfgType: 4, bar: 4, offset: 0x2100, length: 0x100 },
    ],
  });
  const t = transport(r);
  assert.equal(t.layout.common.offset, 0);
  assert.equal(t.layout.isr.offset, 0x1000);
  assert.equal(t.layout.device.offset, 0x2000);
  assert.equal(t.layout.notify.offset, 0x3000);
  assert.equal(t.layout.notifyOffMultiplier, 4);
});

Deno.test("PciTransport ignores unknown types, non-vendor caps, BARs > 5 and unfit windows", () => {
  const r = rig({
    capsBefore: [
      { cfgType: 9, bar: 4, offset: 0x2000, length: 0x100 }, // VENDOR type: not ours
      { cfgType: 1, bar: 4, offset: 0x2000, length: 0x100, vendor: 0x05 }, // MSI, not vendor
      { cfgType: 1, bar: 7, offset: 0x2000, length: 0x100 }, // bar > 5
      { cfgType: 1, bar: 2, offset: 0, length: 0x100 }, // BAR 2 has no window
      { cfgType: 1, bar: 4, offset: 0x3800, length: 0x1000 }, // runs past the 16 KiB BAR
      { cfgType: 1, bar: 4, offset: 0x2002, length: 0x100 }, // misaligned common cfg
    ],
  });
  const t = transport(r);
  assert.equal(t.layout.common.bar, 4);
  assert.equal(t.layout.common.offset, 0);
  assert.equal(t.layout.common.cap, 0x40 + 6 * 16, "the seventh capability");
});

Deno.test("PciTransport ignores a capability whose bar is above 5 even if a window exists", () => {
  const r = rig({ capsBefore: [{ cfgType: 1, bar: 7, offset: 0x2000, length: 0x100 }] });
  // A careless accessor that would hand out a window for index 7.
  const t = PciTransport.create(r.config, (i) => i === 7 ? r.bar4 : r.bar(i));
  assert.equal(t.layout.common.bar, 4);
  assert.equal(t.layout.common.offset, 0);
});

Deno.test("PciTransport's capability walk terminates on a loop", () => {
  const ok = rig({ lastNext: 0x40 });
  assert.equal(transport(ok).layout.common.offset, 0);
  const missing = rig({ lastNext: 0x40, omitCaps: [4] });
  assert.throws(() => transport(missing), isTransportError(/DEVICE/));
  const selfLoop = rig({
    omitCaps: [1, 2, 3, 4, 5],
    capsBefore: [{ cfgType: 9, bar: 0, offset: 0, length: 0 }],
    lastNext: 0x40,
  });
  assert.throws(() => transport(selfLoop), isTransportError(/COMMON, NOTIFY, ISR, DEVICE/));
});

Deno.test("PciTransport's capability walk stops at a pointer outside config space", () => {
  const r = rig({ lastNext: 0xfd, omitCaps: [4] });
  assert.throws(() => transport(r), isTransportError(/DEVICE/));
  assert.ok(r.config.log.every((a) => a.offset < 256));
});

Deno.test("PciTransport.readDeviceFeatures() and writeDriverFeatures() use the selects", () => {
  const r = rig();
  const t = transport(r);
  t.setStatus(1);
  t.setStatus(3);
  r.bar4.log.length = 0;
  assert.equal(t.readDeviceFeatures(), ECHO_FEATURES);
  t.writeDriverFeatures(ECHO_FEATURES);
  assert.deepEqual(
    r.bar4.log.map((a) => `${a.op}${a.bits}@${a.offset}${a.op === "w" ? "=" + a.value : ""}`),
    [
      "w32@0=0",
      "r32@4",
      "w32@0=1",
      "r32@4",
      "w32@8=0",
      "w32@12=805306368",
      "w32@8=1",
      "w32@12=1",
    ],
  );
  assert.equal(r.fn.core.readDriverFeatures(1), 1);
});

Deno.test("PciTransport.enableQueue() writes addresses low half first and queue_enable=1 last", () => {
  const r = rig();
  const t = transport(r);
  const ring = new HandRing(r.memory, 8);
  r.bar4.log.length = 0;
  bringUp(t, ring);
  const w = r.bar4.writes().filter((a) => a.offset >= 22 && a.offset < 56);
  const a = ring.addresses;
  assert.deepEqual(w.map((x) => [x.bits, x.offset, x.value]), [
    [16, 22, 0],
    [16, 24, 8],
    [32, 32, a.descLo],
    [32, 36, a.descHi],
    [32, 40, a.driverLo],
    [32, 44, a.driverHi],
    [32, 48, a.deviceLo],
    [32, 52, a.deviceHi],
    [16, 28, 1],
  ]);
  assert.equal(a.descHi, 1, "the test memory has a non-zero high half");
  assert.deepEqual(r.fn.core.violations, []);
});

Deno.test("PciTransport never writes 0 to queue_enable", () => {
  const r = rig();
  const t = transport(r);
  const ring = new HandRing(r.memory, 8);
  bringUp(t, ring);
  echoRoundTrip(t, r.memory, ring);
  t.setStatus(0);
  bringUp(t, ring);
  const enables = r.bar4.writes().filter((a) => a.offset === 28);
  assert.equal(enables.length, 2);
  assert.ok(enables.every((a) => a.value === 1));
});

Deno.test("PciTransport.enableQueue() rejects absent queues, bad sizes and enabled queues", () => {
  const r = rig();
  const t = transport(r);
  const ring = new HandRing(r.memory, 8);
  bringUp(t, ring);
  assert.equal(t.maxQueueSize(1), 4);
  assert.equal(t.maxQueueSize(2), 0);
  assert.equal(t.maxQueueSize(9), 0);
  assert.throws(() => t.enableQueue(2, 4, ring.addresses), isTransportError(/does not have it/));
  assert.throws(() => t.enableQueue(3, 4, ring.addresses), isTransportError(/has 3 queues/));
  assert.throws(() => t.enableQueue(1, 8, ring.addresses), isTransportError(/maximum 4/));
  assert.throws(() => t.enableQueue(1, 0, ring.addresses), RangeError);
  assert.throws(() => t.enableQueue(1, 1.5, ring.addresses), RangeError);
  assert.throws(() => t.enableQueue(0, 8, ring.addresses), isTransportError(/already enabled/));
});

Deno.test("PciTransport.enableQueue() refuses a notify address that is not 2-byte aligned (§4.1.4.4.1)", () => {
  // A device must present notify_off_multiplier as 0 or an even power of 2; with 3, queue 1's
  // notify offset 1 × 3 is odd and the driver's 16-bit notify write would fault.
  const r = rig({ queueNotifyOff: [0, 1, 2], notifyMultiplier: 3 });
  const t = transport(r);
  const ring = new HandRing(r.memory, 4);
  assert.throws(() => t.enableQueue(1, 4, ring.addresses), isTransportError(/not 2-byte aligned/));
  // Queue 0's offset 0 × 3 is aligned: the same device's other queue still works.
  t.enableQueue(0, 4, new HandRing(r.memory, 4).addresses);
});

Deno.test("PciTransport.notify() writes 16 bits at offset + queue_notify_off × multiplier", () => {
  const r = rig({ queueNotifyOff: [3, 7, 0] });
  const t = transport(r);
  const ring0 = new HandRing(r.memory, 8);
  const ring1 = new HandRing(r.memory, 4);
  bringUp(t, ring0);
  t.enableQueue(1, 4, ring1.addresses);
  r.bar4.log.length = 0;
  t.notify(0);
  t.notify(1);
  assert.deepEqual(r.bar4.log, [
    { op: "w", bits: 16, offset: 0x3000 + 3 * 4, value: 0 },
    { op: "w", bits: 16, offset: 0x3000 + 7 * 4, value: 1 },
  ]);
  assert.deepEqual(r.model.notified, [0, 1]);
  assert.deepEqual(r.fn.core.violations, []);
});

Deno.test("PciTransport.notify() with multiplier 0 writes every queue at the cap offset", () => {
  const r = rig({ notifyMultiplier: 0 });
  const t = transport(r);
  const ring0 = new HandRing(r.memory, 8);
  const ring1 = new HandRing(r.memory, 4);
  bringUp(t, ring0);
  t.enableQueue(1, 4, ring1.addresses);
  r.bar4.log.length = 0;
  t.notify(1);
  assert.deepEqual(r.bar4.log, [{ op: "w", bits: 16, offset: 0x3000, value: 1 }]);
  assert.deepEqual(r.model.notified, [1]);
});

Deno.test("PciTransport.enableQueue() rejects a notify offset outside the notify area", () => {
  const r = rig({ queueNotifyOff: [0x400] });
  const t = transport(r);
  const ring = new HandRing(r.memory, 8);
  assert.throws(() => bringUp(t, ring), isTransportError(/outside the 4096-byte notify area/));
  assert.ok(!r.bar4.writes().some((a) => a.offset === 28), "queue_enable not written");
});

Deno.test("PciTransport.notify() refuses a queue that was never enabled", () => {
  const r = rig();
  const t = transport(r);
  assert.throws(() => t.notify(1), isTransportError(/never enabled/));
  assert.throws(() => t.notify(77), TransportError);
});

Deno.test("PciTransport.takeInterrupt() reads the ISR, which clears it", () => {
  const r = rig();
  const t = transport(r);
  bringUp(t, new HandRing(r.memory, 8));
  r.fn.core.configChanged();
  r.bar4.log.length = 0;
  assert.equal(t.takeInterrupt(), 2);
  assert.equal(t.takeInterrupt(), 0);
  assert.deepEqual(r.bar4.log.map((a) => [a.op, a.bits, a.offset]), [
    ["r", 8, 0x1000],
    ["r", 8, 0x1000],
  ]);
});

Deno.test("PciTransport reads device config through the DEVICE window", () => {
  const r = rig();
  const t = transport(r);
  assert.equal(t.readConfig32(0), ECHO_CONFIG_MAGIC);
  assert.equal(t.readConfig16(6), 0xbeef);
  assert.equal(t.readConfig8(1), 0x56);
  assert.ok(r.bar4.log.some((a) => a.offset === 0x2006 && a.bits === 16));
  // A config shorter than what the driver reads is the device's fault: TransportError.
  assert.throws(
    () => t.readConfig32(0x1000),
    isTransportError(/outside the 0x1000-byte device config/),
  );
  const g = t.configGeneration();
  r.fn.core.configChanged();
  assert.equal(t.configGeneration(), (g + 1) & 0xff);
  assert.ok(r.bar4.log.some((a) => a.offset === 21 && a.bits === 8));
});

Deno.test("PciTransport drives the echo device end to end without violations", () => {
  const r = rig();
  const t = transport(r);
  const ring = new HandRing(r.memory, 8);
  bringUp(t, ring);
  for (let i = 0; i < 20; i++) echoRoundTrip(t, r.memory, ring);
  t.writeConfig8(4, 9);
  assert.equal(r.model.config.getUint8(4), 9);
  assert.deepEqual(r.fn.core.violations, []);
});

Deno.test("PciFunction records a write of 0 to queue_enable", () => {
  const r = rig();
  r.fn.bar(4)!.write16(28, 0);
  assert.match(r.fn.core.violations[0], /§4\.1\.4\.3\.2: driver wrote 0 to queue_enable/);
});

Deno.test("PciFunction records wrong-width common cfg accesses and capability writes", () => {
  const r = rig();
  const bar = r.fn.bar(4)!;
  assert.equal(bar.read32(20), 0);
  bar.write16(20, 1);
  assert.equal(r.fn.core.status, 0);
  r.fn.config.write8(0x43, 7);
  assert.equal(r.fn.config.read8(0x43), 1, "cfg_type unchanged");
  assert.equal(r.fn.core.violations.length, 3);
  assert.match(r.fn.core.violations[2], /wrote capability bytes/);
});

Deno.test("PciFunction's queue_size reads the maximum after reset", () => {
  const r = rig();
  const t = transport(r);
  const ring = new HandRing(r.memory, 4);
  t.setStatus(1);
  t.setStatus(3);
  t.writeDriverFeatures(ECHO_FEATURES);
  t.setStatus(11);
  t.enableQueue(0, 4, ring.addresses);
  const bar = r.fn.bar(4)!;
  bar.write16(22, 0);
  assert.equal(bar.read16(24), 4);
  t.setStatus(0);
  assert.equal(bar.read16(24), 8);
  assert.equal(bar.read16(28), 0);
});
