/**
 * ATTACH rules (virtio 1.3 §5.13.6.3.2; DETACH is in detach_rules.ts). After every refusal the
 * state is probed with later requests: an endpoint still attached answers a DETACH from its domain
 * with OK; a domain that still holds its mapping refuses a MAP over it (INVAL).
 *
 * @module
 */

import {
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
  VIRTIO_IOMMU_S_UNSUPP,
} from "../spec/iommu.ts";
import { hex } from "../util/hex.ts";
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
import { attachRequest, detachRequest, mapRequest } from "./requests.ts";
import type { RawSession } from "./session.ts";
import { PreconditionError } from "./types.ts";

/** The one-granule mapping the ATTACH checks put in a domain to see whether it survives. */
export function markOf(ctx: CheckContext): { virtStart: bigint; virtEnd: bigint } {
  return { virtStart: 0x10_0000n, virtEnd: 0x10_0000n + ctx.granule() - 1n };
}

/** Endpoint IDs the device must not know: the missing one and IDs above 16 bits. */
export function unknownEndpoints(ctx: CheckContext): number[] {
  const known = new Set(ctx.target.endpoints);
  const ids = [ctx.target.missingEndpoint, 0xffff_ffff];
  for (const high of [0x1_0000, 0x100_0000]) ids.push((ctx.endpoint | high) >>> 0);
  return [...new Set(ids)].filter((id) => !known.has(id));
}

/** Puts the mark mapping into `domain` (a setup step). */
export async function mark(
  ctx: CheckContext,
  s: RawSession,
  domain: number,
  phys: bigint,
): Promise<void> {
  await ctx.ok(
    s,
    mapRequest({ domain, ...markOf(ctx), physStart: phys, flags: VIRTIO_IOMMU_MAP_F_READ }),
    `MAP into domain ${domain}`,
  );
}

/**
 * What is wrong with "`ep` is attached to `domain`, which still holds the mark mapping", as
 * probed by a MAP over the mark (INVAL: still there) and a DETACH (OK: was attached).
 */
export async function stillAttached(
  ctx: CheckContext,
  s: RawSession,
  domain: number,
  ep: number,
  phys: bigint,
): Promise<string[]> {
  const problems: string[] = [];
  const overlap = await s.send(mapRequest({ domain, ...markOf(ctx), physStart: phys, flags: 1 }));
  if (isStatus(overlap, VIRTIO_IOMMU_S_NOENT)) problems.push(`domain ${domain} no longer exists`);
  else if (isStatus(overlap, VIRTIO_IOMMU_S_OK)) problems.push(`domain ${domain} lost its mapping`);
  const detach = await s.send(detachRequest({ domain, endpoint: ep }));
  if (!isStatus(detach, VIRTIO_IOMMU_S_OK)) {
    problems.push(`endpoint ${hex(ep)} was no longer attached to domain ${domain}`);
  }
  return problems;
}

/** What is wrong with "`ep` is attached nowhere in `domain`" (a DETACH must not answer OK). */
export async function notAttached(s: RawSession, domain: number, ep: number): Promise<string[]> {
  const detach = await s.send(detachRequest({ domain, endpoint: ep }));
  return isStatus(detach, VIRTIO_IOMMU_S_OK)
    ? [`endpoint ${hex(ep)} was attached to domain ${domain} all the same`]
    : [];
}

/** Requires BYPASS_CONFIG negotiated (ATTACH_F_BYPASS is meaningless without it, §5.13.6.3). */
function requireBypassConfig(s: RawSession): void {
  if (((s.negotiated >> VIRTIO_IOMMU_F_BYPASS_CONFIG) & 1n) === 0n) {
    throw new PreconditionError("BYPASS_CONFIG was not negotiated");
  }
}

/** Sends an ATTACH that must be refused with `expected`, then checks it had no effect. */
async function refusedAttach(
  ctx: CheckContext,
  fields: { domain: number; flags?: number; reserved?: number },
  expected: number,
): Promise<string[]> {
  const s = await ctx.session();
  const a = await s.send(attachRequest({ endpoint: ctx.endpoint, ...fields }));
  const what = `ATTACH ${JSON.stringify(fields)}`;
  const problems = isStatus(a, expected) ? [] : [`${what} answered ${describe(a)}`];
  return [...problems, ...await notAttached(s, fields.domain, ctx.endpoint)];
}

/** ATTACH rules. */
export const ATTACH_RULES: readonly Rule[] = [
  {
    id: "attach.reserved",
    section: "5.13.6.3.2",
    level: "MUST",
    summary: "ATTACH with a non-zero reserved field is refused with INVAL",
    async check(ctx) {
      const problems = [
        ...await refusedAttach(ctx, { domain: 1, reserved: 0xff }, VIRTIO_IOMMU_S_INVAL),
        ...await refusedAttach(ctx, { domain: 1, reserved: 0x8000_0000 }, VIRTIO_IOMMU_S_INVAL),
      ];
      return verdictOf(
        problems,
        "reserved 0xff and 0x80000000 refused with INVAL, nothing attached",
      );
    },
  },
  {
    id: "attach.unknown-flags",
    section: "5.13.6.3.2",
    level: "MUST",
    summary: "ATTACH with a flag bit the device does not know is refused with INVAL",
    async check(ctx) {
      const problems = [
        ...await refusedAttach(ctx, { domain: 1, flags: 0x2 }, VIRTIO_IOMMU_S_INVAL),
        ...await refusedAttach(ctx, { domain: 1, flags: 0x8000_0000 }, VIRTIO_IOMMU_S_INVAL),
      ];
      return verdictOf(problems, "flags 0x2 and 0x80000000 refused with INVAL, nothing attached");
    },
  },
  {
    id: "attach.unknown-endpoint",
    section: "5.13.6.3.2",
    level: "MUST",
    summary:
      "ATTACH of an endpoint that does not exist is refused with NOENT (IDs above 16 bits too)",
    async check(ctx) {
      const problems: string[] = [];
      for (const id of unknownEndpoints(ctx)) {
        const s = await ctx.session();
        const a = await s.send(attachRequest({ domain: 1, endpoint: id }));
        if (!isStatus(a, VIRTIO_IOMMU_S_NOENT)) {
          problems.push(`endpoint ${hex(id)}: ${describe(a)}`);
        }
      }
      return verdictOf(problems, `${unknownEndpoints(ctx).map(hex).join(", ")} refused with NOENT`);
    },
  },
  {
    id: "attach.attaches",
    section: "5.13.6.3.2",
    level: "MUST",
    summary: "An ATTACH the device does not refuse attaches the endpoint",
    async check(ctx) {
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
      const first = await s.send(detachRequest({ domain: 1, endpoint: ctx.endpoint }));
      const second = await s.send(detachRequest({ domain: 1, endpoint: ctx.endpoint }));
      if (!isStatus(first, VIRTIO_IOMMU_S_OK)) {
        return broken(`after ATTACH OK, DETACH answered ${describe(first)}`);
      }
      return isStatus(second, VIRTIO_IOMMU_S_OK)
        ? broken("a second DETACH answered OK too: the first one did not detach")
        : held(`ATTACH OK, DETACH OK, then DETACH ${describe(second)}`);
    },
  },
  {
    id: "attach.shared-domain",
    section: "5.13.6.3.2",
    level: "MAY",
    summary: "A second endpoint joins a domain, or is refused with UNSUPP",
    async check(ctx) {
      const other = ctx.otherEndpoint;
      if (other === null) return skip("needs two endpoints");
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
      const a = await s.send(attachRequest({ domain: 1, endpoint: other }));
      if (isStatus(a, VIRTIO_IOMMU_S_UNSUPP)) {
        return held("the second endpoint refused with UNSUPP");
      }
      if (!isStatus(a, VIRTIO_IOMMU_S_OK)) return broken(`second endpoint: ${describe(a)}`);
      const problems = [];
      for (const ep of [other, ctx.endpoint]) {
        const d = await s.send(detachRequest({ domain: 1, endpoint: ep }));
        if (!isStatus(d, VIRTIO_IOMMU_S_OK)) problems.push(`DETACH ${hex(ep)}: ${describe(d)}`);
      }
      return verdictOf(problems, `${hex(ctx.endpoint)} and ${hex(other)} shared domain 1`);
    },
  },
  {
    id: "attach.bypass-mismatch",
    section: "5.13.6.3.2",
    level: "SHOULD",
    summary:
      "ATTACH whose BYPASS flag contradicts the existing domain is refused with INVAL, no effect",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return skip("BYPASS_CONFIG is not offered");
      const a = ctx.endpoint;
      const b = ctx.otherEndpoint;
      const phys = scratchPhys(ctx);
      const problems: string[] = [];
      const s = await ctx.session();
      requireBypassConfig(s);
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: a }), "ATTACH domain 1");
      await mark(ctx, s, 1, phys);
      const flags = VIRTIO_IOMMU_ATTACH_F_BYPASS;
      if (b !== null) {
        // Domain 2 is a bypass domain holding the other endpoint; A asks to join it as paging.
        await ctx.ok(s, attachRequest({ domain: 2, endpoint: b, flags }), "ATTACH bypass domain 2");
        const r = await s.send(attachRequest({ domain: 2, endpoint: a }));
        if (!isStatus(r, VIRTIO_IOMMU_S_INVAL)) {
          problems.push(`joining bypass domain 2 without the flag: ${describe(r)}`);
        }
        const r2 = await s.send(attachRequest({ domain: 1, endpoint: b, flags }));
        if (!isStatus(r2, VIRTIO_IOMMU_S_INVAL)) {
          problems.push(`joining domain 1 with the flag: ${describe(r2)}`);
        }
        problems.push(...await stillAttached(ctx, s, 1, a, phys));
        const d = await s.send(detachRequest({ domain: 2, endpoint: b }));
        if (!isStatus(d, VIRTIO_IOMMU_S_OK)) {
          problems.push(`${hex(b)} was no longer in bypass domain 2`);
        }
      } else {
        const r = await s.send(attachRequest({ domain: 1, endpoint: a, flags }));
        if (!isStatus(r, VIRTIO_IOMMU_S_INVAL)) {
          problems.push(`re-attaching with the flag: ${describe(r)}`);
        }
        problems.push(...await stillAttached(ctx, s, 1, a, phys));
      }
      return verdictOf(
        problems,
        "mismatched flags refused with INVAL; both endpoints where they were",
      );
    },
  },
  {
    id: "attach.implicit-detach",
    section: "5.13.6.3.2",
    level: "SHOULD",
    summary:
      "ATTACH of an attached endpoint to another domain acts as DETACH then ATTACH (or UNSUPP)",
    async check(ctx) {
      const ep = ctx.endpoint;
      const phys = scratchPhys(ctx);
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      await mark(ctx, s, 1, phys);
      const a = await s.send(attachRequest({ domain: 2, endpoint: ep }));
      if (isStatus(a, VIRTIO_IOMMU_S_UNSUPP)) {
        return held("moving the endpoint refused with UNSUPP");
      }
      if (!isStatus(a, VIRTIO_IOMMU_S_OK)) return broken(`ATTACH domain 2 answered ${describe(a)}`);
      const problems = await notAttached(s, 1, ep);
      // Domain 1 lost its only endpoint: like after a DETACH it ceases to exist (§5.13.6.4).
      const m = await s.send(mapRequest({ domain: 1, ...markOf(ctx), physStart: phys, flags: 1 }));
      if (!isStatus(m, VIRTIO_IOMMU_S_NOENT)) {
        problems.push(`domain 1 survived its last endpoint leaving (MAP answered ${describe(m)})`);
      }
      const d = await s.send(detachRequest({ domain: 2, endpoint: ep }));
      if (!isStatus(d, VIRTIO_IOMMU_S_OK)) {
        problems.push(`DETACH from domain 2 answered ${describe(d)}`);
      }
      return verdictOf(problems, "moved to domain 2; domain 1 ceased to exist");
    },
  },
  {
    id: "attach.domain-range",
    section: "5.13.6",
    level: "SHOULD",
    summary: "ATTACH to a domain outside domain_range is refused (stated in §5.13.6)",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_DOMAIN_RANGE)) return skip("DOMAIN_RANGE is not offered");
      const s = await ctx.session();
      const { domainStart, domainEnd } = s.config();
      const outside = domainEnd < 0xffff_ffff
        ? domainEnd + 1
        : domainStart > 0
        ? domainStart - 1
        : null;
      if (outside === null) return skip("domain_range covers every 32-bit domain");
      const a = await s.send(attachRequest({ domain: outside, endpoint: ctx.endpoint }));
      if (isStatus(a, VIRTIO_IOMMU_S_OK)) return broken(`ATTACH to domain ${outside} answered OK`);
      return verdictOf(
        await notAttached(s, outside, ctx.endpoint),
        `domain ${outside}: ${describe(a)}`,
      );
    },
  },
];
