/**
 * `viommu` conformance: a suite that judges any virtio-iommu device against virtio 1.3 §5.13
 * (and the generic device rules a driver can observe), rule by rule, from the guest side; raw
 * requests the driver would never send; and a DMA oracle (QEMU's `edu`, or the mock's engine)
 * that shows what the device really lets through. Needs no permissions itself: a real device
 * comes from `host.ts`.
 *
 * @example Judge the mock device
 * ```ts
 * import { MmioTransport, SimulatedMemory } from "./mod.ts";
 * import { MmioDevice, MockDmaEngine, MockIommuDevice } from "./testing.ts";
 * import { runConformance } from "./conform.ts";
 *
 * const memory = new SimulatedMemory();
 * const device = new MockIommuDevice();
 * const report = await runConformance({
 *   transport: MmioTransport.create(new MmioDevice(device, memory)),
 *   dma: memory,
 *   endpoints: [0x08, 0x10],
 *   missingEndpoint: 0xff,
 *   oracle: new MockDmaEngine(device, memory, { endpoint: 0x08 }),
 * }, { only: ["attach.*"] });
 * console.log(report.totals); // every ATTACH rule passes
 * ```
 *
 * @module
 */

export { runConformance } from "./conform/runner.ts";
export { CATALOGUE, countByLevel, findRule, selectRules } from "./conform/catalogue.ts";
export {
  broken,
  CheckContext,
  type CheckContextOptions,
  type CheckTarget,
  describe,
  held,
  type Rule,
  skip,
  statusName,
} from "./conform/context.ts";
export {
  type ConformOptions,
  type ConformReport,
  type ConformTarget,
  type ConformTotals,
  type DmaEngine,
  type Level,
  type Outcome,
  PreconditionError,
  type RuleResult,
  type Verdict,
} from "./conform/types.ts";
export {
  type Answer,
  BAD_ADDRESS,
  type FaultRecord,
  type RawConfig,
  type RawQueue,
  RawSession,
  type RawSessionOptions,
  readRawConfig,
  type SendOptions,
  SENTINEL,
  SUITE_FEATURES,
} from "./conform/session.ts";
export {
  type AttachFields,
  attachRequest,
  type DetachFields,
  detachRequest,
  type HeadFields,
  type MapFields,
  mapRequest,
  type ProbeFields,
  probeRequest,
  typedRequest,
  type UnmapFields,
  unmapRequest,
} from "./conform/requests.ts";
export { EduDmaEngine } from "./conform/edu.ts";
