/**
 * RequestChecks.range() against a bigint reference of its rules (virtio 1.3 §5.13.6.5.1 and
 * §5.13.6.6: granule alignment, no wrap past 2^64, inside input_range). range() has a fast path
 * for small numbers and a general one; on every input, near every boundary, both must give the
 * reference's verdict and halves.
 *
 * @module
 */

import assert from "node:assert/strict";
import { RequestChecks } from "../driver/iommu/checks.ts";
import type { IommuConfig } from "../driver/iommu/config.ts";
import { IommuError } from "../driver/iommu/errors.ts";
import fc from "fast-check";

const U64_MAX = (1n << 64n) - 1n;

function config(granule: number, inputStart: bigint, inputEnd: bigint): IommuConfig {
  return {
    pageSizeMask: ~((1n << BigInt(granule)) - 1n) & U64_MAX,
    inputStart,
    inputEnd,
    domainStart: 0,
    domainEnd: 0xffff_ffff,
    probeSize: 0,
    bypass: null,
  };
}

/** The rules, in bigint arithmetic: the expected [iova, last, phys] or null for a refusal. */
function reference(
  c: IommuConfig,
  granule: number,
  iova: bigint,
  size: bigint,
  phys: bigint | undefined,
): [bigint, bigint, bigint | undefined] | null {
  const page = 1n << BigInt(granule);
  if (iova < 0n || size <= 0n || iova > U64_MAX || size > U64_MAX) return null;
  if (iova % page !== 0n || size % page !== 0n) return null;
  const last = iova + size - 1n;
  if (last > U64_MAX) return null;
  if (iova < c.inputStart || last > c.inputEnd) return null;
  if (phys !== undefined) {
    if (phys < 0n || phys > U64_MAX || phys % page !== 0n || phys + size - 1n > U64_MAX) {
      return null;
    }
  }
  return [iova, last, phys];
}

const join = (h: { lo: number; hi: number }): bigint => (BigInt(h.hi) << 32n) | BigInt(h.lo);

/** Values near the boundaries that matter: 0, the granule, 2^31, 2^32, 2^53, 2^64. */
function interesting(granule: number): fc.Arbitrary<bigint> {
  const bases = [0n, 1n << 31n, 1n << 32n, 1n << 53n, U64_MAX + 1n - (1n << 20n)];
  return fc.tuple(
    fc.constantFrom(...bases),
    fc.integer({ min: -1, max: 3 }),
    fc.oneof({ weight: 3, arbitrary: fc.constant(0n) }, {
      weight: 1,
      arbitrary: fc.constantFrom(-1n, 0n, 1n),
    }),
  ).map(([base, pages, jitter]) => {
    const v = base + BigInt(pages) * (1n << BigInt(granule)) + jitter;
    return v < 0n ? 0n : v;
  });
}

Deno.test("RequestChecks.range() agrees with the bigint reference on both of its paths", () => {
  const configs: Array<[number, bigint, bigint]> = [
    [12, 0n, U64_MAX], // fast path eligible (QEMU's)
    [12, 0n, 0xffff_ffffn], // exactly 32 bits of input: still eligible
    [12, 0x1000n, 0xffff_ffffn], // input_range not starting at 0: general path only
    [16, 0n, (1n << 48n) - 1n],
    [31, 0n, U64_MAX], // granule too large for an int mask: general path only
  ];
  let accepted = 0, refused = 0;
  for (const [granule, start, end] of configs) {
    const c = config(granule, start, end);
    const checks = new RequestChecks(c, 3);
    const v = interesting(granule);
    const cases = fc.tuple(v, v, fc.option(v, { nil: undefined, freq: 3 }));
    fc.assert(
      fc.property(cases, ([iova, size, phys]) => {
        const want = reference(c, granule, iova, size, phys);
        // Numbers where they are exact, so the fast path sees what callers pass.
        const num = (v: bigint): bigint | number =>
          v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
        let got: [bigint, bigint, bigint | undefined] | null;
        try {
          checks.range("map", num(iova), num(size), phys === undefined ? undefined : num(phys));
          got = [
            join(checks.iova),
            join(checks.last),
            phys === undefined ? undefined : join(checks.phys),
          ];
        } catch (error) {
          if (!(error instanceof IommuError) && !(error instanceof RangeError)) throw error;
          got = null;
        }
        assert.deepEqual(
          got,
          want,
          `granule ${granule} input ${start}-${end}: ${iova} ${size} ${phys}`,
        );
        if (want === null) refused++;
        else accepted++;
      }),
      { numRuns: 4000, seed: 0x5eed },
    );
  }
  assert.ok(accepted > 1000 && refused > 1000, `both verdicts covered: ${accepted}/${refused}`);
});
