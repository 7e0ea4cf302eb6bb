/**
 * Every field of `struct virtio_iommu_config` (virtio 1.3 §5.13.4) read as the device presents
 * it, whatever was negotiated: the suite judges the fields, so it reads them all, inside the
 * config-generation loop (§2.5.1), 64-bit ones as two aligned 32-bit halves (§4.1.3.1).
 *
 * @module
 */

import { readConfigStable } from "../driver/virtio/init.ts";
import { readConfig64 } from "../driver/iommu/config.ts";
import type { Transport } from "../transport/transport.ts";
import {
  CONFIG_BYPASS,
  CONFIG_DOMAIN_END,
  CONFIG_DOMAIN_START,
  CONFIG_INPUT_END,
  CONFIG_INPUT_START,
  CONFIG_PAGE_SIZE_MASK,
  CONFIG_PROBE_SIZE,
} from "../spec/iommu.ts";

/** Every config field, read whatever was negotiated (§5.13.4). */
export interface RawConfig {
  /** `page_size_mask`. */
  pageSizeMask: bigint;
  /** `input_range.start`. */
  inputStart: bigint;
  /** `input_range.end`. */
  inputEnd: bigint;
  /** `domain_range.start`. */
  domainStart: number;
  /** `domain_range.end`. */
  domainEnd: number;
  /** `probe_size`. */
  probeSize: number;
  /** `bypass`, all 8 bits. */
  bypass: number;
}

/** Reads every field of `struct virtio_iommu_config` inside the generation loop (§2.5.1). */
export function readRawConfig(transport: Transport): RawConfig {
  return readConfigStable(transport, () => ({
    pageSizeMask: readConfig64(transport, CONFIG_PAGE_SIZE_MASK),
    inputStart: readConfig64(transport, CONFIG_INPUT_START),
    inputEnd: readConfig64(transport, CONFIG_INPUT_END),
    domainStart: transport.readConfig32(CONFIG_DOMAIN_START),
    domainEnd: transport.readConfig32(CONFIG_DOMAIN_END),
    probeSize: transport.readConfig32(CONFIG_PROBE_SIZE),
    bypass: transport.readConfig8(CONFIG_BYPASS),
  }));
}
