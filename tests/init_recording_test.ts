/** Device initialisation (§3.1.1) over a recording transport: the order of every access. */

import assert from "node:assert/strict";
import {
  beginInit,
  checkNeedsReset,
  DeviceInitError,
  DeviceNeedsResetError,
  failDevice,
  finishInit,
  negotiateFeatures,
  readConfigStable,
  resetDevice,
} from "../driver/virtio/init.ts";
import { STATUS_DEVICE_NEEDS_RESET, STATUS_FAILED } from "../spec/status.ts";
import { VirtioIommu } from "../driver/iommu/device.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import type { QueueAddresses, Transport, TransportKind } from "../transport/transport.ts";
import { ACK, DOK, DRV, FOK, V1 } from "./_init.ts";

/** Options of {@link FakeTransport}. */
interface FakeOptions {
  /** Offered features (default VERSION_1 | bit 0 | bit 3). */
  features?: bigint;
  /** Status reads that still return the old status after a reset (Infinity: never resets). */
  resetReads?: number;
  /** Refuse FEATURES_OK. */
  refuseFeaturesOk?: boolean;
  /** Generation values returned by successive configGeneration() reads (last one repeats). */
  generations?: number[];
}

/** A transport that simulates just enough of a device and logs every call. */
class FakeTransport implements Transport {
  readonly kind: TransportKind = "mmio";
  readonly deviceId = 23;
  readonly log: string[] = [];
  /** Every value written to status, in order. */
  readonly statusWrites: number[] = [];
  status = 0;
  driverFeatures = -1n;
  #features: bigint;
  #resetReads: number;
  #resetReadsLeft = 0;
  #before = 0;
  #refuse: boolean;
  #generations: number[];
  #genReads = 0;

  constructor(options: FakeOptions = {}) {
    this.#features = options.features ?? (V1 | 1n | 8n);
    this.#resetReads = options.resetReads ?? 0;
    this.#refuse = options.refuseFeaturesOk ?? false;
    this.#generations = options.generations ?? [0];
    // Start as a device a previous driver left running.
    this.status = ACK | DRV | FOK | DOK;
  }

  getStatus(): number {
    if (this.#resetReadsLeft > 0) {
      this.#resetReadsLeft--;
      this.log.push(`getStatus=${this.#before}`);
      return this.#before;
    }
    this.log.push(`getStatus=${this.status}`);
    return this.status;
  }
  setStatus(status: number): void {
    this.log.push(`setStatus(${status})`);
    this.statusWrites.push(status);
    if (status === 0) {
      this.#before = this.status;
      this.status = 0;
      this.#resetReadsLeft = this.#resetReads;
      return;
    }
    if (this.#refuse) status &= ~FOK;
    this.status = status | (this.status & STATUS_DEVICE_NEEDS_RESET);
  }
  readDeviceFeatures(): bigint {
    this.log.push("readDeviceFeatures");
    return this.#features;
  }
  writeDriverFeatures(features: bigint): void {
    this.log.push(`writeDriverFeatures(0x${features.toString(16)})`);
    this.driverFeatures = features;
  }
  configGeneration(): number {
    const g = this.#generations[Math.min(this.#genReads, this.#generations.length - 1)];
    this.#genReads++;
    this.log.push(`configGeneration=${g}`);
    return g;
  }
  readConfig8(offset: number): number {
    this.log.push(`readConfig8(${offset})`);
    return 0;
  }
  readConfig16(offset: number): number {
    this.log.push(`readConfig16(${offset})`);
    return 0;
  }
  readConfig32(offset: number): number {
    this.log.push(`readConfig32(${offset})`);
    return 0;
  }
  writeConfig8(offset: number, value: number): void {
    this.log.push(`writeConfig8(${offset},${value})`);
  }
  maxQueueSize(_index: number): number {
    return 0;
  }
  enableQueue(index: number, _size: number, _addresses: QueueAddresses): void {
    this.log.push(`enableQueue(${index})`);
  }
  notify(index: number): void {
    this.log.push(`notify(${index})`);
  }
  resetQueue(index: number): void {
    this.log.push(`resetQueue(${index})`);
  }
  queueResetPending(_index: number): boolean {
    return false;
  }
  queueEnabled(_index: number): boolean {
    return false;
  }
  takeInterrupt(): number {
    return 0;
  }
  /** The calls other than reads of status/generation. */
  actions(): string[] {
    return this.log.filter((l) => !l.startsWith("getStatus") && !l.startsWith("configGen"));
  }
}

/** Asserts that no status write cleared a bit set by the previous non-zero write. */
function assertNeverClears(writes: number[]): void {
  for (let i = 1; i < writes.length; i++) {
    if (writes[i] === 0) continue;
    const prev = writes[i - 1];
    assert.equal(writes[i] & prev, prev, `status write ${writes[i]} cleared bits of ${prev}`);
  }
}

Deno.test("beginInit()/finishInit() follow virtio 1.3 §3.1.1 in order, over a recording transport", async () => {
  const t = new FakeTransport();
  const negotiated = await beginInit(t, { supported: V1 | 1n });
  finishInit(t);
  assert.equal(negotiated, V1 | 1n);
  assert.deepEqual(t.actions(), [
    "setStatus(0)",
    `setStatus(${ACK})`,
    `setStatus(${ACK | DRV})`,
    "readDeviceFeatures",
    `writeDriverFeatures(0x${(V1 | 1n).toString(16)})`,
    `setStatus(${ACK | DRV | FOK})`,
    `setStatus(${ACK | DRV | FOK | DOK})`,
  ]);
  // The FEATURES_OK write is followed by a status read before anything else (step 6).
  const i = t.log.indexOf(`setStatus(${ACK | DRV | FOK})`);
  assert.match(t.log[i + 1], /^getStatus=/);
  // Reset: status read back as 0 before ACKNOWLEDGE is written.
  const r = t.log.indexOf("setStatus(0)");
  assert.equal(t.log[r + 1], "getStatus=0");
  assertNeverClears(t.statusWrites);
  assert.equal(t.statusWrites[t.statusWrites.length - 1] & DOK, DOK);
});

Deno.test("resetDevice() keeps reading status until the device shows 0", async () => {
  const t = new FakeTransport({ resetReads: 5 });
  await resetDevice(t, 1000);
  const reads = t.log.filter((l) => l.startsWith("getStatus"));
  assert.equal(reads.length, 6);
  assert.equal(reads[5], "getStatus=0");
  // Nothing but reads after the reset write.
  assert.deepEqual(t.actions(), ["setStatus(0)"]);
  // And beginInit does not write ACKNOWLEDGE before that 0.
  const t2 = new FakeTransport({ resetReads: 3 });
  await beginInit(t2, { supported: V1 });
  const ack = t2.log.indexOf(`setStatus(${ACK})`);
  // Three stale reads, the read of 0 that ends the wait, then addStatus's read-modify-write.
  assert.deepEqual(t2.log.slice(ack - 5, ack), [
    `getStatus=${ACK | DRV | FOK | DOK}`,
    `getStatus=${ACK | DRV | FOK | DOK}`,
    `getStatus=${ACK | DRV | FOK | DOK}`,
    "getStatus=0",
    "getStatus=0",
  ]);
});

Deno.test("resetDevice() throws DeviceInitError 'reset' when the device never resets", async () => {
  const t = new FakeTransport({ resetReads: Infinity });
  const started = performance.now();
  const error = await resetDevice(t, 30).then(() => null, (e) => e);
  assert.ok(error instanceof DeviceInitError, String(error));
  assert.equal(error.step, "reset");
  assert.ok(performance.now() - started >= 29);
  // beginInit gives up the same way and never goes on to ACKNOWLEDGE.
  const t2 = new FakeTransport({ resetReads: Infinity });
  await assert.rejects(beginInit(t2, { supported: V1, timeoutMs: 20 }), (e: unknown) => {
    assert.ok(e instanceof DeviceInitError);
    assert.equal(e.step, "reset");
    return true;
  });
  assert.deepEqual(t2.statusWrites, [0]);
});

Deno.test("negotiateFeatures() accepts only offered ∩ supported bits, plus VERSION_1", () => {
  const offered = V1 | 1n | (1n << 5n) | (1n << 50n);
  const supported = V1 | 1n | (1n << 7n) | (1n << 50n);
  assert.equal(negotiateFeatures(offered, supported), V1 | 1n | (1n << 50n));
  // VERSION_1 is accepted even if the caller forgot it in `supported`.
  assert.equal(negotiateFeatures(V1 | 1n, 1n), V1 | 1n);
  // Not offered, not written, even when supported.
  assert.equal(negotiateFeatures(V1, V1 | 1n | 2n), V1);
  // A required bit the device does not offer fails.
  assert.throws(() => negotiateFeatures(V1 | 1n, V1 | 4n, 4n), (e: unknown) => {
    assert.ok(e instanceof DeviceInitError);
    assert.equal(e.step, "features");
    assert.match(e.message, /0x4/);
    return true;
  });
});

Deno.test("beginInit() writes only offered ∩ supported features", async () => {
  const t = new FakeTransport({ features: V1 | 1n | (1n << 5n) | (1n << 40n) });
  await beginInit(t, { supported: V1 | 1n | (1n << 7n) | (1n << 40n) });
  assert.equal(t.driverFeatures, V1 | 1n | (1n << 40n));
});

Deno.test("beginInit() refuses a device without VERSION_1 and sets FAILED", async () => {
  const t = new FakeTransport({ features: 1n | 2n });
  await assert.rejects(beginInit(t, { supported: V1 | 1n }), (e: unknown) => {
    assert.ok(e instanceof DeviceInitError);
    assert.equal(e.step, "features");
    return true;
  });
  assert.equal(t.driverFeatures, -1n, "no features may be written");
  const last = t.statusWrites[t.statusWrites.length - 1];
  assert.equal(last & STATUS_FAILED, STATUS_FAILED);
  assert.equal(last & FOK, 0);
  assertNeverClears(t.statusWrites);
});

Deno.test("beginInit() refuses a device missing a required feature and sets FAILED", async () => {
  const t = new FakeTransport({ features: V1 | 1n });
  await assert.rejects(
    beginInit(t, { supported: V1 | 1n | 4n, required: 4n }),
    (e: unknown) => e instanceof DeviceInitError && e.step === "features",
  );
  assert.equal(t.status & STATUS_FAILED, STATUS_FAILED);
});

Deno.test("beginInit() sets FAILED and throws 'features-ok' when FEATURES_OK does not stick", async () => {
  const t = new FakeTransport({ refuseFeaturesOk: true });
  await assert.rejects(beginInit(t, { supported: V1 | 1n }), (e: unknown) => {
    assert.ok(e instanceof DeviceInitError);
    assert.equal(e.step, "features-ok");
    return true;
  });
  assert.equal(t.status & STATUS_FAILED, STATUS_FAILED);
  assert.ok(!t.statusWrites.some((s) => (s & DOK) !== 0), "DRIVER_OK must never be set");
  // The FEATURES_OK write was followed by the re-read that noticed the refusal.
  const i = t.log.indexOf(`setStatus(${ACK | DRV | FOK})`);
  assert.equal(t.log[i + 1], `getStatus=${ACK | DRV}`);
});

Deno.test("finishInit() sets DRIVER_OK last and keeps every earlier bit", async () => {
  const t = new FakeTransport();
  await beginInit(t, { supported: V1 });
  t.enableQueue(0, 8, {} as QueueAddresses);
  finishInit(t);
  const actions = t.actions();
  assert.equal(actions[actions.length - 1], `setStatus(${ACK | DRV | FOK | DOK})`);
  assert.ok(actions.indexOf("enableQueue(0)") < actions.length - 1);
  assertNeverClears(t.statusWrites);
});

Deno.test("finishInit() and checkNeedsReset() throw DeviceNeedsResetError on DEVICE_NEEDS_RESET", async () => {
  const t = new FakeTransport();
  await beginInit(t, { supported: V1 });
  checkNeedsReset(t); // not set: no throw
  t.status |= STATUS_DEVICE_NEEDS_RESET;
  assert.throws(() => checkNeedsReset(t), DeviceNeedsResetError);
  assert.throws(() => finishInit(t), DeviceNeedsResetError);
});

Deno.test("failDevice() sets FAILED without clearing bits and never throws", () => {
  const t = new FakeTransport();
  t.status = ACK | DRV;
  failDevice(t);
  assert.equal(t.status, ACK | DRV | STATUS_FAILED);
  const broken = new FakeTransport();
  broken.setStatus = () => {
    throw new Error("bus error");
  };
  failDevice(broken); // must not throw
});

Deno.test("readConfigStable() retries while the generation changes", () => {
  const t = new FakeTransport({ generations: [1, 2, 2, 3, 3, 3] });
  let reads = 0;
  const value = readConfigStable(t, () => ++reads);
  // (1,2) changed, (2,3) changed, (3,3) stable: three reads.
  assert.equal(reads, 3);
  assert.equal(value, 3);
});

Deno.test("readConfigStable() throws DeviceInitError 'config' when the generation never settles", () => {
  let g = 0;
  const t = new FakeTransport();
  t.configGeneration = () => g++;
  let reads = 0;
  assert.throws(() => readConfigStable(t, () => ++reads, 10), (e: unknown) => {
    assert.ok(e instanceof DeviceInitError);
    assert.equal(e.step, "config");
    return true;
  });
  assert.equal(reads, 10);
});

Deno.test("VirtioIommu.create() refuses a device that is not an IOMMU", async () => {
  const t = new FakeTransport();
  Object.defineProperty(t, "deviceId", { value: 1 });
  await assert.rejects(VirtioIommu.create(t, new SimulatedMemory()), (e: unknown) => {
    assert.ok(e instanceof IommuError);
    assert.equal(e.status, "DRIVER");
    return true;
  });
  assert.deepEqual(t.statusWrites, [], "the device is not touched");
});
