/**
 * Checks of the caller's arguments to {@link VirtioIommu} and `RequestBatch`: one rule for the
 * whole API. A bad argument (wrong type, out of range, a bigint where an ID is a number, an
 * option that is not one of its values) is refused with an {@link IommuError} of status
 * `"DRIVER"` whose message names the parameter and the value, `Invalid domain 3n: expected a
 * 32-bit unsigned integer`; nothing is sent. Promise-returning methods reject with it, the
 * others throw it. (The request-level rules, alignment, ranges and reserved regions, are
 * checks.ts; they give the same class.)
 *
 * @module
 */

import { type Address, type Halves, split } from "../../util/u64.ts";
import type { IsolationGroup } from "../topology/resolve.ts";
import { driverError, type IommuError } from "./errors.ts";

/** A value as the message shows it: `3n`, `"x"`, `-4096`, `null`, `[object Object]`. */
export function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null) {
    return String(value);
  }
  if (typeof value === "function") return "a function";
  return Object.prototype.toString.call(value);
}

/** The refusal of argument `name` = `value`, which should have been `expected`. */
export function invalid(name: string, value: unknown, expected: string): IommuError {
  return driverError(`Invalid ${name} ${describe(value)}: expected ${expected}`);
}

/** An ID (domain, endpoint: le32 on the wire) must be an integer in [0, 2^32). */
export function checkU32(value: unknown, name: string): void {
  if (typeof value !== "number" || (value >>> 0) !== value) {
    throw invalid(name, value, "a 32-bit unsigned integer");
  }
}

/** An address or size: a safe integer number or a bigint in [0, 2^64); split into `out`. */
export function checkAddress(value: Address, name: string, out: Halves): Halves {
  try {
    return split(value, name, out);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw invalid(name, value, "a safe integer ≥ 0, or a bigint in [0, 2^64) above 2^53");
  }
}

/** A flag that must be a boolean (or absent, when `optional`). */
export function checkBoolean(value: unknown, name: string, optional = false): void {
  if (typeof value === "boolean" || (optional && value === undefined)) return;
  throw invalid(name, value, optional ? "true, false or undefined" : "true or false");
}

/** A duration in milliseconds: a finite number ≥ 0 (or absent, when `optional`). */
export function checkMs(value: unknown, name: string, optional = false): void {
  if (optional && value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw invalid(name, value, "a finite number of milliseconds ≥ 0");
  }
}

/** An options argument: an object, or absent. */
export function checkOptions(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(name, value, "an options object");
  }
  return value as Record<string, unknown>;
}

/** `VirtioIommuOptions` of `VirtioIommu.create`. */
export function checkCreateOptions(options: unknown): void {
  const o = checkOptions(options, "options");
  if (o.features !== undefined && typeof o.features !== "bigint") {
    throw invalid("options.features", o.features, "a bigint of feature bits");
  }
  checkMs(o.timeoutMs, "options.timeoutMs", true);
  checkMs(o.spinMs, "options.spinMs", true);
  const q = o.maxQueueSize;
  if (q !== undefined && (typeof q !== "number" || !Number.isInteger(q) || q < 2 || q > 32768)) {
    throw invalid("options.maxQueueSize", q, "an integer in 2..32768");
  }
  checkBoolean(o.allowIdentity, "options.allowIdentity", true);
  const s = o.identitySubtype;
  if (s !== undefined && (typeof s !== "number" || (s & 0xff) !== s)) {
    throw invalid("options.identitySubtype", s, "a u8 RESV_MEM subtype");
  }
}

/** `AttachOptions` of attach() and allocateDomain(). */
export function checkAttachOptions(options: unknown): void {
  const o = checkOptions(options, "options");
  checkBoolean(o.bypass, "options.bypass", true);
  if (o.group !== undefined && o.group !== "attach" && o.group !== "refuse") {
    throw invalid("options.group", o.group, `"attach", "refuse" or undefined`);
  }
}

/** The refusal of map()'s options, or null when they are fine (map() rejects, never throws). */
export function mapOptionsError(options: unknown): IommuError | null {
  try {
    checkBoolean(checkOptions(options, "options").split, "options.split", true);
    return null;
  } catch (error) {
    return error as IommuError;
  }
}

/** The options of reset(). */
export function checkResetOptions(options: unknown): void {
  checkBoolean(checkOptions(options, "options").reattach, "options.reattach", true);
}

/** The options of faults(). */
export function checkFaultOptions(options: unknown): void {
  const o = checkOptions(options, "options");
  checkMs(o.idleMs, "options.idleMs", true);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw invalid("options.signal", o.signal, "an AbortSignal or undefined");
  }
}

/** A callback. */
export function checkFunction(value: unknown, name: string): void {
  if (typeof value !== "function") throw invalid(name, value, "a function");
}

/** An index into something of `length` entries. */
export function checkIndex(value: unknown, length: number, name: string): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= length) {
    throw invalid(
      name,
      value,
      length === 0 ? "none (it is empty)" : `an integer in 0..${length - 1}`,
    );
  }
}

/**
 * The isolation groups of setIsolationGroups(): iterable, each with u32 endpoint IDs. Returns
 * them as an array (a generator can be walked only once).
 */
export function checkGroups(groups: Iterable<IsolationGroup>): IsolationGroup[] {
  if (groups == null || typeof groups[Symbol.iterator] !== "function") {
    throw invalid("groups", groups, "an iterable of isolation groups");
  }
  const list = [...groups];
  for (const g of list) {
    const ids: unknown = g?.endpointIds;
    if (!Array.isArray(ids)) throw invalid("group.endpointIds", ids, "an array of endpoint IDs");
    for (const id of ids) checkU32(id, "group endpoint");
  }
  return list;
}
