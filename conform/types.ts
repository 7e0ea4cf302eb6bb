/**
 * The vocabulary of the conformance suite: spec keywords, what a check returns, what a run
 * reports, and what a device under test must provide (a transport, DMA memory, the endpoints it manages and,
 * optionally, a DMA engine behind one of them as the translation oracle).
 *
 * @module
 */

import type { DmaAllocator } from "../transport/dma.ts";
import type { Transport } from "../transport/transport.ts";

/** The spec keyword of a rule (RFC 2119 as virtio 1.3 §1.3 uses it). */
export type Level = "MUST" | "SHOULD" | "MAY";

/**
 * The outcome of one rule: `pass`; `fail` (a MUST or MAY rule broken); `deviation` (a SHOULD
 * not met); `skipped` (the rule does not apply to this device, or cannot be checked here, with
 * the reason).
 */
export type Outcome = "pass" | "fail" | "deviation" | "skipped";

/** What a check found: the rule held, did not hold, or could not be checked. */
export type Verdict =
  | { held: true; detail: string }
  | { held: false; detail: string }
  | { skipped: string };

/** The result of one rule in a run. */
export interface RuleResult {
  /** The rule's id. */
  id: string;
  /** Its spec section. */
  section: string;
  /** Its keyword. */
  level: Level;
  /** Its summary. */
  summary: string;
  /** What happened. */
  outcome: Outcome;
  /** What the device did, or why the rule was skipped. */
  detail: string;
  /** How long the check took, in ms. */
  ms: number;
}

/** Counts of a run. */
export interface ConformTotals {
  /** Rules that held. */
  pass: number;
  /** MUST (or MAY) rules broken. */
  fail: number;
  /** SHOULD rules not met. */
  deviation: number;
  /** Rules not checked. */
  skipped: number;
}

/** What {@link runConformance} returns. */
export interface ConformReport {
  /** One result per rule run, in catalogue order. */
  results: RuleResult[];
  /** The counts. */
  totals: ConformTotals;
  /** Features the device offered. */
  offered: bigint;
  /** Whether a MUST rule failed (the CLI then exits 1). */
  mustFailed: boolean;
}

/**
 * A device that can move bytes by DMA through the IOMMU under test: the translation oracle.
 * QEMU's `edu` is one ({@link EduDmaEngine}); the mock device has one too. The engine has a
 * buffer of its own: a DMA read fills it from memory, a DMA write copies it to memory.
 */
export interface DmaEngine {
  /** The endpoint ID the engine's accesses carry. */
  readonly endpoint: number;
  /** The first IOVA the engine cannot reach (edu: 2^28). */
  readonly addressLimit: bigint;
  /** Bytes in the engine's buffer. */
  readonly bufferSize: number;
  /** A DMA read: the engine reads `length` bytes at `iova` into its buffer. */
  read(iova: bigint, length: number): Promise<void>;
  /** A DMA write: the engine writes the first `length` bytes of its buffer to `iova`. */
  write(iova: bigint, length: number): Promise<void>;
}

/** The device under test. */
export interface ConformTarget {
  /** Its transport; the suite resets and initialises the device for every check. */
  transport: Transport;
  /** DMA memory the device can reach at the addresses the regions report. */
  dma: DmaAllocator;
  /** Endpoint IDs the device manages (the first is used when one is needed; two for some). */
  endpoints: readonly number[];
  /** An endpoint ID the device does not manage (for the NOENT rules). */
  missingEndpoint: number;
  /** The DMA oracle; rules that need it are skipped without it. */
  oracle?: DmaEngine;
}

/** Options of {@link runConformance}. */
export interface ConformOptions {
  /** Run only these rule ids (or `area.*` prefixes); default every rule. */
  only?: readonly string[];
  /** Also run rules that may take the device down (default false: they are skipped). */
  hazardous?: boolean;
  /** How long to wait for an answer to one request, in ms (default 1000). */
  timeoutMs?: number;
  /**
   * How long to watch for something that must not happen (an answer before DRIVER_OK, a fault
   * after a DMA), in ms (default 100).
   */
  quietMs?: number;
  /**
   * Features the sessions accept, among those offered (default `SUITE_FEATURES`: every
   * virtio-iommu bit but legacy BYPASS, INDIRECT_DESC, EVENT_IDX, VERSION_1); leave out
   * EVENT_IDX or INDIRECT_DESC to judge the device's other ring paths.
   */
  features?: bigint;
  /** Called with each result as soon as it is known. */
  onResult?: (result: RuleResult) => void;
}

/**
 * Thrown by a check when a step it relies on (not the rule it judges) did not work, for example
 * an ATTACH refused while setting up a MAP rule; the rule is then skipped with this message.
 */
export class PreconditionError extends Error {
  /** Creates the error with a message naming the step and what the device did. */
  constructor(message: string) {
    super(message);
    this.name = "PreconditionError";
  }
}
