/** VERSION_1 and the status-bit shorthands shared by the init_*_test.ts files. */

import {
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
} from "../spec/status.ts";

export const V1 = 1n << 32n;
export const ACK = STATUS_ACKNOWLEDGE;
export const DRV = STATUS_DRIVER;
export const FOK = STATUS_FEATURES_OK;
export const DOK = STATUS_DRIVER_OK;
