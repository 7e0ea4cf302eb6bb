/** MockIommuDevice ATTACH (§5.13.6.3) and DETACH (§5.13.6.4), on a raw harness. */

import assert from "node:assert/strict";
import { attachRequest, detachRequest, mapRequest, RawHarness, S } from "./_raw_requests.ts";
import { F_BYPASS_CONFIG, F_DOMAIN_RANGE, map, QEMU_FEATURES, READ } from "./_mock_iommu.ts";

// ---------------------------------------------------------------------------------------------
// ATTACH (virtio 1.3 §5.13.6.3)

Deno.test("ATTACH attaches an endpoint and creates the domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10)), S.OK);
  assert.equal(h.device.endpointDomain(0x10), 3);
  assert.deepEqual(h.device.domains(), [{ id: 3, bypass: false, endpoints: [0x10], mappings: 0 }]);
});

Deno.test("ATTACH with non-zero reserved is S_INVAL (QEMU accepts it)", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10, 0, 1)), S.INVAL);
  assert.equal(h.device.endpointDomain(0x10), null);
  const q = new RawHarness({ qemuCompat: true });
  assert.equal(q.status(attachRequest(3, 0x10, 0, 0x01000000)), S.OK);
});

Deno.test("ATTACH with an unknown flag bit is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x10, 2)), S.INVAL);
  assert.equal(h.status(attachRequest(3, 0x10, 0x80000001)), S.INVAL);
  assert.deepEqual(h.device.domains(), []);
});

Deno.test("ATTACH_F_BYPASS without BYPASS_CONFIG negotiated is S_INVAL and a violation", () => {
  const h = new RawHarness({}, QEMU_FEATURES & ~F_BYPASS_CONFIG);
  assert.equal(h.status(attachRequest(3, 0x10, 1)), S.INVAL);
  assert.equal(h.ctx.violations.length, 1);
  assert.equal(h.device.endpointDomain(0x10), null);
});

Deno.test("ATTACH of an unknown endpoint is S_NOENT", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(3, 0x11)), S.NOENT);
  assert.deepEqual(h.device.domains(), []);
});

Deno.test("ATTACH to a domain outside domain_range is S_RANGE when DOMAIN_RANGE is negotiated", () => {
  const h = new RawHarness({ domainRange: { start: 10, end: 20 } });
  assert.equal(h.status(attachRequest(9, 0)), S.RANGE);
  assert.equal(h.status(attachRequest(21, 0)), S.RANGE);
  assert.equal(h.ctx.violations.length, 2);
  assert.equal(h.status(attachRequest(10, 0)), S.OK);
  assert.equal(h.status(attachRequest(20, 8)), S.OK);
  const n = new RawHarness(
    { domainRange: { start: 10, end: 20 } },
    QEMU_FEATURES & ~F_DOMAIN_RANGE,
  );
  assert.equal(n.status(attachRequest(9, 0)), S.OK, "without DOMAIN_RANGE any domain is valid");
});

Deno.test("ATTACH with a bypass flag that mismatches the domain is S_INVAL without side effect", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 8, 1)), S.OK);
  // Endpoint 0 asks to join bypass domain 2 without the flag, then domain 1 with it.
  assert.equal(h.status(attachRequest(2, 0)), S.INVAL);
  assert.equal(h.status(attachRequest(1, 0, 1)), S.INVAL);
  assert.equal(h.device.endpointDomain(0), 1, "no implicit detach happened");
  assert.equal(h.device.mappings(1).length, 1, "domain 1 and its mapping survive");
});

Deno.test("ATTACH bypass mismatch in QEMU mode detaches first (QEMU 7.2 side effect)", () => {
  const h = new RawHarness({ qemuCompat: true });
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 8, 1)), S.OK);
  assert.equal(h.status(attachRequest(2, 0)), S.INVAL);
  assert.equal(h.device.endpointDomain(0), null);
  assert.deepEqual(h.device.domains().map((d) => d.id), [2], "domain 1 was destroyed");
});

Deno.test("ATTACH of an attached endpoint detaches it implicitly and destroys an emptied domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(2, 0)), S.OK);
  assert.equal(h.device.endpointDomain(0), 2);
  assert.deepEqual(h.device.domains(), [{ id: 2, bypass: false, endpoints: [0], mappings: 0 }]);
  // The ID is reusable and the old mappings are gone.
  assert.equal(h.status(attachRequest(1, 8)), S.OK);
  assert.deepEqual(h.device.mappings(1), []);
});

Deno.test("ATTACH to the domain the endpoint is already in keeps the domain and its mappings", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.device.mappings(1).length, 1);
});

Deno.test("ATTACH of a second endpoint shares the domain; the domain outlives the first leaving", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(attachRequest(1, 8)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(attachRequest(5, 0)), S.OK);
  assert.deepEqual(h.device.domains(), [
    { id: 1, bypass: false, endpoints: [8], mappings: 1 },
    { id: 5, bypass: false, endpoints: [0], mappings: 0 },
  ]);
});

Deno.test("ATTACH with ATTACH_F_BYPASS creates and joins a bypass domain", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(4, 0, 1)), S.OK);
  assert.equal(h.status(attachRequest(4, 8, 1)), S.OK);
  assert.deepEqual(h.device.domains(), [{ id: 4, bypass: true, endpoints: [0, 8], mappings: 0 }]);
});

// ---------------------------------------------------------------------------------------------
// DETACH (virtio 1.3 §5.13.6.4)

Deno.test("DETACH of the last endpoint makes the domain cease to exist", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.OK);
  assert.equal(h.status(detachRequest(1, 0)), S.OK);
  assert.equal(h.device.endpointDomain(0), null);
  assert.deepEqual(h.device.domains(), []);
  assert.equal(h.status(mapRequest(1, map(0x1000n, 0x1fffn), READ)), S.NOENT);
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.deepEqual(h.device.mappings(1), [], "a re-created domain starts empty");
});

Deno.test("DETACH of an unknown endpoint is S_NOENT", () => {
  const h = new RawHarness();
  assert.equal(h.status(detachRequest(1, 0x11)), S.NOENT);
});

Deno.test("DETACH from a domain the endpoint is not attached to is S_INVAL", () => {
  const h = new RawHarness();
  assert.equal(h.status(detachRequest(1, 0)), S.INVAL, "not attached at all");
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(detachRequest(2, 0)), S.INVAL, "attached elsewhere");
  assert.equal(h.device.endpointDomain(0), 1);
});

Deno.test("DETACH ignores its reserved field", () => {
  const h = new RawHarness();
  assert.equal(h.status(attachRequest(1, 0)), S.OK);
  assert.equal(h.status(detachRequest(1, 0, 0xffffffff)), S.OK);
  assert.deepEqual(h.ctx.violations, []);
});
