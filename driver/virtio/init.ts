/**
 * Device initialisation (virtio 1.3 §3.1.1), written once over the {@link Transport} interface
 * so MMIO and PCI devices go through exactly the same steps. The steps are numbered as in the
 * spec.
 *
 * @module
 */

import { hex } from "../../util/hex.ts";
import type { Transport } from "../../transport/transport.ts";
import { featureBit, VIRTIO_F_VERSION_1 } from "../../spec/features.ts";
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  statusNames,
} from "../../spec/status.ts";

/** The step of initialisation that failed, for {@link DeviceInitError}. */
export type InitStep = "reset" | "features" | "features-ok" | "config" | "driver-ok";

/** Thrown when a device cannot be initialised; the device is left with FAILED set. */
export class DeviceInitError extends Error {
  /** The step that failed. */
  readonly step: InitStep;
  /** Creates the error for `step` with a message saying what the device did. */
  constructor(step: InitStep, message: string) {
    super(message);
    this.name = "DeviceInitError";
    this.step = step;
  }
}

/** Thrown when the device has set DEVICE_NEEDS_RESET (virtio 1.3 §2.1.2). */
export class DeviceNeedsResetError extends Error {
  /** Creates the error. */
  constructor(message = "The device set DEVICE_NEEDS_RESET: reset it before using it again") {
    super(message);
    this.name = "DeviceNeedsResetError";
  }
}

/** Options for {@link beginInit}. */
export interface InitOptions {
  /** Feature bits the driver understands; only offered ones among these are accepted. */
  supported: bigint;
  /** Feature bits the device must offer (VERSION_1 is always required). */
  required?: bigint;
  /** How long to wait for the device to finish a reset, in ms (default 1000). */
  timeoutMs?: number;
}

/** Default time to wait for a reset to complete. */
const RESET_TIMEOUT_MS = 1000;

/**
 * Resets the device: writes 0 to status, then waits until it reads back 0 (virtio 1.3 §4.1.4.3.2
 * MUST for PCI; §2.4.1 for every transport). Throws {@link DeviceInitError} on timeout.
 */
export async function resetDevice(
  transport: Transport,
  timeoutMs: number = RESET_TIMEOUT_MS,
): Promise<void> {
  transport.setStatus(0);
  const deadline = performance.now() + timeoutMs;
  let spins = 0;
  while (transport.getStatus() !== 0) {
    if (performance.now() > deadline) {
      throw new DeviceInitError(
        "reset",
        `Device did not complete reset within ${timeoutMs} ms (status ${
          statusNames(transport.getStatus())
        })`,
      );
    }
    // Spin briefly (a real device usually resets in microseconds), then yield to the loop.
    if (++spins > 1000) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Sets `bits` in the status byte, keeping the ones already set (the driver MUST NOT clear bits). */
function addStatus(transport: Transport, bits: number): void {
  transport.setStatus(transport.getStatus() | bits);
}

/**
 * Tells the device the driver gave up (virtio 1.3 §3.1.1: SHOULD set FAILED). Never throws: it
 * runs on error paths.
 */
export function failDevice(transport: Transport): void {
  try {
    addStatus(transport, STATUS_FAILED);
  } catch {
    // The device is already unusable; there is nothing more to report.
  }
}

/**
 * Negotiates features: accepts only bits that are both offered and supported, and requires
 * VERSION_1 plus `required` (virtio 1.3 §6: a driver MUST accept VERSION_1 if offered; a
 * modern driver requires it). Pure: returns the bits to write.
 */
export function negotiateFeatures(offered: bigint, supported: bigint, required = 0n): bigint {
  const needed = required | featureBit(VIRTIO_F_VERSION_1);
  const missing = needed & ~offered;
  if (missing !== 0n) {
    throw new DeviceInitError(
      "features",
      `Device does not offer required features ${hex(missing)} (offered ${hex(offered)})`,
    );
  }
  return offered & (supported | needed);
}

/**
 * Steps 1-6 of virtio 1.3 §3.1.1: reset, ACKNOWLEDGE, DRIVER, feature negotiation,
 * FEATURES_OK, and the read-back check. Returns the negotiated features. On failure the
 * device gets FAILED and a {@link DeviceInitError} is thrown. Device-specific setup (queues,
 * config) follows, then {@link finishInit}.
 */
export async function beginInit(transport: Transport, options: InitOptions): Promise<bigint> {
  // 1) Reset the device.
  await resetDevice(transport, options.timeoutMs);
  // 2) Set ACKNOWLEDGE: the guest has noticed the device.
  addStatus(transport, STATUS_ACKNOWLEDGE);
  // 3) Set DRIVER: the guest knows how to drive it.
  addStatus(transport, STATUS_DRIVER);
  // 4) Read the device features and write the subset the driver understands.
  let negotiated: bigint;
  try {
    negotiated = negotiateFeatures(
      transport.readDeviceFeatures(),
      options.supported,
      options.required,
    );
  } catch (error) {
    failDevice(transport);
    throw error;
  }
  transport.writeDriverFeatures(negotiated);
  // 5) Set FEATURES_OK; no new feature bits are accepted after this.
  addStatus(transport, STATUS_FEATURES_OK);
  // 6) Re-read status: FEATURES_OK still set means the device accepted the subset.
  const status = transport.getStatus();
  if ((status & STATUS_FEATURES_OK) === 0) {
    failDevice(transport);
    throw new DeviceInitError(
      "features-ok",
      `Device refused features ${hex(negotiated)} (status ${statusNames(status)})`,
    );
  }
  return negotiated;
}

/**
 * Step 8 of virtio 1.3 §3.1.1: sets DRIVER_OK once queues and config are set up. Throws
 * {@link DeviceNeedsResetError} if the device already asked for a reset.
 */
export function finishInit(transport: Transport): void {
  addStatus(transport, STATUS_DRIVER_OK);
  checkNeedsReset(transport);
}

/** Throws {@link DeviceNeedsResetError} when DEVICE_NEEDS_RESET is set (virtio 1.3 §2.1.2). */
export function checkNeedsReset(transport: Transport): void {
  if ((transport.getStatus() & STATUS_DEVICE_NEEDS_RESET) !== 0) {
    throw new DeviceNeedsResetError();
  }
}

/** Default bound on config-generation retries before giving up. */
const GENERATION_RETRIES = 64;

/**
 * Reads configuration consistently (virtio 1.3 §2.5.1 / §4.1.3.1): repeats `read` until the
 * generation counter is the same before and after. A generation that never settles within
 * `retries` attempts is a {@link DeviceInitError} rather than a hang.
 */
export function readConfigStable<T>(
  transport: Transport,
  read: () => T,
  retries: number = GENERATION_RETRIES,
): T {
  for (let i = 0; i < retries; i++) {
    const before = transport.configGeneration();
    const value = read();
    if (transport.configGeneration() === before) return value;
  }
  throw new DeviceInitError(
    "config",
    `Device config generation did not settle after ${retries} reads`,
  );
}
