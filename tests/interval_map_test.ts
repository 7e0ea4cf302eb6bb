import assert from "node:assert/strict";
import fc from "fast-check";
import { IntervalMap } from "../util/interval_map.ts";

const MASK32 = 0xffff_ffffn;
const MAX64 = (1n << 64n) - 1n;

function lo(v: bigint): number {
  return Number(v & MASK32);
}

function hi(v: bigint): number {
  return Number(v >> 32n);
}

function join(l: number, h: number): bigint {
  return (BigInt(h) << 32n) | BigInt(l);
}

/** map(start, end) in bigint terms; phys defaults to start, flags to 3. */
function map(m: IntervalMap, start: bigint, end: bigint, phys = start, flags = 3): number {
  return m.insert(lo(start), hi(start), lo(end), hi(end), lo(phys), hi(phys), flags);
}

function unmap(m: IntervalMap, start: bigint, end: bigint): number {
  return m.removeRange(lo(start), hi(start), lo(end), hi(end));
}

function find(m: IntervalMap, a: bigint): number {
  return m.find(lo(a), hi(a));
}

function overlaps(m: IntervalMap, start: bigint, end: bigint): boolean {
  return m.overlaps(lo(start), hi(start), lo(end), hi(end));
}

/** Every interval as [start, end], in the order forEach() visits them. */
function list(m: IntervalMap): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  m.forEach((s) => out.push([join(m.startLo(s), m.startHi(s)), join(m.endLo(s), m.endHi(s))]));
  return out;
}

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

// ---- remove(), clear(), slots, iteration. ----

Deno.test("IntervalMap.remove() frees the slot and the next insert reuses it", () => {
  const m = new IntervalMap();
  const a = map(m, 0n, 9n);
  const b = map(m, 10n, 19n);
  assert.equal(m.isLive(a), true);
  m.remove(a);
  assert.equal(m.isLive(a), false);
  assert.equal(m.size, 1);
  assert.equal(find(m, 5n), -1);
  assert.equal(find(m, 15n), b);
  const c = map(m, 100n, 109n, 0x9000n, 2);
  assert.equal(c, a);
  assert.equal(m.startLo(c), 100);
  assert.equal(m.physLo(c), 0x9000);
  assert.equal(m.flags(c), 2);
  assert.throws(() => m.remove(12345), RangeError);
  m.remove(b);
  assert.throws(() => m.remove(b), RangeError);
  assert.deepEqual(list(m), [[100n, 109n]]);
  m.checkInvariants();
});

Deno.test("IntervalMap.clear() empties the map and keeps it usable", () => {
  const m = new IntervalMap(4, { nodeCapacity: 8 });
  for (let i = 0n; i < 500n; i++) map(m, i * 16n, i * 16n + 7n);
  assert.equal(m.size, 500);
  const bytes = m.allocatedBytes;
  m.clear();
  assert.equal(m.size, 0);
  assert.equal(find(m, 16n), -1);
  assert.deepEqual(list(m), []);
  assert.equal(m.isLive(0), false);
  m.checkInvariants();
  for (let i = 0n; i < 500n; i++) assert.notEqual(map(m, i * 16n, i * 16n + 15n), -1);
  assert.equal(m.size, 500);
  assert.equal(m.allocatedBytes, bytes, "refilling after clear() must not grow the arrays");
  m.checkInvariants();
});

Deno.test("IntervalMap.forEach() visits in address order and refuses changes from its callback", () => {
  const m = new IntervalMap();
  map(m, 0x3000n, 0x3fffn);
  map(m, 0x1_0000_0000n, 0x1_0000_0fffn);
  map(m, 0x1000n, 0x1fffn);
  assert.deepEqual(list(m).map(([s]) => s), [0x1000n, 0x3000n, 0x1_0000_0000n]);
  assert.throws(() => m.forEach((s) => m.remove(s)), Error);
  assert.equal(m.size, 2);
});

Deno.test("IntervalMap.firstAtOrAfter() and next() walk intervals without a callback", () => {
  const m = new IntervalMap(8, { nodeCapacity: 8 });
  for (let i = 0n; i < 100n; i++) map(m, i * 0x100n, i * 0x100n + 0xffn);
  assert.equal(m.firstAtOrAfter(lo(0x101n), 0), find(m, 0x200n));
  assert.equal(m.firstAtOrAfter(lo(0x100n), 0), find(m, 0x100n));
  assert.equal(m.firstAtOrAfter(lo(99n * 0x100n + 1n), 0), -1);
  let n = 0;
  let prev = -1n;
  for (let s = m.firstAtOrAfter(0, 0); s !== -1; s = m.next(s)) {
    const start = join(m.startLo(s), m.startHi(s));
    assert.ok(start > prev);
    prev = start;
    n++;
  }
  assert.equal(n, 100);
});

Deno.test("IntervalMap keeps its tree valid through ascending bulk insert and random removal", () => {
  const m = new IntervalMap(16, { nodeCapacity: 8 });
  const slots: number[] = [];
  for (let i = 0; i < 5000; i++) {
    slots.push(m.insert(i * 0x1000, 0, i * 0x1000 + 0xfff, 0, 0, 0, 1));
  }
  m.checkInvariants();
  withRandom(7, (rng) => {
    for (let i = slots.length - 1; i > 0; i--) {
      const j = rng() % (i + 1);
      [slots[i], slots[j]] = [slots[j], slots[i]];
    }
  });
  for (let i = 0; i < slots.length; i++) {
    m.remove(slots[i]);
    if (i % 97 === 0) m.checkInvariants();
  }
  assert.equal(m.size, 0);
  m.checkInvariants();
  // Regrow past the old size: freed nodes are reused, then fresh ones allocated after them.
  for (let i = 0; i < 7000; i++) {
    assert.notEqual(m.insert(0xffff_0000, i, 0xffff_ffff, i, 0, i, 2), -1);
  }
  m.checkInvariants();
  assert.equal(m.find(0xffff_8000, 6999), m.firstAtOrAfter(0, 6999));
});

Deno.test("IntervalMap stays valid when the oldest mapping goes first (FIFO), with some in between", () => {
  // Removing a leaf's first entry moves the leaf's start instead of shifting: splits, borrows
  // and merges must all see those leaves compacted (small nodes: all three happen often).
  for (const nodeCapacity of [8, 64]) {
    withRandom(11 + nodeCapacity, (rng) => {
      const m = new IntervalMap(16, { nodeCapacity });
      const live: number[] = []; // page numbers, ascending
      let nextPage = 1000;
      let frontPage = 999;
      for (let op = 0; op < 6000; op++) {
        const r = rng() % 10;
        if (r < 4 || live.length === 0) {
          const page = nextPage++;
          assert.notEqual(m.insert(page * 0x1000, 0, page * 0x1000 + 0xfff, 0, page, 0, 1), -1);
          live.push(page);
        } else if (r < 5) {
          // Before the oldest: lands at position 0 of the first leaf, right after its start moved.
          const page = frontPage--;
          assert.notEqual(m.insert(page * 0x1000, 0, page * 0x1000 + 0xfff, 0, page, 0, 1), -1);
          live.unshift(page);
        } else if (r < 8) {
          const page = live.shift() as number;
          assert.equal(m.removeRange(page * 0x1000, 0, page * 0x1000 + 0xfff, 0), 1);
        } else if (r < 9) {
          const page = live.shift() as number;
          m.remove(m.find(page * 0x1000, 0));
        } else {
          // One from the middle: a plain shift, next to leaves whose start moved.
          const i = rng() % live.length;
          const page = live.splice(i, 1)[0];
          assert.equal(m.removeRange(page * 0x1000, 0, page * 0x1000 + 0xfff, 0), 1);
        }
        if (op % 50 === 0 || op === 5999) {
          m.checkInvariants();
          const got: number[] = [];
          m.forEach((slot) => got.push(m.physLo(slot)));
          assert.deepEqual(got, live, `nodeCapacity ${nodeCapacity}, op ${op}`);
          if (live.length > 0) {
            assert.equal(m.physLo(m.firstAtOrAfter(0, 0)), live[0]);
            assert.equal(m.find(live[live.length - 1] * 0x1000 + 5, 0) >= 0, true);
          }
        }
      }
      assert.equal(m.size, live.length);
    });
  }
});

// ---- Randomized comparison with a naive bigint reference. ----

/**
 * Runs `body` once with a stream of u32 values that fast-check draws from `seed` (fast-check
 * prints the seed of a failing run, so it reproduces).
 */
function withRandom<T>(seed: number, body: (next: () => number) => T): T {
  let result: T | undefined;
  fc.assert(
    fc.property(fc.infiniteStream(fc.noBias(fc.nat(0xffff_ffff))), (stream) => {
      const it = stream[Symbol.iterator]();
      result = body(() => it.next().value as number);
    }),
    { numRuns: 1, seed },
  );
  return result as T;
}

interface RefInterval {
  start: bigint;
  end: bigint;
  phys: bigint;
  flags: number;
  slot: number;
}

/** Windows where random intervals land: low memory, across 4 GiB, mid, and the very top. */
const WINDOWS: bigint[] = [
  0n,
  0x1_0000_0000n - 0x8000n,
  0x7fff_ffff_ffff_0000n,
  0xffff_ffff_0000_0000n - 0x8000n,
  MAX64 - 0xffffn,
];

/**
 * Runs `ops` random operations on an IntervalMap and on a sorted array of bigint intervals and
 * checks they agree. The first half favours inserts so the tree grows deep, the second half
 * favours removals so it shrinks through merges and refills.
 */
function runRandomized(rng: () => number, nodeCapacity: number, ops: number): number {
  const m = new IntervalMap(8, { nodeCapacity });
  let ref: RefInterval[] = []; // sorted by start
  let peak = 0;
  const pickAddr = (): bigint => {
    const base = WINDOWS[rng() % WINDOWS.length];
    const a = base + BigInt(rng() % 0x10000);
    return a > MAX64 ? MAX64 : a;
  };
  const pickRange = (maxLen: number): [bigint, bigint] => {
    if (ref.length > 0 && rng() % 2 === 0) {
      // Borrow real boundaries so successful multi-interval unmaps happen often.
      const i = rng() % ref.length;
      const j = Math.min(ref.length - 1, i + (rng() % 4));
      const s = rng() % 4 === 0 ? ref[i].start + 1n : ref[i].start;
      const e = rng() % 4 === 0 ? ref[j].end - 1n : ref[j].end;
      return s <= e ? [s, e] : [e, s];
    }
    const s = pickAddr();
    const len = BigInt(rng() % 4 === 0 ? 1 : 1 + (rng() % maxLen));
    const e = s + len - 1n > MAX64 ? MAX64 : s + len - 1n;
    return [s, e];
  };
  for (let op = 0; op < ops; op++) {
    const growing = op < ops / 2;
    const kind = rng() % 100;
    if (kind < (growing ? 60 : 25)) {
      const [s, e] = pickRange(0x40);
      const phys = BigInt(rng()) << 12n;
      const flags = rng() & 7;
      const clash = ref.some((r) => r.start <= e && s <= r.end);
      const slot = map(m, s, e, phys, flags);
      assert.equal(slot === -1, clash, `op ${op}: insert [${s}, ${e}]`);
      if (slot !== -1) {
        assert.equal(ref.some((r) => r.slot === slot), false, `op ${op}: slot ${slot} reused live`);
        const at = ref.findIndex((r) => r.start > s);
        ref.splice(at === -1 ? ref.length : at, 0, { start: s, end: e, phys, flags, slot });
      }
    } else if (kind < 70) {
      const [s, e] = pickRange(growing ? 0x100 : 0x1000);
      const split = ref.some((r) => r.start <= e && s <= r.end && (r.start < s || r.end > e));
      const inside = ref.filter((r) => r.start >= s && r.end <= e);
      const got = unmap(m, s, e);
      assert.equal(got, split ? -1 : inside.length, `op ${op}: unmap [${s}, ${e}]`);
      if (!split) ref = ref.filter((r) => !(r.start >= s && r.end <= e));
    } else if (kind < 85) {
      let a = pickAddr();
      if (ref.length > 0 && rng() % 2 === 0) {
        const r = ref[rng() % ref.length];
        a = [r.start, r.end, r.start - 1n, r.end + 1n][rng() % 4];
        if (a < 0n || a > MAX64) continue;
      }
      const hit = ref.find((r) => r.start <= a && a <= r.end);
      assert.equal(find(m, a), hit ? hit.slot : -1, `op ${op}: find ${a}`);
    } else if (kind < 92) {
      const [s, e] = pickRange(0x100);
      const clash = ref.some((r) => r.start <= e && s <= r.end);
      assert.equal(overlaps(m, s, e), clash, `op ${op}: overlaps [${s}, ${e}]`);
    } else if (kind < 99 || op % 1000 !== 999) {
      if (ref.length === 0) continue;
      const i = rng() % ref.length;
      m.remove(ref[i].slot);
      ref.splice(i, 1);
    } else {
      m.clear();
      ref = [];
    }
    assert.equal(m.size, ref.length, `op ${op}: size`);
    peak = Math.max(peak, m.size);
    if (op % 64 === 0 || op === ops - 1) {
      m.checkInvariants();
      const got: RefInterval[] = [];
      m.forEach((slot) =>
        got.push({
          start: join(m.startLo(slot), m.startHi(slot)),
          end: join(m.endLo(slot), m.endHi(slot)),
          phys: join(m.physLo(slot), m.physHi(slot)),
          flags: m.flags(slot),
          slot,
        })
      );
      assert.deepEqual(got, ref, `op ${op}: contents`);
    }
  }
  return peak;
}

Deno.test("IntervalMap matches a naive bigint reference over random operations (node capacity 8)", () => {
  // A peak of several hundred intervals in nodes of 8 means a tree four or more levels deep.
  assert.ok(withRandom(0x5eed_0001, (rng) => runRandomized(rng, 8, 8000)) > 400);
});

Deno.test("IntervalMap matches a naive bigint reference over random operations (default nodes)", () => {
  assert.ok(withRandom(0x5eed_0002, (rng) => runRandomized(rng, 64, 8000)) > 400);
});
