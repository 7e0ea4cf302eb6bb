/**
 * The one place where virtio-iommu request outcomes become errors (compare Linux's
 * `viommu_get_req_errno`). Callers catch {@link IommuError}; its `status` is the spec's status
 * name without the `VIRTIO_IOMMU_S_` prefix, or `"DRIVER"` when the driver refused a request
 * before sending it.
 *
 * @module
 */

import { STATUS_NAMES, VIRTIO_IOMMU_S_OK } from "../../spec/iommu.ts";

/** A status name from the spec (virtio 1.3 §5.13.6), or `DRIVER` for a driver-side refusal. */
export type IommuStatus =
  | "OK"
  | "IOERR"
  | "UNSUPP"
  | "DEVERR"
  | "INVAL"
  | "RANGE"
  | "NOENT"
  | "FAULT"
  | "NOMEM"
  | "DRIVER";

/** A virtio-iommu request failed: refused by the device, or refused by the driver before sending. */
export class IommuError extends Error {
  /** The spec's status name, or `DRIVER`. */
  readonly status: IommuStatus;
  /** The raw status byte the device wrote, or -1 for a driver-side refusal or framing failure. */
  readonly code: number;
  /** Creates the error. */
  constructor(status: IommuStatus, code: number, message: string) {
    super(message);
    this.name = "IommuError";
    this.status = status;
    this.code = code;
  }
}

/** A request did not settle within its timeout; the device may be hung. */
export class RequestTimeoutError extends Error {
  /** Creates the error for a request of `kind` that waited `ms` milliseconds. */
  constructor(kind: string, ms: number) {
    super(`${kind} request did not complete within ${ms} ms`);
    this.name = "RequestTimeoutError";
  }
}

/** Pending requests were abandoned because the device was reset or needs a reset. */
export class DeviceResetError extends Error {
  /** Creates the error with the reason. */
  constructor(message: string) {
    super(message);
    this.name = "DeviceResetError";
  }
}

/**
 * A request was in flight on a queue the driver reset on its own (VIRTIO_F_RING_RESET, virtio
 * 1.3 §2.6.1) while the device kept running: the device may or may not have executed it. The
 * driver's records treat it as failed and it puts the device back in step with them.
 */
export class QueueResetError extends DeviceResetError {
  /** Creates the error with the reason. */
  constructor(message: string) {
    super(message);
    this.name = "QueueResetError";
  }
}

/** Returns the name of a status byte (`"OK"`, `"RANGE"`, …) or `"UNKNOWN(n)"`. */
export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `UNKNOWN(${code})`;
}

/**
 * Turns a completed request into its error, or null on success. `written` is the used length
 * and `expected` the size of the device-writable part (virtio 1.3 §5.13.6: a used length of 0
 * means the device could not parse the request; the driver SHOULD treat it as a failure). A
 * short write is an error too, not a success: the status byte may never have been written.
 */
export function requestError(
  kind: string,
  status: number,
  written: number,
  expected: number,
): IommuError | null {
  if (written === 0) {
    return new IommuError(
      "IOERR",
      -1,
      `${kind} request failed: the device returned it without writing (used length 0)`,
    );
  }
  if (written < expected) {
    return new IommuError(
      "IOERR",
      -1,
      `${kind} request failed: the device wrote ${written} of ${expected} bytes`,
    );
  }
  if (status === VIRTIO_IOMMU_S_OK) return null;
  const name = STATUS_NAMES[status];
  if (name === undefined) {
    return new IommuError(
      "IOERR",
      status,
      `${kind} request failed with unknown status ${status}`,
    );
  }
  return new IommuError(
    name as IommuStatus,
    status,
    `${kind} request failed: device returned VIRTIO_IOMMU_S_${name}`,
  );
}

/** A driver-side refusal: the request was not sent. */
export function driverError(message: string): IommuError {
  return new IommuError("DRIVER", -1, message);
}
