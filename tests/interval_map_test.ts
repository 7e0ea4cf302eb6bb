// IntervalMap: the UNMAP examples of §5.13.6.6, insert and overlap rules, find, 64-bit edges.

import assert from "node:assert/strict";
import { IntervalMap } from "../util/interval_map.ts";
import { find, list, map, MAX64, overlaps, unmap } from "./_interval_map.ts";

// ---- virtio 1.3 §5.13.6.6: the seven UNMAP examples (reference §1.7 table). ----

interface UnmapExample {
  name: string;
  maps: Array<[bigint, bigint]>;
  unmap: [bigint, bigint];
  result: number;
  left: Array<[bigint, bigint]>;
}

const UNMAP_EXAMPLES: UnmapExample[] = [
  { name: "1: unmap(0,4) on an empty space is OK", maps: [], unmap: [0n, 4n], result: 0, left: [] },
  {
    name: "2: map(0,9); unmap(0,9) removes it",
    maps: [[0n, 9n]],
    unmap: [0n, 9n],
    result: 1,
    left: [],
  },
  {
    name: "3: map(0,4); map(5,9); unmap(0,9) removes both",
    maps: [[0n, 4n], [5n, 9n]],
    unmap: [0n, 9n],
    result: 2,
    left: [],
  },
  {
    name: "4: map(0,9); unmap(0,4) fails and removes nothing",
    maps: [[0n, 9n]],
    unmap: [0n, 4n],
    result: -1,
    left: [[0n, 9n]],
  },
  {
    name: "5: map(0,4); map(5,9); unmap(0,4) removes only the first",
    maps: [[0n, 4n], [5n, 9n]],
    unmap: [0n, 4n],
    result: 1,
    left: [[5n, 9n]],
  },
  {
    name: "6: map(0,4); unmap(0,9) removes it",
    maps: [[0n, 4n]],
    unmap: [0n, 9n],
    result: 1,
    left: [],
  },
  {
    name: "7: map(0,4); map(10,14); unmap(0,14) removes both",
    maps: [[0n, 4n], [10n, 14n]],
    unmap: [0n, 14n],
    result: 2,
    left: [],
  },
];

for (const example of UNMAP_EXAMPLES) {
  Deno.test(`IntervalMap.removeRange() follows UNMAP example ${example.name}`, () => {
    const m = new IntervalMap();
    for (const [s, e] of example.maps) assert.notEqual(map(m, s, e), -1);
    assert.equal(unmap(m, example.unmap[0], example.unmap[1]), example.result);
    assert.deepEqual(list(m), example.left);
    assert.equal(m.size, example.left.length);
    m.checkInvariants();
  });
}

Deno.test("IntervalMap.removeRange() refuses a range whose end splits an interval", () => {
  const m = new IntervalMap();
  map(m, 0n, 4n);
  map(m, 5n, 9n);
  map(m, 20n, 29n);
  // [0, 25] covers the first two fully but cuts [20, 29]: nothing may go.
  assert.equal(unmap(m, 0n, 25n), -1);
  assert.deepEqual(list(m), [[0n, 4n], [5n, 9n], [20n, 29n]]);
  // Starting inside [5, 9] is refused too.
  assert.equal(unmap(m, 7n, 40n), -1);
  assert.equal(m.size, 3);
  // A range in a gap removes nothing and succeeds.
  assert.equal(unmap(m, 10n, 19n), 0);
  assert.equal(m.size, 3);
});

// ---- insert() and overlap rules. ----

Deno.test("IntervalMap.insert() accepts intervals that only touch", () => {
  const m = new IntervalMap();
  assert.notEqual(map(m, 0n, 4n), -1);
  assert.notEqual(map(m, 5n, 9n), -1);
  assert.notEqual(map(m, 10n, 10n), -1);
  assert.deepEqual(list(m), [[0n, 4n], [5n, 9n], [10n, 10n]]);
});

Deno.test("IntervalMap.insert() rejects every kind of overlap and leaves the map unchanged", () => {
  const m = new IntervalMap();
  const slot = map(m, 100n, 199n, 0x5000n, 1);
  const cases: Array<[bigint, bigint]> = [
    [100n, 199n], // identical
    [50n, 100n], // reaches the first address
    [199n, 300n], // starts at the last address
    [120n, 130n], // inside
    [0n, 1000n], // covers
    [150n, 250n], // straddles the end
    [100n, 100n], // single first address
    [199n, 199n], // single last address
  ];
  for (const [s, e] of cases) {
    assert.equal(map(m, s, e), -1, `[${s}, ${e}] should be rejected`);
    assert.equal(overlaps(m, s, e), true, `[${s}, ${e}] should overlap`);
  }
  assert.equal(m.size, 1);
  assert.deepEqual(list(m), [[100n, 199n]]);
  assert.equal(m.physLo(slot), 0x5000);
  assert.equal(m.flags(slot), 1);
  assert.equal(overlaps(m, 0n, 99n), false);
  assert.equal(overlaps(m, 200n, 200n), false);
});

Deno.test("IntervalMap.insert() stores the payload returned by the slot accessors", () => {
  const m = new IntervalMap();
  const slot = map(m, 0x1_2345_6000n, 0x1_2345_6fffn, 0xabcd_0000_1000n, 0x7);
  assert.equal(m.startLo(slot), 0x2345_6000);
  assert.equal(m.startHi(slot), 1);
  assert.equal(m.endLo(slot), 0x2345_6fff);
  assert.equal(m.endHi(slot), 1);
  assert.equal(m.physLo(slot), 0x1000);
  assert.equal(m.physHi(slot), 0xabcd);
  assert.equal(m.flags(slot), 7);
});

Deno.test("IntervalMap rejects end below start and halves that are not u32", () => {
  const m = new IntervalMap();
  assert.throws(() => map(m, 10n, 9n), RangeError);
  assert.throws(() => unmap(m, 0x1_0000_0000n, 0xffff_ffffn), RangeError);
  assert.throws(() => overlaps(m, 5n, 4n), RangeError);
  assert.throws(() => m.insert(-1, 0, 0, 1, 0, 0, 0), RangeError);
  assert.throws(() => m.insert(0, 0, 0x1_0000_0000, 0, 0, 0, 0), RangeError);
  assert.throws(() => m.insert(0, 0, 1.5, 0, 0, 0, 0), RangeError);
  assert.throws(() => m.insert(0, 0, 1, 0, 0, 0, -1), RangeError);
  assert.throws(() => m.find(Number.NaN, 0), RangeError);
  assert.equal(m.size, 0);
  assert.throws(() => new IntervalMap(0), RangeError);
  assert.throws(() => new IntervalMap(16, { nodeCapacity: 4 }), RangeError);
});

// ---- find() ----

Deno.test("IntervalMap.find() hits first and last addresses and misses just outside", () => {
  const m = new IntervalMap();
  const a = map(m, 0x1000n, 0x1fffn);
  const b = map(m, 0x2000n, 0x2fffn);
  const c = map(m, 0x5000n, 0x5000n);
  assert.equal(find(m, 0xfffn), -1);
  assert.equal(find(m, 0x1000n), a);
  assert.equal(find(m, 0x1fffn), a);
  assert.equal(find(m, 0x2000n), b);
  assert.equal(find(m, 0x2fffn), b);
  assert.equal(find(m, 0x3000n), -1);
  assert.equal(find(m, 0x4fffn), -1);
  assert.equal(find(m, 0x5000n), c);
  assert.equal(find(m, 0x5001n), -1);
  assert.equal(find(m, 0n), -1);
  assert.equal(find(m, MAX64), -1);
});

Deno.test("IntervalMap.find() on an empty map returns -1", () => {
  const m = new IntervalMap();
  assert.equal(find(m, 0n), -1);
  assert.equal(find(m, MAX64), -1);
  assert.equal(overlaps(m, 0n, MAX64), false);
});

// ---- 64-bit edges. ----

Deno.test("IntervalMap handles an interval ending at 2^64-1 without computing end+1", () => {
  const m = new IntervalMap();
  const top = map(m, MAX64 - 0xfffn, MAX64);
  assert.notEqual(top, -1);
  assert.equal(m.endLo(top), 0xffff_ffff);
  assert.equal(m.endHi(top), 0xffff_ffff);
  assert.equal(find(m, MAX64), top);
  assert.equal(find(m, MAX64 - 0xfffn), top);
  assert.equal(find(m, MAX64 - 0x1000n), -1);
  // Touching below is fine; anything reaching the top overlaps.
  assert.notEqual(map(m, MAX64 - 0x1fffn, MAX64 - 0x1000n), -1);
  assert.equal(map(m, MAX64, MAX64), -1);
  assert.equal(overlaps(m, MAX64, MAX64), true);
  // Unmapping up to 2^64-1 from inside the top interval must fail; from its start, succeed.
  assert.equal(unmap(m, MAX64 - 0x7ffn, MAX64), -1);
  assert.equal(unmap(m, MAX64 - 0xfffn, MAX64), 1);
  assert.equal(find(m, MAX64), -1);
  assert.equal(unmap(m, 0n, MAX64), 1);
  assert.equal(m.size, 0);
});

Deno.test("IntervalMap handles single-address intervals at 0 and at 2^64-1", () => {
  const m = new IntervalMap();
  const first = map(m, 0n, 0n);
  const last = map(m, MAX64, MAX64);
  assert.equal(find(m, 0n), first);
  assert.equal(find(m, 1n), -1);
  assert.equal(find(m, MAX64), last);
  assert.equal(find(m, MAX64 - 1n), -1);
  assert.equal(map(m, 1n, MAX64 - 1n) !== -1, true);
  assert.equal(m.size, 3);
  assert.equal(unmap(m, 0n, MAX64), 3);
});

Deno.test("IntervalMap holds the whole 64-bit space as one interval", () => {
  const m = new IntervalMap();
  const all = map(m, 0n, MAX64);
  assert.equal(find(m, 0x1234_5678_9abc_def0n), all);
  assert.equal(map(m, 0x1_0000_0000n, 0x1_0000_0000n), -1);
  assert.equal(unmap(m, 1n, MAX64), -1);
  assert.equal(unmap(m, 0n, MAX64 - 1n), -1);
  assert.equal(unmap(m, 0n, MAX64), 1);
});

Deno.test("IntervalMap handles an interval crossing the 4 GiB boundary", () => {
  const m = new IntervalMap();
  const cross = map(m, 0xffff_f000n, 0x1_0000_0fffn);
  assert.equal(m.startHi(cross), 0);
  assert.equal(m.endHi(cross), 1);
  assert.equal(find(m, 0xffff_ffffn), cross);
  assert.equal(find(m, 0x1_0000_0000n), cross);
  assert.equal(find(m, 0x1_0000_0fffn), cross);
  assert.equal(find(m, 0x1_0000_1000n), -1);
  assert.equal(find(m, 0xffff_efffn), -1);
  // A low half compared alone would put 0x1_0000_0000 below 0xffff_f000.
  assert.equal(map(m, 0x1_0000_0000n, 0x1_0000_0000n), -1);
  assert.notEqual(map(m, 0x1_0000_1000n, 0x1_0000_1fffn), -1);
  assert.notEqual(map(m, 0xffff_e000n, 0xffff_efffn), -1);
  assert.equal(unmap(m, 0x1_0000_0000n, 0x1_0000_1fffn), -1);
  assert.equal(unmap(m, 0xffff_f000n, 0x1_0000_0fffn), 1);
  assert.deepEqual(list(m), [[0xffff_e000n, 0xffff_efffn], [0x1_0000_1000n, 0x1_0000_1fffn]]);
});

Deno.test("IntervalMap orders by high half first when low halves disagree", () => {
  const m = new IntervalMap();
  map(m, 0x2_0000_0000n, 0x2_0000_0fffn);
  map(m, 0x1_ffff_f000n, 0x1_ffff_ffffn);
  map(m, 0x0_ffff_0000n, 0x0_ffff_ffffn);
  assert.deepEqual(list(m).map(([s]) => s), [0x0_ffff_0000n, 0x1_ffff_f000n, 0x2_0000_0000n]);
});
