/** A seeded PRNG and a byte mutator for the topology fuzz loops. */

/** The seeded generator of the fault-injecting mock (mulberry32), so fuzz failures reproduce. */
export { FaultRandom as Prng } from "../mock/iommu/faults.ts";
import type { FaultRandom as Prng } from "../mock/iommu/faults.ts";

/** Returns a mutated copy of `input`: byte flips, interesting values, truncation, extension. */
export function mutate(rng: Prng, input: Uint8Array): Uint8Array {
  let out: Uint8Array = input.slice();
  const edits = 1 + rng.below(4);
  for (let e = 0; e < edits; e++) {
    const kind = rng.below(6);
    if (out.length === 0) out = new Uint8Array(1 + rng.below(64));
    const at = rng.below(out.length);
    if (kind === 0) out[at] ^= 1 << rng.below(8);
    else if (kind === 1) out[at] = rng.below(256);
    else if (kind === 2) out[at] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
    else if (kind === 3) out = out.slice(0, rng.below(out.length + 1));
    else if (kind === 4) {
      const grown = new Uint8Array(out.length + 1 + rng.below(32));
      grown.set(out);
      for (let i = out.length; i < grown.length; i++) grown[i] = rng.below(256);
      out = grown;
    } else {
      // A 32-bit field set to an extreme, to exercise lengths and offsets.
      const at4 = at & ~3;
      if (at4 + 4 <= out.length) {
        const v = [0, 0xffffffff, 0x80000000, 0x7fffffff, out.length, out.length + 1][rng.below(6)];
        new DataView(out.buffer, out.byteOffset).setUint32(at4, v, rng.below(2) === 0);
      }
    }
  }
  return out;
}
