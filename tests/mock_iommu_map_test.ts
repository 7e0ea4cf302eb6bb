/** MockIommuDevice MAP (§5.13.6.5) and UNMAP (§5.13.6.6), on a raw harness. */

import assert from "node:assert/strict";
import type { MockIommuDevice } from "../mock/iommu/device.ts";
import { attachRequest, mapRequest, RawHarness, S, unmapRequest } from "./_raw_requests.ts";
import {
  attached,
  F_INPUT_RANGE,
  F_MAP_UNMAP,
  F_MMIO,
  map,
  MMIO,
  QEMU_FEATURES,
  READ,
  WRITE,
} from "./_mock_iommu.ts";

/** A harness with one endpoint (id 1) without reserved regions, granule 1, bypass off. */
function byteHarness(extra: ConstructorParameters<typeof MockIommuDevice>[0] = {}): RawHarness {
  return new RawHarness({ pageSizeMask: 1n, bypass: false, endpoints: [{ id: 1 }], ...extra });
}

// ---------------------------------------------------------------------------------------------
// MAP (virtio 1.3 §5.13.6.5)

Deno.test("MAP records a mapping with its phys address and flags", () => {
  const h = attached();
  assert.equal(
    h.status(mapRequest(1, map(0x2_0000_0000n, 0x2_0000_3fffn, 0x9000_0000n), READ | WRITE)),
    S.OK,
  );
  assert.deepEqual(h.device.mappings(1), [
    { start: 0x2_0000_0000n, end: 0x2_0000_3fffn, phys: 0x9000_0000n, flags: 3 },
  ]);
});

Deno.test("MAP not aligned to the granule is S_RANGE (start, phys, end+1)", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1800n, 0x2fffn, 0x1000n), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn, 0x1001n), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1ffen), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x2000n), READ)), S.RANGE);
  // A granule above 4 GiB: bit 33 is the lowest set bit.
  const big = attached({ pageSizeMask: 0x2_0000_0000n });
  assert.equal(big.status(mapRequest(1, map(0x1_0000_0000n, 0x2_ffff_ffffn, 0n), READ)), S.RANGE);
  assert.equal(big.status(mapRequest(1, map(0x2_0000_0000n, 0x3_ffff_ffffn, 0n), READ)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("MAP up to virt_end = 2^64-1 is aligned and accepted", () => {
  const h = attached();
  assert.equal(
    h.status(mapRequest(1, map(0xffff_ffff_ffff_f000n, 0xffff_ffff_ffff_ffffn, 0x5000n), WRITE)),
    S.OK,
  );
  assert.equal(h.device.mappings(1)[0].end, 0xffff_ffff_ffff_ffffn);
});

Deno.test("MAP with virt_end before virt_start is S_INVAL and a violation", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x2000n, 0x1fffn), READ)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
});

Deno.test("MAP with virt_end == virt_start is S_INVAL unless the granule is one byte", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1000n), READ)), S.INVAL);
  const b = attached({ pageSizeMask: 1n, endpoints: [{ id: 0 }] });
  assert.equal(b.status(mapRequest(1, map(0x1001n, 0x1001n), READ)), S.OK);
});

Deno.test("MAP outside input_range is S_RANGE", () => {
  const h = attached({ inputRange: { start: 0x10000n, end: 0xff_ffff_ffffn } });
  assert.equal(h.status(mapRequest(1, map(0xf000n, 0x10fffn), READ)), S.RANGE);
  assert.equal(h.status(mapRequest(1, map(0xff_ffff_f000n, 0x100_0000_0fffn), READ)), S.RANGE);
  assert.equal(h.ctx.violations.length, 2, "INPUT_RANGE negotiated: the driver broke a MUST");
  assert.equal(h.status(mapRequest(1, map(0x10000n, 0x10fffn), READ)), S.OK);
  const n = attached(
    { inputRange: { start: 0x10000n, end: 0xffffffffn } },
    QEMU_FEATURES & ~F_INPUT_RANGE,
  );
  assert.equal(n.status(mapRequest(1, map(0n, 0xfffn), READ)), S.RANGE);
  assert.deepEqual(n.ctx.violations, []);
});

Deno.test("MAP with an unknown flag bit is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | 8)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), 0x80000000)), S.INVAL);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("MAP with MAP_F_MMIO needs F_MMIO negotiated", () => {
  const h = attached({}, QEMU_FEATURES & ~F_MMIO);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | WRITE | MMIO)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
  assert.match(h.ctx.violations[0], /MMIO/);
  const ok = attached();
  assert.equal(ok.status(mapRequest(1, map(0x1000n, 0x1fffn), READ | WRITE | MMIO)), S.OK);
  assert.equal(ok.device.mappings(1)[0].flags, 7);
});

Deno.test("MAP on an unknown domain is S_NOENT", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(2, map(0x1000n, 0x1fffn), READ)), S.NOENT);
});

Deno.test("MAP on a bypass domain is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(2, 0, 1)), S.OK);
  assert.equal(h.status(mapRequest(2, map(0x1000n, 0x1fffn), READ)), S.INVAL);
});

Deno.test("MAP overlapping an existing mapping is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x3fffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x3000n, 0x4fffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x0n, 0x1fffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x0n, 0xffffn), READ)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0x4000n, 0x4fffn), READ)), S.OK, "touching is fine");
  assert.equal(h.device.mappings(1).length, 2);
});

Deno.test("MAP overlapping a reserved region of an attached endpoint is S_INVAL", () => {
  const h = new RawHarness({
    endpoints: [
      { id: 0, reservedRegions: [{ start: 0xfee00000n, end: 0xfeefffffn, subtype: "msi" }] },
      { id: 1, reservedRegions: [{ start: 0x8000_0000n, end: 0x8000_ffffn, subtype: "reserved" }] },
      { id: 2 },
    ],
  });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(attachRequest(2, 2)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0xfee00000n, 0xfee00fffn), WRITE)), S.INVAL);
  assert.equal(h.status(mapRequest(1, map(0xfed00000n, 0xfee00fffn), WRITE)), S.INVAL);
  assert.equal(
    h.status(mapRequest(1, map(0x8000_0000n, 0x8000_0fffn), WRITE)),
    S.OK,
    "endpoint 1 not attached",
  );
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x8000_f000n, 0x8001_0fffn), WRITE)), S.INVAL);
  assert.equal(
    h.status(mapRequest(2, map(0xfee00000n, 0xfee00fffn), WRITE)),
    S.OK,
    "no regions in domain 2",
  );
});

Deno.test("MAP in QEMU mode skips alignment, input-range and reserved-region checks", () => {
  const h = attached({ qemuCompat: true, inputRange: { start: 0n, end: 0xffff_ffffn } });
  assert.equal(h.status(mapRequest(1, map(0x1800n, 0x27ffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1_0000_0000n, 0x1_0000_0fffn), READ)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0xfee00000n, 0xfee00fffn), READ)), S.OK);
  assert.equal(
    h.status(mapRequest(1, map(0x2000n, 0x2fffn), READ)),
    S.INVAL,
    "overlap still refused",
  );
});

Deno.test("MAP and UNMAP without MAP_UNMAP negotiated are unknown requests and violations", () => {
  const h = attached({}, QEMU_FEATURES & ~F_MAP_UNMAP);
  assert.equal(h.send(mapRequest(1, map(0x1000n, 0x1fffn), READ)).used, 0);
  assert.equal(h.send(unmapRequest(1, 0x1000n, 0x1fffn)).used, 0);
  assert.equal(h.ctx.violations.length, 2);
  assert.deepEqual(h.device.mappings(1), []);
});

// ---------------------------------------------------------------------------------------------
// UNMAP (virtio 1.3 §5.13.6.6)

Deno.test("UNMAP follows the spec's seven examples", () => {
  const cases: {
    maps: [bigint, bigint][];
    unmap: [bigint, bigint];
    status: number;
    left: bigint[];
  }[] = [
    { maps: [], unmap: [0n, 4n], status: S.OK, left: [] },
    { maps: [[0n, 9n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 9n]], unmap: [0n, 4n], status: S.RANGE, left: [0n] },
    { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 4n], status: S.OK, left: [5n] },
    { maps: [[0n, 4n]], unmap: [0n, 9n], status: S.OK, left: [] },
    { maps: [[0n, 4n], [10n, 14n]], unmap: [0n, 14n], status: S.OK, left: [] },
  ];
  for (const [i, c] of cases.entries()) {
    const h = byteHarness();
    assert.equal(h.status(attachRequest(1, 1)), S.OK);
    for (const [s, e] of c.maps) assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
    assert.equal(h.status(unmapRequest(1, c.unmap[0], c.unmap[1])), c.status, `example ${i + 1}`);
    assert.deepEqual(h.device.mappings(1).map((m) => m.start), c.left, `example ${i + 1}`);
  }
});

Deno.test("UNMAP that would split a mapping removes nothing (atomic)", () => {
  const h = byteHarness();
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  for (const [s, e] of [[0n, 4n], [5n, 9n], [10n, 19n]]) {
    assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
  }
  assert.equal(h.status(unmapRequest(1, 0n, 14n)), S.RANGE);
  assert.equal(h.status(unmapRequest(1, 3n, 19n)), S.RANGE);
  assert.deepEqual(h.device.mappings(1).map((m) => m.start), [0n, 5n, 10n]);
});

Deno.test("UNMAP in QEMU mode is not atomic", () => {
  const h = byteHarness({ qemuCompat: true });
  assert.equal(h.status(attachRequest(1, 1)), S.OK);
  for (const [s, e] of [[0n, 4n], [5n, 9n], [10n, 19n]]) {
    assert.equal(h.status(mapRequest(1, map(s, e), READ)), S.OK);
  }
  assert.equal(h.status(unmapRequest(1, 0n, 14n)), S.RANGE);
  assert.deepEqual(h.device.mappings(1).map((m) => m.start), [10n], "earlier removals stay");
});

Deno.test("UNMAP on an unknown domain is S_NOENT, on a bypass domain S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(unmapRequest(1, 0n, 0xfffn)), S.NOENT);
  assert.equal(h.status(attachRequest(2, 0, 1)), S.OK);
  assert.equal(h.status(unmapRequest(2, 0n, 0xfffn)), S.INVAL);
});

Deno.test("UNMAP with non-zero reserved is S_INVAL and unmaps nothing", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(unmapRequest(1, 0x1000n, 0x1fffn, 1)), S.INVAL);
  assert.equal(h.device.mappings(1).length, 1);
  assert.equal(h.status(unmapRequest(1, 0x1000n, 0x1fffn)), S.OK);
  assert.equal(h.device.mappings(1).length, 0);
});

Deno.test("UNMAP with virt_end before virt_start is S_INVAL", () => {
  const h = attached();
  assert.equal(h.status(unmapRequest(1, 0x2000n, 0x1fffn)), S.INVAL);
});

Deno.test("UNMAP of the whole 64-bit space removes everything", () => {
  const h = attached();
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(
    h.status(mapRequest(1, map(0xffff_ffff_ffff_f000n, 0xffff_ffff_ffff_ffffn, 0n), READ)),
    S.OK,
  );
  assert.equal(h.status(unmapRequest(1, 0n, 0xffff_ffff_ffff_ffffn)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});
