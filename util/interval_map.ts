/**
 * An ordered set of non-overlapping, inclusive 64-bit intervals, each with a payload of a 64-bit
 * physical address and u32 flags. It tracks IOVA mappings on both sides of virtio-iommu: the
 * driver remembers each domain's mappings, the mock device translates through it. It knows
 * nothing of virtio; {@link IntervalMap.removeRange} merely follows the UNMAP rules of
 * virtio 1.3 §5.13.6.6 because that is what both users need.
 *
 * Addresses are passed as two u32 halves (lo, hi). Intervals live in "slots": struct-of-arrays
 * columns in typed arrays, recycled through a free list. An in-memory B+-tree over the slots
 * (`_bplus_tree.ts`), also stored in typed arrays, keeps them ordered by start address.
 * Lookups, inserts and removals cost O(log n). Once the arrays have grown to the working
 * size, no operation allocates, and no BigInt is used anywhere.
 *
 * Over 400 lines: this file is the map's whole public API (insert, find, overlaps, the
 * UNMAP-shaped removeRange, ordered walks, the invariant check) over its slot columns; the
 * tree's node operations live beside it.
 *
 * @example
 * ```ts
 * import { IntervalMap } from "@viommu/viommu";
 *
 * const map = new IntervalMap();
 * // Map IOVA [0x1_0000_0000, 0x1_0000_ffff] to phys 0x8000_0000, READ|WRITE.
 * const slot = map.insert(0x0000_0000, 1, 0x0000_ffff, 1, 0x8000_0000, 0, 3);
 * if (map.find(0x1234, 1) !== slot) throw new Error("lookup failed");
 * if (map.removeRange(0, 1, 0x7fff, 1) !== -1) throw new Error("a split must be refused");
 * if (map.removeRange(0, 0, 0xffff_ffff, 1) !== 1) throw new Error("unmap failed");
 * ```
 *
 * @module
 */

import { formatAddress } from "./hex.ts";
import { BPlusTree, DEFAULT_NODE_CAPACITY, growI32, growU32, less, NONE } from "./_bplus_tree.ts";

/** Capacity used when the constructor is given none. */
const DEFAULT_INITIAL_CAPACITY = 64;
/** Slot ids and node ids are int32; this is the most slots the map will ever hold. */
const MAX_SLOTS = 0x4000_0000;
/** Marks a live slot in the slot link column; free slots hold the next free slot or NONE. */
const LIVE = -2;

/** Options for {@link IntervalMap}. */
export interface IntervalMapOptions {
  /**
   * Entries per B+-tree node (8..1024, default 64). Only tests need to change it: a small
   * capacity builds a deep tree from few intervals, which exercises splits and merges.
   */
  nodeCapacity?: number;
}

/** Throws a RangeError unless `v` is an integer in [0, 2^32). */
function checkU32(v: number, what: string): void {
  if ((v >>> 0) !== v) {
    throw new RangeError(`Expected ${what} to be a u32, got ${v}`);
  }
}

/** Throws for the range #checkRange refused (kept out of the hot path). */
function refuseRange(sLo: number, sHi: number, eLo: number, eHi: number, verb: string): never {
  checkU32(sLo, "start low half");
  checkU32(sHi, "start high half");
  checkU32(eLo, "end low half");
  checkU32(eHi, "end high half");
  throw new RangeError(
    `Cannot ${verb} range [${formatAddress(sLo, sHi)}, ${
      formatAddress(eLo, eHi)
    }]: end is below start`,
  );
}

/** Receives each interval {@link IntervalMap.removeRange} removes, before it goes. */
export interface IntervalSink {
  /** One removed interval: start, end, phys halves and flags. */
  keep(
    startLo: number,
    startHi: number,
    endLo: number,
    endHi: number,
    physLo: number,
    physHi: number,
    flags: number,
  ): void;
}

/**
 * Non-overlapping inclusive intervals [start, end] over 64-bit addresses, ordered by start,
 * each carrying a 64-bit phys address and u32 flags. All addresses are (lo, hi) u32 halves.
 */
export class IntervalMap {
  // ---- Slots: one interval each, struct-of-arrays. ----
  #slotCap: number;
  #startLo: Uint32Array;
  #startHi: Uint32Array;
  #endLo: Uint32Array;
  #endHi: Uint32Array;
  #physLo: Uint32Array;
  #physHi: Uint32Array;
  #flags: Uint32Array;
  /** LIVE for a live slot; for a free slot, the next free slot or NONE. */
  #link: Int32Array;
  /** Slots at or above this index have never been handed out since the last clear(). */
  #slotHigh = 0;
  #freeSlot = NONE;
  #size = 0;

  /** The B+-tree ordering the slots by start address (`_bplus_tree.ts`). */
  #tree: BPlusTree;

  /** Bumped by every change; forEach() uses it to refuse changes made by its callback. */
  #version = 0;

  /**
   * Creates an empty map with room for `initialCapacity` intervals before any array has to
   * grow (default 64). Growth doubles, so a larger map still works; it just allocates then.
   */
  constructor(
    initialCapacity: number = DEFAULT_INITIAL_CAPACITY,
    options: IntervalMapOptions = {},
  ) {
    if (!Number.isInteger(initialCapacity) || initialCapacity < 1 || initialCapacity > MAX_SLOTS) {
      throw new RangeError(`Invalid initial capacity ${initialCapacity}`);
    }
    this.#tree = new BPlusTree(initialCapacity, options.nodeCapacity ?? DEFAULT_NODE_CAPACITY);

    this.#slotCap = initialCapacity;
    this.#startLo = new Uint32Array(initialCapacity);
    this.#startHi = new Uint32Array(initialCapacity);
    this.#endLo = new Uint32Array(initialCapacity);
    this.#endHi = new Uint32Array(initialCapacity);
    this.#physLo = new Uint32Array(initialCapacity);
    this.#physHi = new Uint32Array(initialCapacity);
    this.#flags = new Uint32Array(initialCapacity);
    this.#link = new Int32Array(initialCapacity);
  }

  /** Number of intervals in the map. */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the map's typed arrays (its whole footprint apart from a few fields). */
  get allocatedBytes(): number {
    return this.#startLo.byteLength * 7 + this.#link.byteLength + this.#tree.allocatedBytes;
  }

  /** Low half of the interval's first address. */
  startLo(slot: number): number {
    return this.#startLo[slot];
  }
  /** High half of the interval's first address. */
  startHi(slot: number): number {
    return this.#startHi[slot];
  }
  /** Low half of the interval's last address (inclusive). */
  endLo(slot: number): number {
    return this.#endLo[slot];
  }
  /** High half of the interval's last address (inclusive). */
  endHi(slot: number): number {
    return this.#endHi[slot];
  }
  /** Low half of the payload's physical address. */
  physLo(slot: number): number {
    return this.#physLo[slot];
  }
  /** High half of the payload's physical address. */
  physHi(slot: number): number {
    return this.#physHi[slot];
  }
  /** The payload's flags. */
  flags(slot: number): number {
    return this.#flags[slot];
  }

  /** Whether `slot` currently holds an interval. */
  isLive(slot: number): boolean {
    return Number.isInteger(slot) && slot >= 0 && slot < this.#slotHigh &&
      this.#link[slot] === LIVE;
  }

  /**
   * Inserts [start, end] (inclusive, end >= start) with its payload. Returns the new slot, or
   * -1 if the interval overlaps one already in the map (the map is then unchanged). Intervals
   * that merely touch, such as [0, 4] and [5, 9], do not overlap.
   */
  insert(
    startLo: number,
    startHi: number,
    endLo: number,
    endHi: number,
    physLo: number,
    physHi: number,
    flags: number,
  ): number {
    this.#checkRange(startLo, startHi, endLo, endHi, "insert");
    if ((physLo >>> 0) !== physLo || (physHi >>> 0) !== physHi || (flags >>> 0) !== flags) {
      checkU32(physLo, "physLo");
      checkU32(physHi, "physHi");
      checkU32(flags, "flags");
    }
    const leaf = this.#tree.descend(startLo, startHi);
    const pos = this.#tree.leafLowerBound(leaf, startLo, startHi);
    if (this.#conflictsAt(leaf, pos, startLo, startHi, endLo, endHi)) return NONE;

    const slot = this.#allocSlot();
    this.#startLo[slot] = startLo;
    this.#startHi[slot] = startHi;
    this.#endLo[slot] = endLo;
    this.#endHi[slot] = endHi;
    this.#physLo[slot] = physLo;
    this.#physHi[slot] = physHi;
    this.#flags[slot] = flags;
    this.#tree.insertInLeaf(leaf, pos, startLo, startHi, slot);
    this.#size++;
    this.#version++;
    return slot;
  }

  /** The slot of the interval containing address a, or -1. */
  find(aLo: number, aHi: number): number {
    checkU32(aLo, "address low half");
    checkU32(aHi, "address high half");
    const leaf = this.#tree.descend(aLo, aHi);
    // The candidate is the last interval starting at or before a.
    const slot = this.#tree.slotBefore(leaf, this.#tree.leafUpperBound(leaf, aLo, aHi));
    if (slot === NONE) return NONE;
    return less(this.#endLo[slot], this.#endHi[slot], aLo, aHi) ? NONE : slot;
  }

  /** Whether any interval intersects [start, end] (inclusive, end >= start). */
  overlaps(startLo: number, startHi: number, endLo: number, endHi: number): boolean {
    this.#checkRange(startLo, startHi, endLo, endHi, "check");
    const leaf = this.#tree.descend(startLo, startHi);
    const pos = this.#tree.leafLowerBound(leaf, startLo, startHi);
    return this.#conflictsAt(leaf, pos, startLo, startHi, endLo, endHi);
  }

  /**
   * Removes every interval lying entirely inside [start, end] and returns how many it removed
   * (0 when none is there). If an interval straddles start or end, so that it would have to
   * be split, removes nothing and returns -1 (virtio 1.3 §5.13.6.6: the device SHOULD NOT
   * unmap any mapping then). Throws a RangeError if end < start.
   */
  removeRange(
    startLo: number,
    startHi: number,
    endLo: number,
    endHi: number,
    sink?: IntervalSink,
  ): number {
    this.#checkRange(startLo, startHi, endLo, endHi, "remove");
    const tree = this.#tree;
    const firstLeaf = tree.descend(startLo, startHi);
    const firstPos = tree.leafLowerBound(firstLeaf, startLo, startHi);

    // Fast path, the usual UNMAP: exactly one interval, [start, end] itself. Nothing can
    // straddle either end (it would overlap that interval), so remove it at once.
    const slot = tree.slotWithKey(firstLeaf, firstPos, startLo, startHi);
    if (slot !== NONE && this.#endLo[slot] === endLo && this.#endHi[slot] === endHi) {
      sink?.keep(
        startLo,
        startHi,
        endLo,
        endHi,
        this.#physLo[slot],
        this.#physHi[slot],
        this.#flags[slot],
      );
      this.#release(slot);
      tree.removeAt(firstLeaf, firstPos);
      this.#version++;
      return 1;
    }

    return this.#removeSpan(startLo, startHi, endLo, endHi, firstLeaf, firstPos, sink);
  }

  /**
   * {@link IntervalMap.removeRange} beyond the exact-interval case: refuses a straddle, then
   * removes every interval inside, starting at `firstPos` of `firstLeaf` (the last descent).
   */
  #removeSpan(
    startLo: number,
    startHi: number,
    endLo: number,
    endHi: number,
    firstLeaf: number,
    firstPos: number,
    sink: IntervalSink | undefined,
  ): number {
    // The interval starting before `start`, if it reaches `start`, straddles it.
    const pred = this.#tree.slotBefore(firstLeaf, firstPos);
    if (pred !== NONE && !less(this.#endLo[pred], this.#endHi[pred], startLo, startHi)) {
      return NONE;
    }
    // Count the intervals starting inside the range; only the last of them can reach past it.
    const tree = this.#tree;
    let count = 0;
    let leaf = firstLeaf;
    let pos = firstPos;
    for (;;) {
      if (pos === tree.leafCount(leaf)) {
        leaf = tree.nextLeaf(leaf);
        if (leaf === NONE) break;
        pos = 0;
      }
      if (less(endLo, endHi, tree.keyLo(leaf, pos), tree.keyHi(leaf, pos))) break;
      const slot = tree.slotAt(leaf, pos);
      if (less(endLo, endHi, this.#endLo[slot], this.#endHi[slot])) return NONE;
      count++;
      pos++;
    }
    // Remove them. Each one is the first key >= start. The path of the first descent stays
    // good until a removal rebalances the tree; after that, descend afresh.
    leaf = firstLeaf;
    pos = firstPos;
    let pathGood = true;
    for (let i = 0; i < count; i++) {
      if (!pathGood) {
        leaf = this.#tree.descend(startLo, startHi);
        pos = this.#tree.leafLowerBound(leaf, startLo, startHi);
      }
      if (pos === tree.leafCount(leaf)) {
        // The first key >= start is the next leaf's first; descend to it so the path is right.
        const next = tree.nextLeaf(leaf);
        leaf = tree.descend(tree.keyLo(next, 0), tree.keyHi(next, 0));
        pos = 0;
      }
      if (sink !== undefined) {
        const slot = tree.slotAt(leaf, pos);
        sink.keep(
          this.#startLo[slot],
          this.#startHi[slot],
          this.#endLo[slot],
          this.#endHi[slot],
          this.#physLo[slot],
          this.#physHi[slot],
          this.#flags[slot],
        );
      }
      pathGood = !this.#removeAt(leaf, pos);
    }
    if (count > 0) this.#version++;
    return count;
  }

  /** Removes the interval in `slot`; throws a RangeError if the slot holds none. */
  remove(slot: number): void {
    if (!this.isLive(slot)) {
      throw new RangeError(`Cannot remove slot ${slot}: it holds no interval`);
    }
    const kLo = this.#startLo[slot];
    const kHi = this.#startHi[slot];
    const leaf = this.#tree.descend(kLo, kHi);
    this.#removeAt(leaf, this.#tree.leafLowerBound(leaf, kLo, kHi));
    this.#version++;
  }

  /** Removes every interval. Keeps the arrays, so refilling to the same size allocates nothing. */
  clear(): void {
    this.#slotHigh = 0;
    this.#freeSlot = NONE;
    this.#size = 0;
    this.#tree.clear();
    this.#version++;
  }

  /**
   * Calls `fn` with each slot in address order. `fn` must not change the map; if it does,
   * forEach() throws an Error after that call.
   */
  forEach(fn: (slot: number) => void): void {
    const version = this.#version;
    const tree = this.#tree;
    let leaf = tree.leftmostLeaf();
    while (leaf !== NONE) {
      const count = tree.leafCount(leaf);
      for (let i = 0; i < count; i++) {
        fn(tree.slotAt(leaf, i));
        if (this.#version !== version) {
          throw new Error("IntervalMap was changed during forEach()");
        }
      }
      leaf = tree.nextLeaf(leaf);
    }
  }

  /**
   * The slot of the first interval starting at or after address a, or -1. With
   * {@link IntervalMap.next} it walks the map in address order without a callback.
   */
  firstAtOrAfter(aLo: number, aHi: number): number {
    checkU32(aLo, "address low half");
    checkU32(aHi, "address high half");
    const leaf = this.#tree.descend(aLo, aHi);
    return this.#tree.slotAtOrAfter(leaf, this.#tree.leafLowerBound(leaf, aLo, aHi));
  }

  /** The slot of the interval after `slot` in address order, or -1 (O(log n)). */
  next(slot: number): number {
    if (!this.isLive(slot)) {
      throw new RangeError(`Cannot step from slot ${slot}: it holds no interval`);
    }
    const kLo = this.#startLo[slot];
    const kHi = this.#startHi[slot];
    const leaf = this.#tree.descend(kLo, kHi);
    return this.#tree.slotAtOrAfter(leaf, this.#tree.leafLowerBound(leaf, kLo, kHi) + 1);
  }

  /**
   * Checks every structural invariant (ordering, separators, fill, leaf links, slot
   * bookkeeping) in O(n) and throws an Error naming the first one broken. For tests.
   */
  checkInvariants(): void {
    const entries = this.#tree.checkInvariants((leaf, slot, kLo, kHi) => {
      if (!this.isLive(slot)) throw new Error(`Leaf ${leaf} refers to dead slot ${slot}`);
      if (this.#startLo[slot] !== kLo || this.#startHi[slot] !== kHi) {
        throw new Error(`Leaf key of slot ${slot} differs from its start`);
      }
      if (less(this.#endLo[slot], this.#endHi[slot], kLo, kHi)) {
        throw new Error(`Slot ${slot} ends before it starts`);
      }
    });
    if (entries !== this.#size) {
      throw new Error(`Tree holds ${entries} entries but size is ${this.#size}`);
    }
    // Intervals must not overlap: each ends before the next starts.
    let prev = NONE;
    for (let s = this.firstAtOrAfter(0, 0); s !== NONE; s = this.next(s)) {
      if (
        prev !== NONE &&
        !less(this.#endLo[prev], this.#endHi[prev], this.#startLo[s], this.#startHi[s])
      ) {
        throw new Error(`Slots ${prev} and ${s} overlap`);
      }
      prev = s;
    }
    // Every slot below #slotHigh is either live (counted above) or on the free list.
    let free = 0;
    for (let s = this.#freeSlot; s !== NONE; s = this.#link[s]) {
      if (s < 0 || s >= this.#slotHigh || this.#link[s] === LIVE || ++free > this.#slotHigh) {
        throw new Error("Free slot list is corrupt");
      }
    }
    if (free + this.#size !== this.#slotHigh) {
      throw new Error(`${free} free + ${this.#size} live slots != ${this.#slotHigh} handed out`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Internals.

  /** Validates a range's halves and that end >= start. */
  #checkRange(sLo: number, sHi: number, eLo: number, eHi: number, verb: string): void {
    if (
      (sLo >>> 0) !== sLo || (sHi >>> 0) !== sHi || (eLo >>> 0) !== eLo || (eHi >>> 0) !== eHi ||
      less(eLo, eHi, sLo, sHi)
    ) {
      refuseRange(sLo, sHi, eLo, eHi, verb);
    }
  }

  /**
   * Whether [s, e] intersects an interval, given the leaf position of the first key >= s:
   * the interval there must start after e, and the one before it must end before s.
   */
  #conflictsAt(
    leaf: number,
    pos: number,
    sLo: number,
    sHi: number,
    eLo: number,
    eHi: number,
  ): boolean {
    // The first interval starting at or after s must start after e.
    const tree = this.#tree;
    if (tree.keyAtOrAfterIsAtMost(leaf, pos, eLo, eHi)) return true;
    // The last interval starting before s must end before s.
    const pred = tree.slotBefore(leaf, pos);
    return pred !== NONE && !less(this.#endLo[pred], this.#endHi[pred], sLo, sHi);
  }

  /**
   * Removes entry `pos` of `leaf` (reached by the last descent) and frees its slot. Returns
   * whether the tree was rebalanced (which makes the recorded path stale).
   */
  #removeAt(leaf: number, pos: number): boolean {
    this.#release(this.#tree.slotAt(leaf, pos));
    return this.#tree.removeAt(leaf, pos);
  }

  /** Puts `slot` back on the free list (its tree entry is removed by the caller). */
  #release(slot: number): void {
    this.#link[slot] = this.#freeSlot;
    this.#freeSlot = slot;
    this.#size--;
  }

  #allocSlot(): number {
    let slot = this.#freeSlot;
    if (slot !== NONE) {
      this.#freeSlot = this.#link[slot];
    } else {
      if (this.#slotHigh === this.#slotCap) this.#growSlots();
      slot = this.#slotHigh++;
    }
    this.#link[slot] = LIVE;
    return slot;
  }

  #growSlots(): void {
    if (this.#slotCap >= MAX_SLOTS) {
      throw new RangeError(`IntervalMap cannot hold more than ${MAX_SLOTS} intervals`);
    }
    const cap = Math.min(this.#slotCap * 2, MAX_SLOTS);
    this.#startLo = growU32(this.#startLo, cap);
    this.#startHi = growU32(this.#startHi, cap);
    this.#endLo = growU32(this.#endLo, cap);
    this.#endHi = growU32(this.#endHi, cap);
    this.#physLo = growU32(this.#physLo, cap);
    this.#physHi = growU32(this.#physHi, cap);
    this.#flags = growU32(this.#flags, cap);
    this.#link = growI32(this.#link, cap);
    this.#slotCap = cap;
  }
}
