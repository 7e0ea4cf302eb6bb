/**
 * The conformance suite's raw request builders (conform/requests.ts, on spec/iommu.ts) produce
 * the same bytes as the literal-offset builders of tests/_raw_requests.ts, and put what the
 * driver would never send where the spec's tables say.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  attachRequest,
  detachRequest,
  mapRequest,
  probeRequest,
  typedRequest,
  unmapRequest,
} from "../conform/requests.ts";
import * as literal from "./_raw_requests.ts";

Deno.test("conform request builders match the literal byte layouts of virtio 1.3 §5.13.6", () => {
  assert.deepEqual(
    attachRequest({ domain: 7, endpoint: 0x10018, flags: 3, reserved: 0xff }),
    literal.attachRequest(7, 0x10018, 3, 0xff),
  );
  assert.deepEqual(
    detachRequest({ domain: 7, endpoint: 8, reservedFill: 0x11 }),
    literal.detachRequest(7, 8, 0x11111111),
  );
  const range = { start: 0x1000n, end: 0x1_0000_0fffn, phys: 0xfee0_0000n };
  assert.deepEqual(
    mapRequest({
      domain: 2,
      virtStart: range.start,
      virtEnd: range.end,
      physStart: range.phys,
      flags: 9,
    }),
    literal.mapRequest(2, range, 9),
  );
  assert.deepEqual(
    unmapRequest({ domain: 2, virtStart: 0n, virtEnd: 0xffff_ffff_ffff_ffffn, reserved: 5 }),
    literal.unmapRequest(2, 0n, 0xffff_ffff_ffff_ffffn, 5),
  );
  assert.deepEqual(
    probeRequest({ endpoint: 0x18, reservedFill: 0xff }),
    literal.probeRequest(0x18, 0xff),
  );
});

Deno.test("conform request builders put head.reserved in bytes 1-3 and build any type", () => {
  const a = attachRequest({ domain: 1, endpoint: 1, headReserved: 0x030201 });
  assert.deepEqual([...a.subarray(0, 4)], [1, 1, 2, 3]);
  assert.deepEqual([...typedRequest(0xff, 6, { headReserved: 0xffffff })], [
    0xff,
    0xff,
    0xff,
    0xff,
    0,
    0,
  ]);
  assert.equal(typedRequest(0, 2).length, 2);
  assert.throws(() => typedRequest(256, 4), /Request type 256 is not a u8/);
  assert.throws(() => typedRequest(1, -1), RangeError);
});
