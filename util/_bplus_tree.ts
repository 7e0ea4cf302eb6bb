/**
 * The B+-tree under `IntervalMap` (`interval_map.ts`): entries of (64-bit key, slot) ordered by key, in
 * typed arrays, with the path of the last descent kept so an insert or a removal can walk
 * back up without searching again. A slot is an opaque u32 the map hands in; the tree knows
 * nothing of intervals. Node operations: descent and binary search, insertion with node
 * splits, removal with refills from a sibling and merges, and node pools with free lists.
 * No operation allocates once the pools have grown to the working size, and no BigInt is used.
 *
 * Over 400 lines, on purpose: insertion and removal rebalance the same private node arrays
 * and descent path, and this is the hot path of every MAP and UNMAP. Splitting the two would
 * mean exposing those arrays as public fields to a second file.
 *
 * @module
 */

/** Entries per B+-tree node unless the map is given another capacity. */
export const DEFAULT_NODE_CAPACITY = 64;
/** Smallest node capacity accepted: with a minimum fill of capacity/4, nodes keep ≥ 2 entries. */
const MIN_NODE_CAPACITY = 8;
/** Largest node capacity accepted; node entry counts are kept in a Uint16Array. */
const MAX_NODE_CAPACITY = 1024;
/**
 * Deepest tree the path stack can describe. A non-root node has at least 2 children, so even
 * 2^30 intervals need fewer than 31 levels.
 */
const MAX_HEIGHT = 32;
/** "No slot" / "no node". */
export const NONE = -1;
/** Words per tree entry: key lo, key hi, ref (a slot in a leaf, a child in an inner node). */
const W = 3;
/** Offset of the ref word within an entry. */
const REF = 2;

/** Whether (aLo, aHi) < (bLo, bHi) as unsigned 64-bit values (both halves already u32). */
export function less(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  return aHi < bHi || (aHi === bHi && aLo < bLo);
}

/**
 * Words a shift moves with a plain loop; longer moves use copyWithin (a memmove), whose call
 * costs more than a short loop but far less than a long one, above all under TCG where each
 * JIT-compiled element move is a bounds-checked load and store.
 */
const SHIFT_LOOP_MAX = 24;

/** Moves words [from, end) of `a` up by one entry (W words). */
function shiftUp(a: Uint32Array, from: number, end: number): void {
  if (end - from > SHIFT_LOOP_MAX) {
    a.copyWithin(from + W, from, end);
    return;
  }
  for (let i = end - 1; i >= from; i--) a[i + W] = a[i];
}

/** Moves words [from + W, end) of `a` down by one entry, over the entry at `from`. */
function shiftDown(a: Uint32Array, from: number, end: number): void {
  if (end - from > SHIFT_LOOP_MAX) {
    a.copyWithin(from, from + W, end);
    return;
  }
  for (let i = from + W; i < end; i++) a[i - W] = a[i];
}

/** Copies `old` into a new Uint32Array of `length` elements. */
export function growU32(old: Uint32Array, length: number): Uint32Array {
  const next = new Uint32Array(length);
  next.set(old);
  return next;
}

/** Copies `old` into a new Int32Array of `length` elements. */
export function growI32(old: Int32Array, length: number): Int32Array {
  const next = new Int32Array(length);
  next.set(old);
  return next;
}

/** Copies `old` into a new Uint16Array of `length` elements. */
function growU16(old: Uint16Array, length: number): Uint16Array {
  const next = new Uint16Array(length);
  next.set(old);
  return next;
}

/** Checks one leaf entry against what the map holds for its slot; throws if it is wrong. */
export type EntryCheck = (leaf: number, slot: number, kLo: number, kHi: number) => void;

/** A B+-tree of (64-bit key, slot) entries; positions are (leaf, index within the leaf). */
export class BPlusTree {
  // ---- B+-tree. Node n owns entries [n * B, n * B + count); entry e is the three words
  // [e * W, e * W + W) of its node kind's array: key lo, key hi, ref (slot or child). ----
  /** B: entries per node (leaf keys, or inner children). */
  readonly #nodeCap: number;
  /** A non-root node with fewer entries than this is merged or refilled from a sibling. */
  readonly #minFill: number;

  // Leaves: each entry is an interval's start (copied from its slot, so a search touches one
  // array) and its slot. Leaves form a doubly linked list in key order.
  #leafPool: number;
  #leaf: Uint32Array;
  /**
   * Per leaf: where its entries start within its `nodeCap` places. Removing a leaf's first
   * entry (the usual order of unmapping: oldest mapping first) moves the start instead of
   * shifting every other entry down; anything that reshapes a leaf compacts it first.
   */
  #leafOff: Uint16Array;
  #leafCount: Uint16Array;
  /** Next leaf in key order, or NONE; for a free leaf, the next free leaf. */
  #leafNext: Int32Array;
  #leafPrev: Int32Array;
  #leafHigh = 0;
  #freeLeaf = NONE;

  // Inner nodes: child i covers keys k with key[i] <= k < key[i + 1]; key[0] is unused.
  // Separators may be stale lower bounds after removals; the invariant is
  // max(child i - 1) < key[i] <= min(child i). A free inner node's entry 0 ref links to the
  // next free inner node.
  #innerPool: number;
  #inner: Uint32Array;
  #innerCount: Uint16Array;
  #innerHigh = 0;
  #freeInner = NONE;

  #root = 0;
  /** 1 when the root is a leaf. */
  #height = 1;

  // Path of the last descent: #pathNode[l] is the inner node at depth l, #pathIdx[l] the child
  // taken. Depth height - 1 is the leaf.
  readonly #pathNode = new Int32Array(MAX_HEIGHT);
  readonly #pathIdx = new Int32Array(MAX_HEIGHT);

  /**
   * An empty tree with pools sized for `initialCapacity` entries and `nodeCap` entries per
   * node (validated here: an integer in [MIN_NODE_CAPACITY, MAX_NODE_CAPACITY]).
   */
  constructor(initialCapacity: number, nodeCap: number) {
    if (!Number.isInteger(nodeCap) || nodeCap < MIN_NODE_CAPACITY || nodeCap > MAX_NODE_CAPACITY) {
      throw new RangeError(
        `Invalid node capacity ${nodeCap}: expected an integer in ` +
          `[${MIN_NODE_CAPACITY}, ${MAX_NODE_CAPACITY}]`,
      );
    }
    this.#nodeCap = nodeCap;
    this.#minFill = nodeCap >> 2;

    // Leaves are at least a quarter full, usually half or more; size for half.
    const leaves = Math.ceil((initialCapacity * 2) / nodeCap) + 1;
    this.#leafPool = leaves;
    this.#leaf = new Uint32Array(leaves * nodeCap * W);
    this.#leafOff = new Uint16Array(leaves);
    this.#leafCount = new Uint16Array(leaves);
    this.#leafNext = new Int32Array(leaves);
    this.#leafPrev = new Int32Array(leaves);

    const inners = Math.ceil((leaves * 2) / nodeCap) + 2;
    this.#innerPool = inners;
    this.#inner = new Uint32Array(inners * nodeCap * W);
    this.#innerCount = new Uint16Array(inners);

    this.#root = this.#allocLeaf();
  }

  /** Bytes held by the tree's typed arrays. */
  get allocatedBytes(): number {
    return this.#leaf.byteLength + this.#leafCount.byteLength + this.#leafNext.byteLength +
      this.#leafPrev.byteLength + this.#inner.byteLength + this.#innerCount.byteLength +
      this.#pathNode.byteLength + this.#pathIdx.byteLength;
  }

  /** Removes every entry, keeping the pools. */
  clear(): void {
    this.#leafHigh = 0;
    this.#freeLeaf = NONE;
    this.#innerHigh = 0;
    this.#freeInner = NONE;
    this.#height = 1;
    this.#root = this.#allocLeaf();
  }

  /** Number of entries in `leaf`. */
  leafCount(leaf: number): number {
    return this.#leafCount[leaf];
  }

  /** The leaf after `leaf` in key order, or NONE. */
  nextLeaf(leaf: number): number {
    return this.#leafNext[leaf];
  }

  /** Low half of the key at position `pos` of `leaf`. */
  keyLo(leaf: number, pos: number): number {
    return this.#leaf[(this.#start(leaf) + pos) * W];
  }

  /** High half of the key at position `pos` of `leaf`. */
  keyHi(leaf: number, pos: number): number {
    return this.#leaf[(this.#start(leaf) + pos) * W + 1];
  }

  /** The slot at position `pos` of `leaf`. */
  slotAt(leaf: number, pos: number): number {
    return this.#leaf[(this.#start(leaf) + pos) * W + REF];
  }

  /**
   * Whether the key at position `pos` of `leaf` (the next leaf's first if `pos` is past the
   * end) exists and is <= k.
   */
  keyAtOrAfterIsAtMost(leaf: number, pos: number, kLo: number, kHi: number): boolean {
    let next = leaf;
    let at = pos;
    if (pos === this.#leafCount[leaf]) {
      next = this.#leafNext[leaf];
      at = 0;
    }
    if (next === NONE) return false;
    const e = (this.#start(next) + at) * W;
    return !less(kLo, kHi, this.#leaf[e], this.#leaf[e + 1]);
  }

  /** The slot at position `pos` of `leaf` if an entry is there and its key is k, else NONE. */
  slotWithKey(leaf: number, pos: number, kLo: number, kHi: number): number {
    if (pos >= this.#leafCount[leaf]) return NONE;
    const e = (this.#start(leaf) + pos) * W;
    const a = this.#leaf;
    return a[e] === kLo && a[e + 1] === kHi ? a[e + REF] : NONE;
  }

  /**
   * Checks every structural invariant (ordering, separators, fill, leaf links), calling
   * `check` on each leaf entry, and returns the number of entries. Throws an Error naming the
   * first invariant broken. For tests.
   */
  checkInvariants(check: EntryCheck): number {
    const leaves: number[] = [];
    const entries = this.#checkNode(this.#root, 0, 0, 0, false, 0, 0, false, leaves, check);
    for (let i = 0; i < leaves.length; i++) {
      const prev = i === 0 ? NONE : leaves[i - 1];
      const next = i === leaves.length - 1 ? NONE : leaves[i + 1];
      if (this.#leafPrev[leaves[i]] !== prev || this.#leafNext[leaves[i]] !== next) {
        throw new Error(`Leaf ${leaves[i]} is linked out of tree order`);
      }
    }
    return entries;
  }

  /** Walks from the root to the leaf whose key range holds k, recording the path. */
  descend(kLo: number, kHi: number): number {
    const b = this.#nodeCap;
    const a = this.#inner;
    let node = this.#root;
    const depth = this.#height - 1;
    for (let level = 0; level < depth; level++) {
      // Child i where i is the last index with key[i] <= k (index 0 if none).
      const base = node * b;
      let lo = 1;
      let hi = this.#innerCount[node];
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const e = (base + mid) * W;
        const mHi = a[e + 1];
        if (mHi > kHi || (mHi === kHi && a[e] > kLo)) hi = mid;
        else lo = mid + 1;
      }
      this.#pathNode[level] = node;
      this.#pathIdx[level] = lo - 1;
      node = a[(base + lo - 1) * W + REF];
    }
    return node;
  }

  /** First position in `leaf` whose key is >= k (the count if none). */
  leafLowerBound(leaf: number, kLo: number, kHi: number): number {
    const base = this.#start(leaf);
    const a = this.#leaf;
    let lo = 0;
    let hi = this.#leafCount[leaf];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = (base + mid) * W;
      const mHi = a[e + 1];
      if (mHi < kHi || (mHi === kHi && a[e] < kLo)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First position in `leaf` whose key is > k (the count if none). */
  leafUpperBound(leaf: number, kLo: number, kHi: number): number {
    const base = this.#start(leaf);
    const a = this.#leaf;
    let lo = 0;
    let hi = this.#leafCount[leaf];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = (base + mid) * W;
      const mHi = a[e + 1];
      if (mHi > kHi || (mHi === kHi && a[e] > kLo)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The slot just before leaf position `pos` (possibly in the previous leaf), or NONE. */
  slotBefore(leaf: number, pos: number): number {
    if (pos > 0) return this.#leaf[(this.#start(leaf) + pos - 1) * W + REF];
    const prev = this.#leafPrev[leaf];
    if (prev === NONE) return NONE;
    return this.#leaf[(this.#start(prev) + this.#leafCount[prev] - 1) * W + REF];
  }

  /** The slot at leaf position `pos`, or the next leaf's first if `pos` is past the end. */
  slotAtOrAfter(leaf: number, pos: number): number {
    if (pos < this.#leafCount[leaf]) return this.#leaf[(this.#start(leaf) + pos) * W + REF];
    const next = this.#leafNext[leaf];
    return next === NONE ? NONE : this.#leaf[this.#start(next) * W + REF];
  }

  leftmostLeaf(): number {
    let node = this.#root;
    for (let level = this.#height - 1; level > 0; level--) {
      node = this.#inner[node * this.#nodeCap * W + REF];
    }
    return this.#leafCount[node] === 0 ? NONE : node;
  }

  /** Inserts (k, slot) at `pos` of `leaf` (found by the last descend), splitting if full. */
  insertInLeaf(leaf: number, pos: number, kLo: number, kHi: number, slot: number): void {
    const b = this.#nodeCap;
    const count = this.#leafCount[leaf];
    if (count < b) {
      this.#leafPut(leaf, pos, count, kLo, kHi, slot);
      return;
    }
    this.#splitLeaf(leaf, pos, kLo, kHi, slot);
  }

  /** {@link BPlusTree.insertInLeaf} into a full leaf: splits it, then inserts. */
  #splitLeaf(leaf: number, pos: number, kLo: number, kHi: number, slot: number): void {
    const b = this.#nodeCap;
    // A full leaf starts at offset 0 (its entries fill all its places): no compaction needed.
    const right = this.#allocLeaf(); // may replace the leaf arrays: read them after this
    const half = b >> 1;
    if (pos === b && this.#leafNext[leaf] === NONE) {
      // Appending past the last key: keep the left leaf full, so ascending inserts (the
      // common IOVA allocation pattern) fill leaves completely instead of half.
      this.#leafPut(right, 0, 0, kLo, kHi, slot);
    } else {
      this.#leaf.copyWithin(right * b * W, (leaf * b + half) * W, (leaf * b + b) * W);
      this.#leafCount[leaf] = half;
      this.#leafCount[right] = b - half;
      if (pos <= half) this.#leafPut(leaf, pos, half, kLo, kHi, slot);
      else this.#leafPut(right, pos - half, b - half, kLo, kHi, slot);
    }
    const next = this.#leafNext[leaf];
    this.#leafNext[right] = next;
    this.#leafPrev[right] = leaf;
    if (next !== NONE) this.#leafPrev[next] = right;
    this.#leafNext[leaf] = right;
    const e = right * b * W;
    this.#insertInInner(this.#height - 2, this.#leaf[e], this.#leaf[e + 1], right);
  }

  /** Shifts entries [pos, count) of a non-full leaf right by one and stores (k, slot) at pos. */
  #leafPut(leaf: number, pos: number, count: number, kLo: number, kHi: number, slot: number): void {
    if (this.#leafOff[leaf] !== 0) this.#compact(leaf);
    const a = this.#leaf;
    const e = (leaf * this.#nodeCap + pos) * W;
    if (pos < count) shiftUp(a, e, (leaf * this.#nodeCap + count) * W);
    a[e] = kLo;
    a[e + 1] = kHi;
    a[e + REF] = slot;
    this.#leafCount[leaf] = count + 1;
  }

  /**
   * Adds separator k and `child` just after path child at `level` (the node split from it).
   * Level -1 means the root itself split: a new root is grown above it.
   */
  #insertInInner(level: number, kLo: number, kHi: number, child: number): void {
    const b = this.#nodeCap;
    if (level < 0) {
      const root = this.#allocInner();
      const e = root * b * W;
      this.#inner[e + REF] = this.#root;
      this.#inner[e + W] = kLo;
      this.#inner[e + W + 1] = kHi;
      this.#inner[e + W + REF] = child;
      this.#innerCount[root] = 2;
      this.#root = root;
      this.#height++;
      if (this.#height > MAX_HEIGHT) throw new Error("IntervalMap tree is too deep");
      return;
    }
    const node = this.#pathNode[level];
    const pos = this.#pathIdx[level] + 1;
    const count = this.#innerCount[node];
    if (count < b) {
      this.#innerPut(node, pos, count, kLo, kHi, child);
      return;
    }
    const right = this.#allocInner(); // may replace the inner arrays: read them after this
    const half = b >> 1;
    const from = (node * b + half) * W;
    // The separator in front of child `half` moves up; it becomes right's unused key[0].
    const upLo = this.#inner[from];
    const upHi = this.#inner[from + 1];
    this.#inner.copyWithin(right * b * W, from, (node * b + b) * W);
    this.#innerCount[node] = half;
    this.#innerCount[right] = b - half;
    // pos == half appends to the left node: k comes from child half-1, so k < up.
    if (pos <= half) this.#innerPut(node, pos, half, kLo, kHi, child);
    else this.#innerPut(right, pos - half, b - half, kLo, kHi, child);
    this.#insertInInner(level - 1, upLo, upHi, right);
  }

  /** Shifts entries [pos, count) of a non-full inner node right by one; stores (k, child). */
  #innerPut(
    node: number,
    pos: number,
    count: number,
    kLo: number,
    kHi: number,
    child: number,
  ): void {
    const a = this.#inner;
    const e = (node * this.#nodeCap + pos) * W;
    if (pos < count) shiftUp(a, e, (node * this.#nodeCap + count) * W);
    a[e] = kLo;
    a[e + 1] = kHi;
    a[e + REF] = child;
    this.#innerCount[node] = count + 1;
  }

  /**
   * Removes entry `pos` of `leaf` (reached by the last descend), freeing its slot. Returns
   * whether the tree was rebalanced (which makes the recorded path stale).
   */
  removeAt(leaf: number, pos: number): boolean {
    const a = this.#leaf;
    const start = this.#start(leaf);
    const e = (start + pos) * W;
    const count = this.#leafCount[leaf] - 1;
    if (pos === 0) this.#leafOff[leaf]++; // the first entry: move the start, shift nothing
    else if (pos < count) shiftDown(a, e, (start + count + 1) * W);
    this.#leafCount[leaf] = count;
    if (this.#height === 1 || count >= this.#minFill) return false;
    this.#rebalanceLeaf(leaf);
    return true;
  }

  /** Refills an underfull non-root leaf from a sibling, or merges it with one. */
  #rebalanceLeaf(leaf: number): void {
    const b = this.#nodeCap;
    const a = this.#leaf;
    const inner = this.#inner;
    const level = this.#height - 2;
    const parent = this.#pathNode[level];
    const idx = this.#pathIdx[level];
    const count = this.#leafCount[leaf];
    if (idx > 0) {
      const left = inner[(parent * b + idx - 1) * W + REF];
      this.#compact(left);
      const leftCount = this.#leafCount[left];
      if (leftCount > this.#minFill) {
        // Move left's last entry to the front of this leaf; it becomes the separator.
        const from = (left * b + leftCount - 1) * W;
        const kLo = a[from];
        const kHi = a[from + 1];
        this.#leafPut(leaf, 0, count, kLo, kHi, a[from + REF]);
        this.#leafCount[left] = leftCount - 1;
        inner[(parent * b + idx) * W] = kLo;
        inner[(parent * b + idx) * W + 1] = kHi;
        return;
      }
      this.#mergeLeaves(left, leaf);
      this.#removeFromInner(level, idx);
      return;
    }
    const right = inner[(parent * b + 1) * W + REF];
    this.#compact(right);
    const rightCount = this.#leafCount[right];
    if (rightCount > this.#minFill) {
      // Move right's first entry to the end of this leaf; right's new first is the separator.
      const from = right * b * W;
      this.#leafPut(leaf, count, count, a[from], a[from + 1], a[from + REF]);
      shiftDown(a, from, (right * b + rightCount) * W);
      this.#leafCount[right] = rightCount - 1;
      inner[(parent * b + 1) * W] = a[from];
      inner[(parent * b + 1) * W + 1] = a[from + 1];
      return;
    }
    this.#mergeLeaves(leaf, right);
    this.#removeFromInner(level, 1);
  }

  /** Appends `right`'s entries to `left`, unlinks `right` and frees it. */
  #mergeLeaves(left: number, right: number): void {
    const b = this.#nodeCap;
    this.#compact(left);
    this.#compact(right);
    const leftCount = this.#leafCount[left];
    const rightCount = this.#leafCount[right];
    this.#leaf.copyWithin((left * b + leftCount) * W, right * b * W, (right * b + rightCount) * W);
    this.#leafCount[left] = leftCount + rightCount;
    const next = this.#leafNext[right];
    this.#leafNext[left] = next;
    if (next !== NONE) this.#leafPrev[next] = left;
    this.#freeLeafNode(right);
  }

  /** Removes separator and child `idx` (>= 1) from the path node at `level`, then rebalances. */
  #removeFromInner(level: number, idx: number): void {
    const b = this.#nodeCap;
    const node = this.#pathNode[level];
    const count = this.#innerCount[node] - 1;
    if (idx < count) {
      shiftDown(this.#inner, (node * b + idx) * W, (node * b + count + 1) * W);
    }
    this.#innerCount[node] = count;
    if (level === 0) {
      if (count === 1) {
        // The root has a single child left: that child becomes the root.
        this.#root = this.#inner[node * b * W + REF];
        this.#height--;
        this.#freeInnerNode(node);
      }
      return;
    }
    if (count < this.#minFill) this.#rebalanceInner(level);
  }

  /** Refills the underfull path node at `level` (> 0) from a sibling, or merges it. */
  #rebalanceInner(level: number): void {
    const b = this.#nodeCap;
    const a = this.#inner;
    const node = this.#pathNode[level];
    const parent = this.#pathNode[level - 1];
    const idx = this.#pathIdx[level - 1];
    const count = this.#innerCount[node];
    const sep = (parent * b + idx) * W;
    if (idx > 0) {
      const left = a[sep - W + REF];
      const leftCount = this.#innerCount[left];
      if (leftCount > this.#minFill) {
        // Rotate right through the parent: left's last child becomes this node's first, the
        // parent's separator comes down in front of the old first child, and left's last
        // separator goes up.
        const from = (left * b + leftCount - 1) * W;
        this.#innerPut(node, 0, count, 0, 0, a[from + REF]);
        const e = node * b * W;
        a[e + W] = a[sep];
        a[e + W + 1] = a[sep + 1];
        a[sep] = a[from];
        a[sep + 1] = a[from + 1];
        this.#innerCount[left] = leftCount - 1;
        return;
      }
      this.#mergeInner(left, node, sep);
      this.#removeFromInner(level - 1, idx);
      return;
    }
    const rsep = sep + W; // the separator in front of the right sibling
    const right = a[rsep + REF];
    const rightCount = this.#innerCount[right];
    if (rightCount > this.#minFill) {
      // Rotate left through the parent: right's first child becomes this node's last.
      const r = right * b * W;
      this.#innerPut(node, count, count, a[rsep], a[rsep + 1], a[r + REF]);
      a[rsep] = a[r + W];
      a[rsep + 1] = a[r + W + 1];
      shiftDown(a, r, (right * b + rightCount) * W);
      this.#innerCount[right] = rightCount - 1;
      return;
    }
    this.#mergeInner(node, right, rsep);
    this.#removeFromInner(level - 1, 1);
  }

  /** Appends `right`'s children to `left`, pulling down the parent separator at word `sep`. */
  #mergeInner(left: number, right: number, sep: number): void {
    const b = this.#nodeCap;
    const a = this.#inner;
    const leftCount = this.#innerCount[left];
    const rightCount = this.#innerCount[right];
    const to = (left * b + leftCount) * W;
    a.copyWithin(to, right * b * W, (right * b + rightCount) * W);
    // Right's key[0] is unused; the parent's separator is the bound between the two.
    a[to] = a[sep];
    a[to + 1] = a[sep + 1];
    this.#innerCount[left] = leftCount + rightCount;
    this.#freeInnerNode(right);
  }

  /** Index (in entries) of `leaf`'s first entry: its entries are [start, start + count). */
  #start(leaf: number): number {
    return leaf * this.#nodeCap + this.#leafOff[leaf];
  }

  /** Moves `leaf`'s entries back to the start of its places, so they can be reshaped. */
  #compact(leaf: number): void {
    const off = this.#leafOff[leaf];
    if (off === 0) return;
    const count = this.#leafCount[leaf];
    if (count !== 0) {
      const base = leaf * this.#nodeCap;
      this.#leaf.copyWithin(base * W, (base + off) * W, (base + off + count) * W);
    }
    this.#leafOff[leaf] = 0;
  }

  #allocLeaf(): number {
    let leaf = this.#freeLeaf;
    if (leaf !== NONE) {
      this.#freeLeaf = this.#leafNext[leaf];
    } else {
      if (this.#leafHigh === this.#leafPool) {
        const pool = this.#leafPool * 2;
        this.#leaf = growU32(this.#leaf, pool * this.#nodeCap * W);
        this.#leafCount = growU16(this.#leafCount, pool);
        this.#leafOff = growU16(this.#leafOff, pool);
        this.#leafNext = growI32(this.#leafNext, pool);
        this.#leafPrev = growI32(this.#leafPrev, pool);
        this.#leafPool = pool;
      }
      leaf = this.#leafHigh++;
    }
    this.#leafCount[leaf] = 0;
    this.#leafOff[leaf] = 0;
    this.#leafNext[leaf] = NONE;
    this.#leafPrev[leaf] = NONE;
    return leaf;
  }

  #freeLeafNode(leaf: number): void {
    this.#leafNext[leaf] = this.#freeLeaf;
    this.#freeLeaf = leaf;
  }

  #allocInner(): number {
    let node = this.#freeInner;
    if (node !== NONE) {
      // The link is stored in a Uint32Array: `| 0` turns 0xffffffff back into NONE.
      this.#freeInner = this.#inner[node * this.#nodeCap * W + REF] | 0;
    } else {
      if (this.#innerHigh === this.#innerPool) {
        const pool = this.#innerPool * 2;
        this.#inner = growU32(this.#inner, pool * this.#nodeCap * W);
        this.#innerCount = growU16(this.#innerCount, pool);
        this.#innerPool = pool;
      }
      node = this.#innerHigh++;
    }
    this.#innerCount[node] = 0;
    return node;
  }

  #freeInnerNode(node: number): void {
    this.#inner[node * this.#nodeCap * W + REF] = this.#freeInner;
    this.#freeInner = node;
  }

  /**
   * Checks the subtree at `node` against the bounds lb <= key < ub its parent gives it, calls
   * `check` on each leaf entry, pushes its leaves in order onto `leaves` and returns how many
   * entries it holds.
   */
  #checkNode(
    node: number,
    depth: number,
    lbLo: number,
    lbHi: number,
    hasLb: boolean,
    ubLo: number,
    ubHi: number,
    hasUb: boolean,
    leaves: number[],
    check: EntryCheck,
  ): number {
    const b = this.#nodeCap;
    const isRoot = depth === 0;
    if (depth === this.#height - 1) {
      const count = this.#leafCount[node];
      // The last leaf may hold fewer than minFill (down to 1): a split by an append past the
      // last key keeps the left leaf full and starts the new one with one entry.
      const least = isRoot ? 0 : this.#leafNext[node] === NONE ? 1 : this.#minFill;
      if (count < least || count > b) {
        throw new Error(`Leaf ${node} holds ${count} entries`);
      }
      if (this.#leafOff[node] + count > b) {
        throw new Error(`Leaf ${node} runs past its capacity`);
      }
      const a = this.#leaf;
      for (let i = 0; i < count; i++) {
        const e = (this.#start(node) + i) * W;
        const kLo = a[e];
        const kHi = a[e + 1];
        const slot = a[e + REF];
        check(node, slot, kLo, kHi);
        const outOfOrder = (hasLb && less(kLo, kHi, lbLo, lbHi)) ||
          (hasUb && !less(kLo, kHi, ubLo, ubHi)) ||
          (i > 0 && !less(a[e - W], a[e - W + 1], kLo, kHi));
        if (outOfOrder) throw new Error(`Slot ${slot} is out of order in leaf ${node}`);
      }
      if (count > 0) leaves.push(node);
      return count;
    }
    const count = this.#innerCount[node];
    if (count < (isRoot ? 2 : this.#minFill) || count > b) {
      throw new Error(`Inner node ${node} has ${count} children`);
    }
    const a = this.#inner;
    let entries = 0;
    for (let i = 0; i < count; i++) {
      const e = (node * b + i) * W;
      if (i > 0) {
        const outOfOrder = (hasLb && less(a[e], a[e + 1], lbLo, lbHi)) ||
          (hasUb && !less(a[e], a[e + 1], ubLo, ubHi)) ||
          (i > 1 && !less(a[e - W], a[e - W + 1], a[e], a[e + 1]));
        if (outOfOrder) throw new Error(`Separator ${i} of inner node ${node} is out of order`);
      }
      const last = i === count - 1;
      entries += this.#checkNode(
        a[e + REF],
        depth + 1,
        i === 0 ? lbLo : a[e],
        i === 0 ? lbHi : a[e + 1],
        i === 0 ? hasLb : true,
        last ? ubLo : a[e + W],
        last ? ubHi : a[e + W + 1],
        last ? hasUb : true,
        leaves,
        check,
      );
    }
    return entries;
  }
}
