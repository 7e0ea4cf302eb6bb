/**
 * Device status bits (virtio 1.3 §2.1).
 *
 * @module
 */

/** The guest has noticed the device. */
export const STATUS_ACKNOWLEDGE = 1;
/** The guest knows how to drive the device. */
export const STATUS_DRIVER = 2;
/** The driver is set up and ready to drive the device. */
export const STATUS_DRIVER_OK = 4;
/** The driver has acknowledged the features it understands; negotiation is complete. */
export const STATUS_FEATURES_OK = 8;
/** The device has hit an error it cannot recover from without a reset. */
export const STATUS_DEVICE_NEEDS_RESET = 64;
/** Something went wrong in the guest and it gave up on the device. */
export const STATUS_FAILED = 128;

const NAMES: ReadonlyArray<[number, string]> = [
  [STATUS_ACKNOWLEDGE, "ACKNOWLEDGE"],
  [STATUS_DRIVER, "DRIVER"],
  [STATUS_FEATURES_OK, "FEATURES_OK"],
  [STATUS_DRIVER_OK, "DRIVER_OK"],
  [STATUS_DEVICE_NEEDS_RESET, "DEVICE_NEEDS_RESET"],
  [STATUS_FAILED, "FAILED"],
];

/** Names the bits set in a status byte, for example `"ACKNOWLEDGE|DRIVER"` (`"0"` for none). */
export function statusNames(status: number): string {
  const names = NAMES.filter(([bit]) => (status & bit) !== 0).map(([, name]) => name);
  return names.length === 0 ? "0" : names.join("|");
}
