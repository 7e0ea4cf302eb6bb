/**
 * DETACH rules (virtio 1.3 §5.13.6.4, §5.13.6.4.2), with the state probes of attach_rules.ts and,
 * for access after DETACH, the DMA oracle.
 *
 * @module
 */

import {
  VIRTIO_IOMMU_ATTACH_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_MAP_F_READ,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
} from "../spec/iommu.ts";
import { hex } from "../util/hex.ts";
import { broken, describe, held, isStatus, type Rule, verdictOf } from "./context.ts";
import { mark, markOf, notAttached, stillAttached, unknownEndpoints } from "./attach_rules.ts";
import { scratchPhys } from "./device_rules.ts";
import { DmaProbe, slot } from "./oracle.ts";
import { attachRequest, detachRequest, mapRequest } from "./requests.ts";
import { PreconditionError } from "./types.ts";

/** DETACH rules. */
export const DETACH_RULES: readonly Rule[] = [
  {
    id: "detach.reserved",
    section: "5.13.6.4.2",
    level: "MUST",
    summary: "The device ignores DETACH's reserved field",
    async check(ctx) {
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
      const d = await s.send(
        detachRequest({ domain: 1, endpoint: ctx.endpoint, reservedFill: 0xff }),
      );
      if (!isStatus(d, VIRTIO_IOMMU_S_OK)) {
        return broken(`DETACH with reserved 0xff…: ${describe(d)}`);
      }
      return verdictOf(
        await notAttached(s, 1, ctx.endpoint),
        "DETACH with reserved bytes 0xff detached",
      );
    },
  },
  {
    id: "detach.unknown-endpoint",
    section: "5.13.6.4.2",
    level: "MUST",
    summary:
      "DETACH of an endpoint that does not exist is refused with NOENT (IDs above 16 bits too)",
    async check(ctx) {
      const problems: string[] = [];
      for (const id of unknownEndpoints(ctx)) {
        const s = await ctx.session();
        await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
        const d = await s.send(detachRequest({ domain: 1, endpoint: id }));
        if (!isStatus(d, VIRTIO_IOMMU_S_NOENT)) {
          problems.push(`endpoint ${hex(id)}: ${describe(d)}`);
        }
      }
      return verdictOf(problems, `${unknownEndpoints(ctx).map(hex).join(", ")} refused with NOENT`);
    },
  },
  {
    id: "detach.wrong-domain",
    section: "5.13.6.4.2",
    level: "MAY",
    summary:
      "DETACH from a domain the endpoint is not in may be refused (INVAL) and detaches nothing",
    async check(ctx) {
      const phys = scratchPhys(ctx);
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH domain 1");
      await mark(ctx, s, 1, phys);
      const wrong = await s.send(detachRequest({ domain: 2, endpoint: ctx.endpoint }));
      const problems = await stillAttached(ctx, s, 1, ctx.endpoint, phys);
      return verdictOf(
        problems,
        `DETACH from domain 2 answered ${describe(wrong)}; still in domain 1`,
      );
    },
  },
  {
    id: "detach.domain-gone",
    section: "5.13.6.4",
    level: "MUST",
    summary:
      "When its last endpoint leaves, a domain ceases to exist and its ID is free (stated in §5.13.6.4)",
    async check(ctx) {
      const phys = scratchPhys(ctx);
      const ep = ctx.endpoint;
      const s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      await mark(ctx, s, 1, phys);
      await ctx.ok(s, detachRequest({ domain: 1, endpoint: ep }), "DETACH domain 1");
      const problems: string[] = [];
      if (ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG) && ((s.negotiated >> 6n) & 1n) === 1n) {
        const flags = VIRTIO_IOMMU_ATTACH_F_BYPASS;
        const b = await s.send(attachRequest({ domain: 1, endpoint: ep, flags }));
        if (!isStatus(b, VIRTIO_IOMMU_S_OK)) {
          problems.push(`ID 1 reused as a bypass domain: ${describe(b)}`);
        }
        await s.send(detachRequest({ domain: 1, endpoint: ep }));
      }
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1 again");
      const m = await s.send(mapRequest({ domain: 1, ...markOf(ctx), physStart: phys, flags: 1 }));
      if (!isStatus(m, VIRTIO_IOMMU_S_OK)) {
        problems.push(`the old mapping survived (MAP answered ${describe(m)})`);
      }
      return verdictOf(
        problems,
        "domain 1 was gone: its ID took a new domain without the old mapping",
      );
    },
  },
  {
    id: "detach.no-access",
    section: "5.13.6.4.2",
    level: "MUST",
    summary: "After DETACH the endpoint cannot reach the domain's mappings",
    oracle: true,
    async check(ctx) {
      const ep = ctx.endpoint;
      const s = await ctx.session();
      const dma = await DmaProbe.create(ctx, s);
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      await dma.stage(1);
      await dma.baseline();
      const target = dma.page();
      await dma.map(1, slot(1), target, VIRTIO_IOMMU_MAP_F_READ);
      if (!await dma.canRead(slot(1), target, 1)) {
        throw new PreconditionError("DMA read through a fresh mapping did not arrive");
      }
      await dma.clearBuffer();
      await ctx.ok(s, detachRequest({ domain: 1, endpoint: ep }), "DETACH domain 1");
      await dma.engine.read(slot(1), 64);
      const faults = await dma.faults();
      await ctx.ok(s, attachRequest({ domain: 2, endpoint: ep }), "ATTACH domain 2");
      await dma.stage(2);
      const out = await dma.bufferOut();
      const leaked = out.every((b, i) => b === target.bytes[i]);
      return leaked
        ? broken("after DETACH a DMA read through the old mapping still returned the page")
        : held(`the read after DETACH was blocked (${faults.length} fault report(s))`);
    },
  },
];
