/**
 * 64-bit addresses as u32 halves (driver/iommu/address.ts), checked against BigInt arithmetic.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { formatAddress } from "../util/hex.ts";
import { compare, halves, isAligned, joinAddress, lastOf, split } from "../util/u64.ts";

const U64 = (1n << 64n) - 1n;

/** 64-bit values biased towards edges: runs of ones and zeros, powers of two, any value. */
const u64: fc.Arbitrary<bigint> = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 }),
  fc.tuple(fc.bigInt({ min: 0n, max: U64 }), fc.nat(63)).map(([v, s]) =>
    (v >> BigInt(s)) << BigInt(s)
  ),
  fc.nat(63).map((s) => U64 >> BigInt(s)),
  fc.nat(63).map((s) => 1n << BigInt(s)),
  fc.constantFrom(0n, 1n, U64, 1n << 32n, (1n << 32n) - 1n, 1n << 63n),
);

/** fast-check settings with a fixed seed, so a failure reproduces (fast-check prints it too). */
function runs(numRuns: number): { numRuns: number; seed: number } {
  return { numRuns, seed: 0x9e37 };
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
  fc.assert(
    fc.property(u64, (v) => {
      split(v, "x", out);
      assert.ok(Number.isInteger(out.lo) && out.lo >= 0 && out.lo <= 0xffff_ffff);
      assert.ok(Number.isInteger(out.hi) && out.hi >= 0 && out.hi <= 0xffff_ffff);
      assert.equal(joinAddress(out.lo, out.hi), v);
    }),
    runs(500),
  );
});

Deno.test("split() of a number and of the same bigint agree", () => {
  const a = halves();
  const b = halves();
  const safe = fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) });
  fc.assert(
    fc.property(fc.oneof(safe, u64.filter((v) => v <= BigInt(Number.MAX_SAFE_INTEGER))), (v) => {
      assert.deepEqual(split(Number(v), "x", a), split(v, "x", b));
    }),
    runs(300),
  );
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
  const a = halves();
  const b = halves();
  fc.assert(
    fc.property(u64, u64, (x, y) => {
      split(x, "a", a);
      split(y, "b", b);
      assert.equal(Math.sign(compare(a.lo, a.hi, b.lo, b.hi)), x < y ? -1 : x > y ? 1 : 0);
      split(x, "b", b);
      assert.equal(compare(a.lo, a.hi, b.lo, b.hi), 0);
    }),
    runs(200),
  );
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
  const a = halves();
  const b = halves();
  const out = halves();
  // Sizes: any value shifted right by 0..63, a mix of small and large.
  const size = fc.tuple(u64, fc.nat(63)).map(([v, s]) => v >> BigInt(s));
  fc.assert(
    fc.property(u64, size, (start, size) => {
      split(start, "start", a);
      split(size, "size", b);
      const ok = lastOf(a.lo, a.hi, b.lo, b.hi, out);
      const expected = size !== 0n && start + size - 1n <= U64;
      assert.equal(ok, expected, `start 0x${start.toString(16)} size 0x${size.toString(16)}`);
      if (ok) assert.equal(joinAddress(out.lo, out.hi), start + size - 1n);
    }),
    runs(1500),
  );
});

Deno.test("isAligned() matches v % 2^shift === 0 for every shift 0..63", () => {
  const h = halves();
  const values = fc.sample(u64, runs(400));
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
