/**
 * MAP rules (virtio 1.3 §5.13.6.5.2, and the translation §5.13.6.5 defines), and the helpers
 * unmap_rules.ts shares. Addresses are in granules of the device's page_size_mask; after every refusal a
 * later MAP shows whether a mapping was left behind (OK: none was; INVAL: one overlaps).
 *
 * @module
 */

import {
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_RANGE,
} from "../spec/iommu.ts";
import { hex } from "../util/hex.ts";
import { type DmaRegion, regionAddress } from "../transport/dma.ts";
import {
  broken,
  type CheckContext,
  describe,
  held,
  isStatus,
  type Rule,
  skip,
  verdictOf,
} from "./context.ts";
import { scratchPhys } from "./device_rules.ts";
import { DmaProbe, slot } from "./oracle.ts";
import { attachRequest, mapRequest, unmapRequest } from "./requests.ts";
import type { RawSession } from "./session.ts";
import { PreconditionError } from "./types.ts";

/** Where the MAP checks place their mappings. */
const BASE = 0x40_0000n;
/** The largest granule the request-only checks handle (16 granules fit below 0x40_0000 + 2 MiB). */
const MAX_GRANULE = 0x2_0000n;

/** A session with the endpoint in domain 1, the granule, and a physical address to map. */
export interface MapSetup {
  s: RawSession;
  g: bigint;
  phys: bigint;
}

/** Brings the device up with the endpoint attached to domain 1. */
export async function setup(ctx: CheckContext): Promise<MapSetup> {
  const s = await ctx.session();
  const mask = s.config().pageSizeMask;
  if (mask === 0n) throw new PreconditionError("page_size_mask is 0");
  const g = mask & -mask;
  if (g > MAX_GRANULE) throw new PreconditionError(`granule ${hex(g)} is larger than 128 KiB`);
  await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
  return { s, g, phys: scratchPhys(ctx) };
}

/** Granule units [first, last] → a MAP/UNMAP range from {@link BASE}. */
export function units(
  g: bigint,
  first: number,
  last: number,
): { virtStart: bigint; virtEnd: bigint } {
  return { virtStart: BASE + BigInt(first) * g, virtEnd: BASE + BigInt(last + 1) * g - 1n };
}

/** MAP of granule units [first, last] in `domain`, read-only. */
export function mapUnits(
  m: MapSetup,
  domain: number,
  first: number,
  last: number,
  flags = 1,
): Uint8Array {
  return mapRequest({ domain, ...units(m.g, first, last), physStart: m.phys, flags });
}

/** Whether units [first, last] hold a mapping now: a MAP over them is refused as overlapping. */
export async function present(
  m: MapSetup,
  domain: number,
  first: number,
  last: number,
): Promise<boolean> {
  const a = await m.s.send(mapUnits(m, domain, first, last));
  if (isStatus(a, VIRTIO_IOMMU_S_OK)) {
    await m.s.send(unmapRequest({ domain, ...units(m.g, first, last) }));
    return false;
  }
  return true;
}

/**
 * The rule that MAP or UNMAP (`what`) in a domain that does not exist is refused with NOENT,
 * or in a bypass domain (`bypass`) with INVAL (§5.13.6.5.2, §5.13.6.6.2: SHOULD).
 */
export function refusedByDomain(id: string, what: "MAP" | "UNMAP", bypass: boolean): Rule {
  const [status, name] = bypass ? [VIRTIO_IOMMU_S_INVAL, "INVAL"] : [VIRTIO_IOMMU_S_NOENT, "NOENT"];
  const where = bypass ? "a bypass domain" : "a domain that does not exist";
  return {
    id,
    section: what === "MAP" ? "5.13.6.5.2" : "5.13.6.6.2",
    level: "SHOULD",
    summary: `${what} in ${where} is refused with ${name}`,
    async check(ctx) {
      if (bypass && !ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
        return skip("BYPASS_CONFIG is not offered");
      }
      const m = await setup(ctx);
      const domain = bypass ? 2 : 99;
      if (bypass) {
        const flags = VIRTIO_IOMMU_ATTACH_F_BYPASS;
        const attach = attachRequest({ domain, endpoint: ctx.endpoint, flags });
        await ctx.ok(m.s, attach, "ATTACH bypass domain 2");
      }
      const a = await m.s.send(
        what === "MAP" ? mapUnits(m, domain, 0, 0) : unmapRequest({ domain, ...units(m.g, 0, 0) }),
      );
      const label = `${what} in ${bypass ? "bypass " : ""}domain ${domain}`;
      return isStatus(a, status)
        ? held(`${label} refused with ${name}`)
        : broken(`${label} answered ${describe(a)}`);
    },
  };
}

/** MAP rules. */
export const MAP_RULES: readonly Rule[] = [
  {
    id: "map.alignment",
    section: "5.13.6.5.2",
    level: "SHOULD",
    summary:
      "MAP with virt_start, phys_start or virt_end + 1 off the granule is refused with RANGE",
    async check(ctx) {
      const m = await setup(ctx);
      if (m.g === 1n) return skip("the granule is one byte: every address is aligned");
      const half = m.g / 2n;
      const cases: [string, Uint8Array][] = [
        [
          "virt_start",
          mapRequest({
            domain: 1,
            virtStart: BASE + half,
            virtEnd: BASE + 2n * m.g - 1n,
            physStart: m.phys + half,
            flags: 1,
          }),
        ],
        [
          "phys_start",
          mapRequest({ domain: 1, ...units(m.g, 0, 0), physStart: m.phys + half, flags: 1 }),
        ],
        [
          "virt_end + 1",
          mapRequest({
            domain: 1,
            virtStart: BASE,
            virtEnd: BASE + half - 1n,
            physStart: m.phys,
            flags: 1,
          }),
        ],
      ];
      const problems: string[] = [];
      for (const [what, bytes] of cases) {
        const a = await m.s.send(bytes);
        if (!isStatus(a, VIRTIO_IOMMU_S_RANGE)) problems.push(`misaligned ${what}: ${describe(a)}`);
        if (await present(m, 1, 0, 1)) problems.push(`misaligned ${what} left a mapping`);
        await m.s.send(unmapRequest({ domain: 1, ...units(m.g, 0, 1) }));
      }
      return verdictOf(problems, "the three misaligned MAPs refused with RANGE, nothing mapped");
    },
  },
  {
    id: "map.overlap",
    section: "5.13.6.5.2",
    level: "SHOULD",
    summary: "MAP over an existing mapping is refused with INVAL",
    async check(ctx) {
      const m = await setup(ctx);
      await ctx.ok(m.s, mapUnits(m, 1, 2, 3), "MAP units 2-3");
      const problems: string[] = [];
      for (const [first, last] of [[2, 3], [3, 4], [1, 2], [1, 4], [3, 3]]) {
        const a = await m.s.send(mapUnits(m, 1, first, last));
        if (!isStatus(a, VIRTIO_IOMMU_S_INVAL)) {
          problems.push(`units ${first}-${last}: ${describe(a)}`);
        }
      }
      await ctx.ok(m.s, unmapRequest({ domain: 1, ...units(m.g, 0, 7) }), "UNMAP units 0-7");
      if (await present(m, 1, 1, 4)) problems.push("a refused MAP left a mapping behind");
      return verdictOf(problems, "five overlapping MAPs refused with INVAL, none left a mapping");
    },
  },
  {
    id: "map.unknown-flags",
    section: "5.13.6.5.2",
    level: "MUST",
    summary: "MAP with a flag bit the device does not know is refused with INVAL",
    async check(ctx) {
      const m = await setup(ctx);
      const problems: string[] = [];
      for (
        const flags of [
          VIRTIO_IOMMU_MAP_F_READ | 0x8,
          (VIRTIO_IOMMU_MAP_F_READ | 0x8000_0000) >>> 0,
        ]
      ) {
        const a = await m.s.send(mapUnits(m, 1, 0, 0, flags));
        if (!isStatus(a, VIRTIO_IOMMU_S_INVAL)) {
          problems.push(`flags ${hex(flags)}: ${describe(a)}`);
        }
        if (await present(m, 1, 0, 0)) problems.push(`flags ${hex(flags)} left a mapping`);
      }
      return verdictOf(problems, "flags 0x9 and 0x80000001 refused with INVAL, nothing mapped");
    },
  },
  refusedByDomain("map.unknown-domain", "MAP", false),
  refusedByDomain("map.bypass-domain", "MAP", true),
  {
    id: "map.input-range",
    section: "5.13.6",
    level: "MUST",
    summary: "MAP outside input_range fails (stated in §5.13.6)",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_INPUT_RANGE)) return skip("INPUT_RANGE is not offered");
      const m = await setup(ctx);
      const { inputStart, inputEnd } = m.s.config();
      const max = (1n << 64n) - 1n;
      const range = inputEnd < max - m.g
        ? { virtStart: inputEnd + 1n, virtEnd: inputEnd + m.g }
        : inputStart >= m.g
        ? { virtStart: inputStart - m.g, virtEnd: inputStart - 1n }
        : null;
      if (range === null) return skip("input_range covers the whole 64-bit space");
      const a = await m.s.send(mapRequest({ domain: 1, ...range, physStart: m.phys, flags: 1 }));
      return isStatus(a, VIRTIO_IOMMU_S_OK)
        ? broken(`MAP ${hex(range.virtStart)}-${hex(range.virtEnd)} answered OK`)
        : held(
          `MAP ${hex(range.virtStart)} outside ${hex(inputStart)}-${hex(inputEnd)}: ${describe(a)}`,
        );
    },
  },
  {
    id: "map.translation",
    section: "5.13.6.5",
    level: "MUST",
    summary: "An access to VA in a mapping reaches PA = VA - virt_start + phys_start",
    oracle: true,
    async check(ctx) {
      const { dma } = await oracleDomain(ctx);
      const g = Number(dma.granule);
      const two = ctx.target.dma.alloc(2 * g, g);
      ctx.onClose(() => ctx.target.dma.free(two));
      // One mapping of two granules: the offset inside it decides where each access lands.
      await dma.map(1, slot(3), two, VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE, 2);
      const problems: string[] = [];
      if (!await dma.canRead(slot(3) + BigInt(g + 0x100), sub(two, g + 0x100), 3)) {
        problems.push(
          "a DMA read at offset granule + 0x100 did not return the bytes at phys + granule + 0x100",
        );
      }
      if (!await dma.canWrite(slot(3) + 0x40n, sub(two, 0x40))) {
        problems.push("a DMA write at offset 0x40 did not land at phys + 0x40");
      }
      return verdictOf(problems, "DMA read and write through the mappings reached the right bytes");
    },
  },
  {
    id: "map.read-only",
    section: "5.13.6.5.2",
    level: "MUST",
    summary: "The device does not allow writes through a mapping without WRITE",
    oracle: true,
    async check(ctx) {
      const { dma } = await oracleDomain(ctx);
      const page = dma.page();
      await dma.map(1, slot(4), page, VIRTIO_IOMMU_MAP_F_READ);
      if (!await dma.canRead(slot(4), page, 4)) {
        throw new PreconditionError("a DMA read through a READ mapping did not arrive");
      }
      const wrote = await dma.canWrite(slot(4), page);
      const faults = await dma.faults();
      return wrote
        ? broken("a DMA write through a READ-only mapping reached the page")
        : held(`the write was blocked (${faults.length} fault report(s))`);
    },
  },
  {
    id: "map.write-only",
    section: "5.13.6.5.2",
    level: "MAY",
    summary: "A WRITE-only mapping takes writes; reads through it may be allowed",
    oracle: true,
    async check(ctx) {
      const { dma } = await oracleDomain(ctx);
      const page = dma.page();
      await dma.map(1, slot(5), page, VIRTIO_IOMMU_MAP_F_WRITE);
      if (!await dma.canWrite(slot(5), page)) {
        return broken("a DMA write through a WRITE mapping did not arrive");
      }
      const read = await dma.canRead(slot(5), page, 5);
      await dma.faults();
      return held(`writes arrive; reads ${read ? "are allowed too" : "are blocked"}`);
    },
  },
];

/** A sub-region view of `region` from byte `offset` (same memory, shifted address). */
function sub(region: DmaRegion, offset: number): DmaRegion {
  const address = regionAddress(region, offset);
  return {
    addrLo: Number(address & 0xffff_ffffn),
    addrHi: Number(address >> 32n),
    size: region.size - offset,
    bytes: region.bytes.subarray(offset),
    view: new DataView(region.bytes.buffer, region.bytes.byteOffset + offset, region.size - offset),
  };
}

/** A session with the oracle's endpoint in domain 1, staging mapped and checked. */
export async function oracleDomain(ctx: CheckContext): Promise<{ s: RawSession; dma: DmaProbe }> {
  const s = await ctx.session();
  const dma = await DmaProbe.create(ctx, s);
  await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
  await dma.stage(1);
  await dma.baseline();
  return { s, dma };
}
