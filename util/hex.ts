/**
 * The one hex formatter: every message, table and JSON field that shows a number in hex goes
 * through here, so `0x1000`, `0xfee00000` and `0000:00:02.0` look the same everywhere.
 *
 * @module
 */

/** `value` as `0x…` lowercase hex (`-0x…` when negative); the spec's way of writing addresses. */
export function hex(value: number | bigint): string {
  if (value < 0) return "-0x" + (-value).toString(16);
  return "0x" + value.toString(16);
}

/**
 * The 64-bit value given as u32 halves, as `0x…` hex, without a `bigint` (the form addresses take
 * inside the driver).
 */
export function formatAddress(lo: number, hi: number): string {
  const h = hi >>> 0;
  const l = lo >>> 0;
  if (h === 0) return "0x" + l.toString(16);
  return "0x" + h.toString(16) + l.toString(16).padStart(8, "0");
}

/** `value`'s hex digits, zero-padded to `width`, no prefix (as in the BDF `0000:00:02.0`). */
export function hexDigits(value: number, width: number): string {
  return value.toString(16).padStart(width, "0");
}
