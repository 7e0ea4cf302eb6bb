/**
 * UNMAP rules (virtio 1.3 §5.13.6.6.2, with the spec's examples), on the MAP helpers of
 * map_rules.ts: a later MAP over a range shows whether a mapping is still there.
 *
 * @module
 */

import { VIRTIO_IOMMU_S_INVAL, VIRTIO_IOMMU_S_OK, VIRTIO_IOMMU_S_RANGE } from "../spec/iommu.ts";
import { broken, describe, held, isStatus, type Rule, verdictOf } from "./context.ts";
import { mapUnits, present, refusedByDomain, setup, units } from "./map_rules.ts";
import { attachRequest, unmapRequest } from "./requests.ts";

/** UNMAP rules. */
export const UNMAP_RULES: readonly Rule[] = [
  {
    id: "unmap.reserved",
    section: "5.13.6.6.2",
    level: "MAY",
    summary: "UNMAP with a non-zero reserved field may be refused with INVAL; if OK it unmaps",
    async check(ctx) {
      const m = await setup(ctx);
      await ctx.ok(m.s, mapUnits(m, 1, 0, 0), "MAP unit 0");
      const a = await m.s.send(unmapRequest({ domain: 1, ...units(m.g, 0, 0), reserved: 0xff }));
      if (isStatus(a, VIRTIO_IOMMU_S_INVAL)) return held("refused with INVAL");
      if (!isStatus(a, VIRTIO_IOMMU_S_OK)) return broken(`UNMAP answered ${describe(a)}`);
      return await present(m, 1, 0, 0)
        ? broken("UNMAP answered OK but the mapping is still there")
        : held("answered OK and unmapped");
    },
  },
  refusedByDomain("unmap.unknown-domain", "UNMAP", false),
  refusedByDomain("unmap.bypass-domain", "UNMAP", true),
  {
    id: "unmap.split",
    section: "5.13.6.6.2",
    level: "SHOULD",
    summary: "UNMAP that would split a mapping is refused with RANGE (spec example 4)",
    async check(ctx) {
      const m = await setup(ctx);
      await ctx.ok(m.s, mapUnits(m, 1, 0, 9), "MAP units 0-9");
      const a = await m.s.send(unmapRequest({ domain: 1, ...units(m.g, 0, 4) }));
      const problems = isStatus(a, VIRTIO_IOMMU_S_RANGE)
        ? []
        : [`UNMAP units 0-4 answered ${describe(a)}`];
      if (!await present(m, 1, 0, 9)) problems.push("the mapping was removed");
      return verdictOf(problems, "refused with RANGE, the mapping kept");
    },
  },
  {
    id: "unmap.split-atomic",
    section: "5.13.6.6.2",
    level: "SHOULD",
    summary: "UNMAP that would split a mapping removes no mapping at all",
    async check(ctx) {
      const m = await setup(ctx);
      await ctx.ok(m.s, mapUnits(m, 1, 0, 1), "MAP units 0-1");
      await ctx.ok(m.s, mapUnits(m, 1, 2, 5), "MAP units 2-5");
      // Covers the first mapping whole and the second one in part.
      const a = await m.s.send(unmapRequest({ domain: 1, ...units(m.g, 0, 3) }));
      if (isStatus(a, VIRTIO_IOMMU_S_OK)) return broken("UNMAP units 0-3 answered OK");
      const problems: string[] = [];
      if (!await present(m, 1, 0, 1)) {
        problems.push(`answered ${describe(a)} but removed the first mapping`);
      }
      if (!await present(m, 1, 2, 5)) {
        problems.push(`answered ${describe(a)} but removed the second mapping`);
      }
      return verdictOf(problems, `answered ${describe(a)}, both mappings kept`);
    },
  },
  {
    id: "unmap.covered",
    section: "5.13.6.6.2",
    level: "SHOULD",
    summary: "UNMAP removes every mapping inside its range and answers OK (spec examples 1-3, 5-7)",
    async check(ctx) {
      const m = await setup(ctx);
      // [maps, unmap, mappings that must remain], in granule units, each in a blank domain.
      const examples: [string, [number, number][], [number, number], [number, number][]][] = [
        ["1", [], [0, 4], []],
        ["2", [[0, 9]], [0, 9], []],
        ["3", [[0, 4], [5, 9]], [0, 9], []],
        ["5", [[0, 4], [5, 9]], [0, 4], [[5, 9]]],
        ["6", [[0, 4]], [0, 9], []],
        ["7", [[0, 4], [10, 14]], [0, 14], []],
      ];
      const problems: string[] = [];
      for (const [n, maps, [u0, u1], kept] of examples) {
        const domain = 10 + Number(n);
        await ctx.ok(
          m.s,
          attachRequest({ domain, endpoint: ctx.endpoint }),
          `ATTACH domain ${domain}`,
        );
        for (const [a, b] of maps) {
          await ctx.ok(m.s, mapUnits(m, domain, a, b), `example ${n}: MAP ${a}-${b}`);
        }
        const r = await m.s.send(unmapRequest({ domain, ...units(m.g, u0, u1) }));
        if (!isStatus(r, VIRTIO_IOMMU_S_OK)) {
          problems.push(`example ${n}: UNMAP answered ${describe(r)}`);
        }
        for (const [a, b] of maps) {
          const keep = kept.some(([x, y]) => x === a && y === b);
          if (await present(m, domain, a, b) !== keep) {
            problems.push(`example ${n}: mapping ${a}-${b} ${keep ? "removed" : "kept"}`);
          }
        }
      }
      return verdictOf(problems, "examples 1, 2, 3, 5, 6 and 7 behaved as the spec shows");
    },
  },
];
