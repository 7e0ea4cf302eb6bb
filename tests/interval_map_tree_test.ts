// IntervalMap: remove, clear, iteration, tree validity, and a randomized bigint reference.

import assert from "node:assert/strict";
import fc from "fast-check";
import { IntervalMap } from "../util/interval_map.ts";
import { find, join, list, lo, map, MAX64, overlaps, unmap } from "./_interval_map.ts";

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
