/**
 * PROBE property parsing (parseProbeProperties) on hand-built bytes, reserved-region merging
 * (mergeReservedRegions, seed 004's table), and the driver refusing an ATTACH whose reserved
 * regions cannot share a domain.
 */

import assert from "node:assert/strict";
import { IommuError } from "../driver/iommu/errors.ts";
import {
  mergeReservedRegions,
  parseProbeProperties,
  type ReservedRegion,
  ReservedRegionConflictError,
} from "../driver/iommu/probe.ts";
import { KINDS, setup } from "./_fixtures.ts";

/** Builds a property area: `probeSize` bytes at `offset` in a buffer of exactly that end. */
class Area {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  #at: number;
  constructor(readonly offset: number, readonly probeSize: number) {
    this.bytes = new Uint8Array(offset + probeSize);
    this.view = new DataView(this.bytes.buffer);
    this.#at = offset;
    // Garbage before the area must never be read.
    this.bytes.fill(0xee, 0, offset);
  }
  /** A raw header (type word, length) and `body` bytes. */
  prop(typeWord: number, length: number, body: Uint8Array = new Uint8Array(length)): this {
    this.view.setUint16(this.#at, typeWord, true);
    this.view.setUint16(this.#at + 2, length, true);
    this.bytes.set(body.subarray(0, Math.max(0, this.bytes.length - this.#at - 4)), this.#at + 4);
    this.#at += 4 + length;
    return this;
  }
  /** A RESV_MEM property. */
  resv(subtype: number, start: bigint, end: bigint, typeWord = 1, length = 20): this {
    const body = new Uint8Array(Math.max(length, 20));
    const v = new DataView(body.buffer);
    v.setUint8(0, subtype);
    v.setBigUint64(4, start, true);
    v.setBigUint64(12, end, true);
    return this.prop(typeWord, length, body.subarray(0, length));
  }
  parse(options = {}): ReturnType<typeof parseProbeProperties> {
    return parseProbeProperties(this.view, this.offset, this.probeSize, 8, options);
  }
}

const R = (start: bigint, end: bigint): ReservedRegion => ({ kind: "reserved", start, end });
const M = (start: bigint, end: bigint): ReservedRegion => ({ kind: "msi", start, end });
const I = (start: bigint, end: bigint): ReservedRegion => ({ kind: "identity", start, end });

// ---- parseProbeProperties ---------------------------------------------------------------

Deno.test("parseProbeProperties() reads RESV_MEM properties at an offset, sorted by start", () => {
  const a = new Area(72, 128)
    .resv(1, 0xfee00000n, 0xfeefffffn)
    .resv(0, 0x1_0000_0000n, 0x1_ffff_ffffn)
    .resv(0, 0x1000n, 0x1fffn);
  const r = a.parse();
  assert.deepEqual(r, {
    endpoint: 8,
    regions: [R(0x1000n, 0x1fffn), M(0xfee00000n, 0xfeefffffn), R(0x1_0000_0000n, 0x1_ffff_ffffn)],
    unknown: [],
    ignored: 0,
  });
});

Deno.test("parseProbeProperties() stops at type NONE", () => {
  const a = new Area(0, 128).resv(1, 0x1000n, 0x1fffn).prop(0, 20).resv(0, 0x5000n, 0x5fffn);
  assert.deepEqual(a.parse().regions, [M(0x1000n, 0x1fffn)]);
  // Type NONE with reserved bits set is still NONE (type is the low 12 bits)… and ends the list.
  const b = new Area(0, 64).prop(0x1000, 0).resv(1, 0x1000n, 0x1fffn);
  assert.deepEqual(b.parse().regions, []);
});

Deno.test("parseProbeProperties() accepts a property ending exactly at probe_size", () => {
  const a = new Area(8, 48).resv(1, 0x1000n, 0x1fffn).resv(0, 0x3000n, 0x3fffn);
  const r = a.parse();
  assert.equal(r.regions.length, 2);
  assert.equal(r.ignored, 0);
});

Deno.test("parseProbeProperties() ignores a property whose length overruns probe_size, and stops", () => {
  const a = new Area(72, 64).resv(1, 0x1000n, 0x1fffn).prop(1, 0xfffc);
  const r = a.parse();
  assert.deepEqual(r.regions, [M(0x1000n, 0x1fffn)]);
  assert.equal(r.ignored, 1);
  // The buffer ends with the area: nothing past it was read (no RangeError).
  const b = new Area(4, 30).resv(1, 0x1000n, 0x1fffn); // 24 bytes, then 6: a partial header
  b.view.setUint16(4 + 24, 1, true);
  b.view.setUint16(4 + 26, 20, true);
  const rb = b.parse();
  assert.equal(rb.regions.length, 1);
  assert.equal(rb.ignored, 1);
  // Fewer than 4 bytes left: not even a header, parsing just ends.
  const c = new Area(0, 26).resv(1, 0x1000n, 0x1fffn);
  c.bytes[24] = 1;
  assert.deepEqual(c.parse(), {
    endpoint: 8,
    regions: [M(0x1000n, 0x1fffn)],
    unknown: [],
    ignored: 0,
  });
});

Deno.test("parseProbeProperties() steps through zero-length properties without looping", () => {
  const a = new Area(0, 512);
  for (let i = 0; i < 128; i++) a.prop(0x7ff, 0);
  const r = a.parse();
  assert.equal(r.unknown.length, 128);
  assert.deepEqual(r.unknown[127], { type: 0x7ff, length: 0 });
  // Zero-length RESV_MEM is malformed: ignored, and parsing goes on.
  const b = new Area(0, 64).prop(1, 0).resv(1, 0x1000n, 0x1fffn);
  const rb = b.parse();
  assert.deepEqual(rb.regions, [M(0x1000n, 0x1fffn)]);
  assert.equal(rb.ignored, 1);
});

Deno.test("parseProbeProperties() ignores properties with reserved type bits set", () => {
  for (const word of [0x1001, 0x2001, 0x8001, 0xf001]) {
    const a = new Area(0, 64).resv(1, 0x1000n, 0x1fffn, word).resv(0, 0x4000n, 0x4fffn);
    const r = a.parse();
    assert.deepEqual(r.regions, [R(0x4000n, 0x4fffn)], `type word 0x${word.toString(16)}`);
    assert.equal(r.ignored, 1);
    assert.deepEqual(r.unknown, []);
  }
});

Deno.test("parseProbeProperties() skips unknown types by their length and lists them", () => {
  const a = new Area(0, 128).prop(2, 12).prop(0xfff, 3).resv(1, 0x1000n, 0x1fffn);
  const r = a.parse();
  assert.deepEqual(r.unknown, [{ type: 2, length: 12 }, { type: 0xfff, length: 3 }]);
  assert.deepEqual(r.regions, [M(0x1000n, 0x1fffn)]);
});

Deno.test("parseProbeProperties() reads unknown RESV_MEM subtypes as reserved, identity only when asked", () => {
  const a = new Area(0, 128).resv(2, 0x1000n, 0x1fffn).resv(0xff, 0x3000n, 0x3fffn);
  assert.deepEqual(a.parse().regions, [R(0x1000n, 0x1fffn), R(0x3000n, 0x3fffn)]);
  assert.deepEqual(a.parse({ identitySubtype: 2 }).regions, [
    I(0x1000n, 0x1fffn),
    R(0x3000n, 0x3fffn),
  ]);
});

Deno.test("parseProbeProperties() ignores a region whose end is before its start; a longer RESV_MEM is fine", () => {
  const a = new Area(0, 128)
    .resv(0, 0x2000n, 0x1fffn)
    .resv(1, 0x5000n, 0x5000n) // one byte: fine
    .resv(0, 0x8000n, 0x8fffn, 1, 28); // 8 extra bytes: skipped by length
  const r = a.parse();
  assert.deepEqual(r.regions, [M(0x5000n, 0x5000n), R(0x8000n, 0x8fffn)]);
  assert.equal(r.ignored, 1);
});

Deno.test("parseProbeProperties() with probe_size 0 reads nothing", () => {
  const a = new Area(0, 0);
  assert.deepEqual(a.parse(), { endpoint: 8, regions: [], unknown: [], ignored: 0 });
});

// ---- mergeReservedRegions ---------------------------------------------------------------

Deno.test("mergeReservedRegions() follows seed 004's table: R+M=R, M+M=M, R+I=I, M+I=I", () => {
  const A = 0x1000n, B = 0x1fffn;
  assert.deepEqual(mergeReservedRegions([[R(A, B)], [M(A, B)]]), [R(A, B)]);
  assert.deepEqual(mergeReservedRegions([[M(A, B)], [R(A, B)]]), [R(A, B)]);
  assert.deepEqual(mergeReservedRegions([[M(A, B)], [M(A, B)]]), [M(A, B)]);
  assert.deepEqual(mergeReservedRegions([[R(A, B)], [R(A, B)]]), [R(A, B)]);
  assert.deepEqual(mergeReservedRegions([[R(A, B)], [I(A, B)]]), [I(A, B)]);
  assert.deepEqual(mergeReservedRegions([[I(A, B)], [M(A, B)]]), [I(A, B)]);
  assert.deepEqual(mergeReservedRegions([[I(A, B)], [I(A, B)]]), [I(A, B)]);
  // N + R and N + M keep the region.
  assert.deepEqual(mergeReservedRegions([[R(A, B)], []]), [R(A, B)]);
  assert.deepEqual(mergeReservedRegions([[], [M(A, B)]]), [M(A, B)]);
  assert.deepEqual(mergeReservedRegions([[], []]), []);
});

Deno.test("mergeReservedRegions() refuses N+I with ReservedRegionConflictError unless allowed", () => {
  assert.throws(() => mergeReservedRegions([[I(0x1000n, 0x1fffn)], []]), (e: unknown) => {
    assert.ok(e instanceof ReservedRegionConflictError);
    assert.deepEqual(e.region, I(0x1000n, 0x1fffn));
    return true;
  });
  // Partly covered: the uncovered part is the conflict.
  assert.throws(
    () => mergeReservedRegions([[I(0x1000n, 0x2fffn)], [R(0x1000n, 0x1fffn)]]),
    (e: unknown) =>
      e instanceof ReservedRegionConflictError && e.region.start === 0x2000n &&
      e.region.end === 0x2fffn,
  );
  assert.deepEqual(mergeReservedRegions([[I(0x1000n, 0x1fffn)], []], true), [
    I(0x1000n, 0x1fffn),
  ]);
  // A single endpoint's identity region is its own business.
  assert.deepEqual(mergeReservedRegions([[I(0x1000n, 0x1fffn)]]), [I(0x1000n, 0x1fffn)]);
});

Deno.test("mergeReservedRegions() splits partial overlaps and joins adjacent regions of one kind", () => {
  assert.deepEqual(mergeReservedRegions([[R(0n, 0xfffn)], [M(0x800n, 0x17ffn)]]), [
    R(0n, 0xfffn),
    M(0x1000n, 0x17ffn),
  ]);
  assert.deepEqual(mergeReservedRegions([[R(0n, 0xfffn)], [R(0x1000n, 0x1fffn)]]), [
    R(0n, 0x1fffn),
  ]);
  assert.deepEqual(
    mergeReservedRegions([[M(0x100n, 0x1ffn), R(0x1000n, 0x1fffn)], [M(0x100n, 0x1ffn)]]),
    [M(0x100n, 0x1ffn), R(0x1000n, 0x1fffn)],
  );
  // The top of the address space.
  const top = (1n << 64n) - 1n;
  assert.deepEqual(mergeReservedRegions([[R(top - 0xfffn, top)], [M(top, top)]]), [
    R(top - 0xfffn, top),
  ]);
});

// ---- The driver applies the merge rules on ATTACH ---------------------------------------

const identityEndpoints = {
  endpoints: [
    { id: 0x08, reservedRegions: [{ start: 0x8000_0000n, end: 0x8000_ffffn, subtype: 3 }] },
    { id: 0x10, reservedRegions: [] },
    {
      id: 0x18,
      reservedRegions: [{ start: 0x8000_0000n, end: 0x8000_ffffn, subtype: "reserved" as const }],
    },
  ],
};

for (const kind of KINDS) {
  Deno.test(`[${kind}] VirtioIommu.attach() refuses N+I in one domain (DRIVER), allows R+I`, async () => {
    const f = await setup(kind, identityEndpoints, { identitySubtype: 3 });
    try {
      const { iommu, device } = f;
      for (const e of [0x08, 0x10, 0x18]) await iommu.probe(e);
      assert.deepEqual(iommu.reservedRegions(0x08), [I(0x8000_0000n, 0x8000_ffffn)]);
      await iommu.attach(1, 0x08);
      const before = device.requestsHandled;
      await assert.rejects(iommu.attach(1, 0x10), (e: unknown) => {
        assert.ok(e instanceof IommuError);
        assert.equal(e.status, "DRIVER");
        return true;
      });
      assert.equal(device.requestsHandled, before, "nothing sent");
      assert.equal(device.endpointDomain(0x10), null);
      await iommu.attach(1, 0x18); // R + I = I: fine
      assert.deepEqual(device.domains()[0].endpoints, [0x08, 0x18]);
      assert.deepEqual(f.core.violations, []);
    } finally {
      await f.iommu.close();
    }
  });

  Deno.test(`[${kind}] VirtioIommu.attach() allows N+I with allowIdentity`, async () => {
    const f = await setup(kind, identityEndpoints, { identitySubtype: 3, allowIdentity: true });
    try {
      for (const e of [0x08, 0x10]) await f.iommu.probe(e);
      await f.iommu.attach(1, 0x10);
      await f.iommu.attach(1, 0x08);
      assert.deepEqual(f.device.domains()[0].endpoints, [0x08, 0x10]);
    } finally {
      await f.iommu.close();
    }
  });
}
