/**
 * Rules the DMA oracle judges: who may reach memory (virtio 1.3 §5.13.6, §5.13.6.2: bypass
 * mode and unattached endpoints) and the fault reports blocked accesses produce
 * (§5.13.6.9.2). One sequence of blocked accesses per run feeds every fault rule.
 *
 * @module
 */

import {
  CONFIG_BYPASS,
  FAULT_SIZE,
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_FAULT_F_ADDRESS,
  VIRTIO_IOMMU_FAULT_F_READ,
  VIRTIO_IOMMU_FAULT_F_WRITE,
  VIRTIO_IOMMU_FAULT_R_DOMAIN,
  VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_MAP_F_READ,
} from "../spec/iommu.ts";
import { regionAddress } from "../transport/dma.ts";
import { hex } from "../util/hex.ts";
import { broken, type CheckContext, held, type Rule, skip, verdictOf } from "./context.ts";
import { DMA_LENGTH, DmaProbe, pattern, slot, startsWith } from "./oracle.ts";
import { attachRequest, detachRequest } from "./requests.ts";
import type { FaultRecord } from "./session.ts";

/** The reports of one blocked access, and the IOVA it used. */
interface Blocked {
  /** What the access was. */
  what: string;
  /** The IOVA. */
  iova: bigint;
  /** Whether it was a write. */
  write: boolean;
  /** The reason a conforming device gives (§5.13.6.9). */
  reason: number;
  /** The reports that arrived. */
  faults: FaultRecord[];
}

/** What the blocked-access sequence found. */
interface FaultSample {
  /** One entry per blocked access. */
  accesses: Blocked[];
  /** Whether the read by a never-attached endpoint brought the page's bytes back. */
  unattachedLeaked: boolean;
}

/**
 * Four accesses that must be blocked, run once: a read by an endpoint never attached (bypass
 * off), a read of an unmapped IOVA, a write through a READ-only mapping, a read after DETACH.
 */
function faultSample(ctx: CheckContext): Promise<FaultSample> {
  return ctx.memo("fault-sample", async () => {
    const ep = ctx.endpoint;
    const s = await ctx.session();
    const dma = await DmaProbe.create(ctx, s);
    const accesses: Blocked[] = [];
    const low = dma.lowPage();
    const secret = low ?? dma.page();
    secret.bytes.set(pattern(9));
    // Through the page's own address when possible: identity would then bring it back.
    const iova = low !== null ? regionAddress(low) : slot(9);
    await dma.engine.read(iova, DMA_LENGTH);
    const unattached = await dma.faults();
    accesses.push({
      what: "a read by an endpoint never attached",
      iova,
      write: false,
      reason: VIRTIO_IOMMU_FAULT_R_DOMAIN,
      faults: unattached,
    });
    await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
    await dma.stage(1);
    const unattachedLeaked = startsWith(await dma.bufferOut(), pattern(9));
    await dma.baseline();
    await dma.engine.read(slot(7), DMA_LENGTH);
    accesses.push({
      what: "a read of an unmapped IOVA",
      iova: slot(7),
      write: false,
      reason: VIRTIO_IOMMU_FAULT_R_MAPPING,
      faults: await dma.faults(),
    });
    const page = dma.page();
    await dma.map(1, slot(8), page, VIRTIO_IOMMU_MAP_F_READ);
    await dma.canWrite(slot(8), page);
    accesses.push({
      what: "a write through a READ-only mapping",
      iova: slot(8),
      write: true,
      reason: VIRTIO_IOMMU_FAULT_R_MAPPING,
      faults: await dma.faults(),
    });
    await ctx.ok(s, detachRequest({ domain: 1, endpoint: ep }), "DETACH domain 1");
    await dma.engine.read(slot(8), DMA_LENGTH);
    accesses.push({
      what: "a read after DETACH",
      iova: slot(8),
      write: false,
      reason: VIRTIO_IOMMU_FAULT_R_DOMAIN,
      faults: await dma.faults(),
    });
    return { accesses, unattachedLeaked };
  });
}

/** Judges every fault report of the sample with `judge`; skipped when none arrived. */
async function eachFault(
  ctx: CheckContext,
  judge: (f: FaultRecord, access: Blocked) => string | null,
  ok: string,
) {
  const sample = await faultSample(ctx);
  const all = sample.accesses.flatMap((a) => a.faults.map((f) => [f, a] as const));
  if (all.length === 0) return skip("the device reported no fault for the blocked accesses");
  const problems = all.map(([f, a]) => {
    const p = judge(f, a);
    return p === null ? null : `${a.what}: ${p}`;
  }).filter((p): p is string => p !== null);
  return verdictOf([...new Set(problems)], `${ok} (${all.length} reports)`);
}

/**
 * The rule that an endpoint in bypass mode (`where`: unattached with bypass = 1, or attached to
 * a bypass domain) reads a physical address as itself; the read goes through a page the suite
 * owns below the engine's address limit, and the buffer comes out through a paging domain.
 */
function identityRule(
  id: string,
  summary: string,
  where: "in bypass mode" | "in a bypass domain",
): Rule {
  return {
    id,
    section: "5.13.6",
    level: "MUST",
    summary,
    oracle: true,
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return skip("BYPASS_CONFIG is not offered");
      const s = await ctx.session();
      const dma = await DmaProbe.create(ctx, s);
      const page = dma.lowPage();
      if (page === null) return skip("no DMA page below the engine's address limit");
      const seed = where === "in bypass mode" ? 11 : 12;
      page.bytes.set(pattern(seed));
      const ep = ctx.endpoint;
      if (where === "in bypass mode") {
        s.transport.writeConfig8(CONFIG_BYPASS, 1);
        await dma.engine.read(regionAddress(page), DMA_LENGTH);
        s.transport.writeConfig8(CONFIG_BYPASS, 0);
      } else {
        const flags = VIRTIO_IOMMU_ATTACH_F_BYPASS;
        await ctx.ok(
          s,
          attachRequest({ domain: 2, endpoint: ep, flags }),
          "ATTACH bypass domain 2",
        );
        await dma.engine.read(regionAddress(page), DMA_LENGTH);
        await ctx.ok(s, detachRequest({ domain: 2, endpoint: ep }), "DETACH domain 2");
      }
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      await dma.stage(1);
      return startsWith(await dma.bufferOut(), pattern(seed))
        ? held(`a read of ${hex(regionAddress(page))} ${where} returned the page at that address`)
        : broken(`${where} a read of a physical address did not return its bytes`);
    },
  };
}

/** Bypass, unattached-endpoint and fault-report rules. */
export const FAULT_RULES: readonly Rule[] = [
  {
    id: "ops.unattached-blocked",
    section: "5.13.6.2",
    level: "SHOULD",
    summary: "An unattached endpoint not in bypass mode cannot access memory",
    oracle: true,
    async check(ctx) {
      const sample = await faultSample(ctx);
      return sample.unattachedLeaked
        ? broken("a DMA read by an endpoint never attached (bypass off) returned the page")
        : held(`blocked (${sample.accesses[0].faults.length} fault report(s))`);
    },
  },
  identityRule(
    "bypass.unattached",
    "With bypass = 1, an unattached endpoint's accesses are identity-mapped (stated in §5.13.6)",
    "in bypass mode",
  ),
  identityRule(
    "bypass.domain",
    "An endpoint attached to a bypass domain has identity-mapped accesses (stated in §5.13.6)",
    "in a bypass domain",
  ),
  {
    id: "fault.reserved",
    section: "5.13.6.9.2",
    level: "SHOULD",
    summary: "A fault report's reserved and reserved1 fields are zero",
    oracle: true,
    check(ctx) {
      return eachFault(
        ctx,
        (f) =>
          f.reserved !== 0 || f.reserved1 !== 0
            ? `reserved ${hex(f.reserved)}, reserved1 ${hex(f.reserved1)}`
            : null,
        "reserved fields zero",
      );
    },
  },
  {
    id: "fault.flags",
    section: "5.13.6.9.2",
    level: "SHOULD",
    summary: "A fault report sets no undefined flag",
    oracle: true,
    check(ctx) {
      const known = VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_WRITE |
        VIRTIO_IOMMU_FAULT_F_ADDRESS;
      return eachFault(
        ctx,
        (f) => (f.flags & ~known) !== 0 ? `flags ${hex(f.flags)}` : null,
        "only READ, WRITE and ADDRESS flags",
      );
    },
  },
  {
    id: "fault.endpoint",
    section: "5.13.6.9.2",
    level: "SHOULD",
    summary: "A fault report names the endpoint that made the access",
    oracle: true,
    check(ctx) {
      return eachFault(
        ctx,
        (f) => f.endpoint !== ctx.endpoint ? `endpoint ${hex(f.endpoint)}` : null,
        `endpoint ${hex(ctx.endpoint)}`,
      );
    },
  },
  {
    id: "fault.address",
    section: "5.13.6.9.2",
    level: "MAY",
    summary: "A fault report may omit the address; when F_ADDRESS is set it is the faulting one",
    oracle: true,
    check(ctx) {
      return eachFault(
        ctx,
        (f, a) => {
          if ((f.flags & VIRTIO_IOMMU_FAULT_F_ADDRESS) === 0) return null;
          const inside = f.address >= a.iova && f.address < a.iova + BigInt(DMA_LENGTH);
          return inside ? null : `address ${hex(f.address)}, the access was at ${hex(a.iova)}`;
        },
        "every address given lies in the blocked access",
      );
    },
  },
  {
    id: "fault.reason",
    section: "5.13.6.9",
    level: "SHOULD",
    summary:
      "The reason is DOMAIN for an unattached endpoint, MAPPING for a missing or denied mapping",
    oracle: true,
    check(ctx) {
      return eachFault(
        ctx,
        (f, a) => f.reason !== a.reason ? `reason ${f.reason}, expected ${a.reason}` : null,
        "the closest reason each time",
      );
    },
  },
  {
    id: "fault.one-buffer",
    section: "5.13.6.9.2",
    level: "SHOULD",
    summary: "A fault report fills one 24-byte buffer (used length 24), never several",
    oracle: true,
    async check(ctx) {
      const sample = await faultSample(ctx);
      const all = sample.accesses.flatMap((a) => a.faults);
      if (all.length === 0) return skip("the device reported no fault for the blocked accesses");
      const problems = all.filter((f) => f.used !== FAULT_SIZE).map((f) => `used length ${f.used}`);
      // A buffer too small for a report must not receive part of one (§5.13.6.9.2).
      const s = await ctx.session({ eventBufferSize: 16, eventBuffers: 4 });
      const dma = await DmaProbe.create(ctx, s);
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
      await dma.engine.read(slot(7), DMA_LENGTH);
      for (const f of await dma.faults()) {
        if (f.used > 16) problems.push(`a 16-byte buffer came back with used length ${f.used}`);
        else if (f.used > 0 && (f.reason > 2 || f.reserved !== 0)) {
          problems.push("a 16-byte buffer holds the rest of a split report");
        }
      }
      return verdictOf(
        [...new Set(problems)],
        `${all.length} reports of 24 bytes; 16-byte buffers not split into`,
      );
    },
  },
];
