/**
 * What a check of the catalogue works with: the device under test, fresh raw sessions (each
 * one resets the device first), the endpoints to use, the oracle, and the small vocabulary
 * every check shares: send a request and require OK for a setup step, name what the device
 * answered, say that a rule held, broke, or could not be checked.
 *
 * @module
 */

import { STATUS_NAMES, VIRTIO_IOMMU_S_OK } from "../spec/iommu.ts";
import type { DmaAllocator } from "../transport/dma.ts";
import type { Transport } from "../transport/transport.ts";
import {
  type Answer,
  RawSession,
  type RawSessionOptions,
  readRawConfig,
  type SendOptions,
} from "./session.ts";
import { type DmaEngine, type Level, PreconditionError, type Verdict } from "./types.ts";

/** One device-side rule of the spec and the check that judges it. */
export interface Rule {
  /** Stable identifier, `area.name`, for `--only` and the JSON report. */
  id: string;
  /** The virtio 1.3 section the rule comes from, for example `5.13.6.3.2`. */
  section: string;
  /**
   * The spec keyword. A statement the spec makes without a keyword ("it ceases to exist") is
   * MUST when it defines what an operation does, SHOULD when it describes error handling.
   */
  level: Level;
  /** One line: what the device does. */
  summary: string;
  /** Whether the check needs the DMA oracle (it is skipped without one). */
  oracle?: boolean;
  /** Why the check may take the device down (it then runs only when asked to). */
  hazard?: string;
  /** Runs the check against the device. */
  check(ctx: CheckContext): Promise<Verdict>;
}

/** The rule held. */
export function held(detail: string): Verdict {
  return { held: true, detail };
}

/** The rule did not hold. */
export function broken(detail: string): Verdict {
  return { held: false, detail };
}

/** The rule could not be checked, and why. */
export function skip(reason: string): Verdict {
  return { skipped: reason };
}

/** Holds when every case is empty, else breaks with the cases joined. */
export function verdictOf(problems: readonly string[], ok: string): Verdict {
  return problems.length === 0 ? held(ok) : broken(problems.join("; "));
}

/** A status code's name, `OK` … `NOMEM`, or `status N`. */
export function statusName(status: number): string {
  return STATUS_NAMES[status] ?? `status ${status}`;
}

/** What the device did with a request, in words. */
export function describe(answer: Answer): string {
  const reset = answer.needsReset ? ", DEVICE_NEEDS_RESET set" : "";
  if (answer.ringError !== null) return `broke the ring (${answer.ringError})`;
  if (!answer.answered) return `no answer${reset}`;
  if (answer.status === null) {
    return answer.used === 0
      ? `used length 0, nothing written${reset}`
      : `used length ${answer.used}, which does not cover the status${reset}`;
  }
  return statusName(answer.status) + reset;
}

/** Whether the answer is a status of `expected`. */
export function isStatus(answer: Answer, expected: number): boolean {
  return answer.answered && answer.status === expected;
}

/** The part of the target a check sees. */
export interface CheckTarget {
  /** The transport. */
  transport: Transport;
  /** DMA memory. */
  dma: DmaAllocator;
  /** Endpoints the device manages. */
  endpoints: readonly number[];
  /** An endpoint it does not manage. */
  missingEndpoint: number;
  /** The DMA oracle, if any. */
  oracle?: DmaEngine;
}

/** Options of a {@link CheckContext}. */
export interface CheckContextOptions {
  /** Features the device offered (read once by the runner). */
  offered: bigint;
  /** Request timeout in ms. */
  timeoutMs: number;
  /** Watch time for things that must not happen, in ms. */
  quietMs: number;
  /** Observations shared between the checks of one run. */
  memo: Map<string, Promise<unknown>>;
  /** Features sessions accept by default. */
  features?: bigint;
}

/** The context one check runs in; {@link CheckContext.close} ends every session it opened. */
export class CheckContext {
  /** The device under test. */
  readonly target: CheckTarget;
  /** Features the device offered. */
  readonly offered: bigint;
  /** Request timeout in ms. */
  readonly timeoutMs: number;
  /** Watch time in ms. */
  readonly quietMs: number;
  #memo: Map<string, Promise<unknown>>;
  #features: bigint | undefined;
  #sessions: RawSession[] = [];
  #cleanups: (() => void)[] = [];

  /** Creates the context for one check. */
  constructor(target: CheckTarget, options: CheckContextOptions) {
    this.target = target;
    this.offered = options.offered;
    this.timeoutMs = options.timeoutMs;
    this.quietMs = options.quietMs;
    this.#memo = options.memo;
    this.#features = options.features;
  }

  /** The endpoint checks use: the oracle's when there is one, else the first listed. */
  get endpoint(): number {
    return this.target.oracle?.endpoint ?? this.target.endpoints[0];
  }

  /** A second endpoint, different from {@link CheckContext.endpoint}, or null. */
  get otherEndpoint(): number | null {
    return this.target.endpoints.find((e) => e !== this.endpoint) ?? null;
  }

  /**
   * The device's granule (lowest set bit of page_size_mask, read from config now), at least
   * 4 KiB: the size of the mappings checks make.
   */
  granule(): bigint {
    const mask = readRawConfig(this.target.transport).pageSizeMask;
    const low = mask & -mask;
    return low < 0x1000n ? 0x1000n : low;
  }

  /** Whether the device offered feature `bit`. */
  offers(bit: bigint): boolean {
    return ((this.offered >> bit) & 1n) === 1n;
  }

  /** Resets the device and opens a raw session on it (closed with the context). */
  async session(options: RawSessionOptions = {}): Promise<RawSession> {
    // One device, one session: the previous one is closed (its reset ends it anyway).
    for (const s of this.#sessions) await s.close();
    this.#sessions = [];
    let session: RawSession;
    try {
      session = await RawSession.open(this.target, {
        timeoutMs: this.timeoutMs,
        features: this.#features,
        ...options,
      });
    } catch (error) {
      throw new PreconditionError(`Cannot bring the device up: ${(error as Error).message}`);
    }
    this.#sessions.push(session);
    return session;
  }

  /** Sends `request` and requires status OK: a setup step, not the rule being judged. */
  async ok(
    session: RawSession,
    request: Uint8Array,
    what: string,
    options?: SendOptions,
  ): Promise<Answer> {
    const answer = await session.send(request, options);
    if (!isStatus(answer, VIRTIO_IOMMU_S_OK)) {
      throw new PreconditionError(`${what} answered ${describe(answer)}`);
    }
    return answer;
  }

  /** A value computed once per run and shared by the checks that need it. */
  memo<T>(key: string, compute: () => Promise<T>): Promise<T> {
    let value = this.#memo.get(key) as Promise<T> | undefined;
    if (value === undefined) {
      value = compute();
      this.#memo.set(key, value);
    }
    return value;
  }

  /** Runs `cleanup` when the context closes, after the device was reset. */
  onClose(cleanup: () => void): void {
    this.#cleanups.push(cleanup);
  }

  /** Ends every session (resetting the device), then runs the cleanups. */
  async close(): Promise<void> {
    try {
      for (const s of this.#sessions) await s.close();
    } finally {
      this.#sessions = [];
      for (const cleanup of this.#cleanups.splice(0)) cleanup();
    }
  }
}
