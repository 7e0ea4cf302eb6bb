/**
 * 64-bit addresses as u32 halves (driver/iommu/address.ts), checked against BigInt arithmetic.
 */

import assert from "node:assert/strict";
import { formatAddress } from "../util/hex.ts";
import { compare, halves, isAligned, joinAddress, lastOf, split } from "../util/u64.ts";

const U64 = (1n << 64n) - 1n;

/** A small deterministic PRNG (xorshift64*), so failures reproduce. */
function rng(seed: bigint): () => bigint {
  let s = seed;
  return () => {
    s ^= s >> 12n;
    s ^= (s << 25n) & U64;
    s ^= s >> 27n;
    return (s * 0x2545f4914f6cdd1dn) & U64;
  };
}

/** Random 64-bit values biased towards edges (runs of ones/zeros, powers of two). */
function samples(n: number): bigint[] {
  const next = rng(0x9e3779b97f4a7c15n);
  const out: bigint[] = [0n, 1n, U64, 1n << 32n, (1n << 32n) - 1n, 1n << 63n];
  for (let i = 0; i < n; i++) {
    const v = next();
    const shift = v & 63n;
    switch (Number(v >> 61n)) {
      case 0:
        out.push((v >> shift) << shift);
        break;
      case 1:
        out.push(U64 >> shift);
        break;
      case 2:
        out.push(1n << shift);
        break;
      default:
        out.push(v);
    }
  }
  return out;
}

Deno.test("split() splits numbers up to 2^53 - 1 into halves", () => {
  const out = halves();
  assert.equal(split(0, "x", out), out, "writes into and returns `out`");
  assert.deepEqual(out, { lo: 0, hi: 0 });
  assert.deepEqual(split(0x1_2345_6789, "x", out), { lo: 0x2345_6789, hi: 1 });
  assert.deepEqual(split(0xffff_ffff, "x", out), { lo: 0xffff_ffff, hi: 0 });
  assert.deepEqual(split(2 ** 32, "x", out), { lo: 0, hi: 1 });
  assert.deepEqual(split(Number.MAX_SAFE_INTEGER, "x", out), { lo: 0xffff_ffff, hi: 0x1f_ffff });
});

Deno.test("split() rejects negative, fractional, unsafe and non-finite numbers", () => {
  const out = halves();
  for (const bad of [-1, -0.5, 1.5, 2 ** 53, 2 ** 53 + 2, 2 ** 64, NaN, Infinity, -Infinity]) {
    assert.throws(() => split(bad, "iova", out), RangeError, String(bad));
  }
  assert.throws(() => split(2 ** 53, "iova", out), /iova/);
  assert.deepEqual(out, { lo: 0, hi: 0 }, "a failed split leaves `out` alone");
});

Deno.test("split() takes any bigint in [0, 2^64) and rejects the rest", () => {
  const out = halves();
  assert.deepEqual(split(U64, "x", out), { lo: 0xffff_ffff, hi: 0xffff_ffff });
  assert.deepEqual(split(1n << 63n, "x", out), { lo: 0, hi: 0x8000_0000 });
  assert.deepEqual(split(2n ** 53n + 1n, "x", out), { lo: 1, hi: 0x20_0000 });
  assert.throws(() => split(1n << 64n, "size", out), /size/);
  assert.throws(() => split(-1n, "size", out), RangeError);
  for (const v of samples(500)) {
    split(v, "x", out);
    assert.ok(Number.isInteger(out.lo) && out.lo >= 0 && out.lo <= 0xffff_ffff);
    assert.ok(Number.isInteger(out.hi) && out.hi >= 0 && out.hi <= 0xffff_ffff);
    assert.equal(joinAddress(out.lo, out.hi), v);
  }
});

Deno.test("split() of a number and of the same bigint agree", () => {
  const a = halves();
  const b = halves();
  for (const v of samples(300)) {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    assert.deepEqual(split(Number(v), "x", a), split(v, "x", b));
  }
});

Deno.test("joinAddress() and formatAddress() read halves as unsigned, even from int32 values", () => {
  assert.equal(joinAddress(-1, -1), U64);
  assert.equal(joinAddress(0x8000_0000 | 0, 0), 0x8000_0000n);
  assert.equal(formatAddress(0x1000, 0), "0x1000");
  assert.equal(formatAddress(0, 1), "0x100000000");
  assert.equal(formatAddress(0xffff_ffff, 0xffff_ffff), "0xffffffffffffffff");
});

Deno.test("compare() orders by high half first, then low half", () => {
  assert.ok(compare(0xffff_ffff, 0, 0, 1) < 0);
  assert.ok(compare(0, 1, 0xffff_ffff, 0) > 0);
  assert.equal(compare(5, 7, 5, 7), 0);
  assert.ok(compare(4, 7, 5, 7) < 0);
  const s = samples(200);
  const a = halves();
  const b = halves();
  for (let i = 0; i + 1 < s.length; i++) {
    split(s[i], "a", a);
    split(s[i + 1], "b", b);
    assert.equal(
      Math.sign(compare(a.lo, a.hi, b.lo, b.hi)),
      s[i] < s[i + 1] ? -1 : s[i] > s[i + 1] ? 1 : 0,
    );
  }
});

Deno.test("lastOf() computes start + size - 1 with carry, refusing size 0 and overflow", () => {
  const out = halves();
  assert.equal(lastOf(0x1000, 0, 0, 0, out), false, "size 0");
  assert.equal(lastOf(0, 0, 1, 0, out), true);
  assert.deepEqual(out, { lo: 0, hi: 0 });
  // Carry from the low half.
  assert.equal(lastOf(0xffff_f000, 0, 0x2000, 0, out), true);
  assert.deepEqual(out, { lo: 0xfff, hi: 1 });
  // size with only a high half: size - 1 borrows.
  assert.equal(lastOf(0, 0, 0, 1, out), true);
  assert.deepEqual(out, { lo: 0xffff_ffff, hi: 0 });
  assert.equal(lastOf(0x1000, 0, 0, 1, out), true);
  assert.deepEqual(out, { lo: 0xfff, hi: 1 });
  // Ends exactly at 2^64 - 1: fine. One more byte: wraps.
  assert.equal(lastOf(0xffff_f000, 0xffff_ffff, 0x1000, 0, out), true);
  assert.deepEqual(out, { lo: 0xffff_ffff, hi: 0xffff_ffff });
  assert.equal(lastOf(0xffff_ffff, 0xffff_ffff, 1, 0, out), true);
  const before = { ...out };
  assert.equal(lastOf(0xffff_f000, 0xffff_ffff, 0x2000, 0, out), false);
  assert.equal(lastOf(0xffff_ffff, 0xffff_ffff, 2, 0, out), false);
  assert.equal(lastOf(2, 0, 0xffff_ffff, 0xffff_ffff, out), false);
  assert.deepEqual(out, before, "a refused range leaves `out` alone");
  // The largest representable size from 0 covers everything but the last byte.
  assert.equal(lastOf(0, 0, 0xffff_ffff, 0xffff_ffff, out), true);
  assert.deepEqual(out, { lo: 0xffff_fffe, hi: 0xffff_ffff });
});

Deno.test("lastOf() agrees with BigInt arithmetic on random inputs", () => {
  const s = samples(1500);
  const a = halves();
  const b = halves();
  const out = halves();
  for (let i = 0; i + 1 < s.length; i++) {
    const start = s[i];
    const size = s[i + 1] >> (s[i] & 63n); // mix of small and large sizes
    split(start, "start", a);
    split(size, "size", b);
    const ok = lastOf(a.lo, a.hi, b.lo, b.hi, out);
    const expected = size !== 0n && start + size - 1n <= U64;
    assert.equal(ok, expected, `start 0x${start.toString(16)} size 0x${size.toString(16)}`);
    if (ok) assert.equal(joinAddress(out.lo, out.hi), start + size - 1n);
  }
});

Deno.test("isAligned() matches v % 2^shift === 0 for every shift 0..63", () => {
  const h = halves();
  const values = samples(400);
  for (let shift = 0; shift < 64; shift++) {
    const mask = (1n << BigInt(shift)) - 1n;
    // Exact edges for this shift.
    const edges = [
      0n,
      1n << BigInt(shift),
      (1n << BigInt(shift)) + (shift > 0 ? 1n << BigInt(shift - 1) : 1n),
      U64 & ~mask,
      (U64 & ~mask) | (mask === 0n ? 0n : 1n),
      1n << 63n,
    ];
    for (const v of [...edges, ...values]) {
      split(v, "v", h);
      assert.equal(
        isAligned(h.lo, h.hi, shift),
        (v & mask) === 0n,
        `0x${v.toString(16)} shift ${shift}`,
      );
    }
  }
});
