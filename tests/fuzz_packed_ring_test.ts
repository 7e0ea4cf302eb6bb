/**
 * Fuzzing of the packed ring's reader of device bytes (tools/fuzz/packed_ring.ts): random used
 * descriptors, ids, lengths and AVAIL/USED bits, anywhere in the ring. `deno task fuzz` runs it
 * with a larger budget.
 */

import assert from "node:assert/strict";
import { fuzzPackedRing } from "../tools/fuzz/packed_ring.ts";

Deno.test("PackedVirtqueue.popUsed() against 3000 devices writing random descriptors: only VirtqueueError or a buffer in flight", () => {
  const f = fuzzPackedRing(3000, 17);
  assert.ok(f.rejected > 100 && f.rejected < 3000, `${f.rejected} broke`);
});
