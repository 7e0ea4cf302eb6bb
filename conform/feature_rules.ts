/**
 * Rules about the feature bits the device offers and accepts (virtio 1.3 §2.2.2, §5.13.3.2,
 * §6.2): judged from the offer, and by negotiating subsets of it.
 *
 * @module
 */

import { beginInit, DeviceInitError, resetDevice } from "../driver/virtio/init.ts";
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from "../spec/features.ts";
import {
  VIRTIO_IOMMU_F_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_MAP_UNMAP,
} from "../spec/iommu.ts";
import { hex } from "../util/hex.ts";
import { broken, held, type Rule, skip, verdictOf } from "./context.ts";
import { SUITE_FEATURES } from "./session.ts";

/** Feature bits virtio 1.3 defines for a virtio-iommu: §5.13.3 and §6 (41 is PCI only). */
function definedFeatures(transportKind: string): bigint {
  let bits = 0x7fn | featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_EVENT_IDX);
  for (let b = 32n; b <= 40n; b++) bits |= featureBit(b);
  if (transportKind === "pci") bits |= featureBit(41n);
  return bits;
}

/** Feature rules. */
export const FEATURE_RULES: readonly Rule[] = [
  {
    id: "feat.version-1",
    section: "6.2",
    level: "MUST",
    summary: "The device offers VIRTIO_F_VERSION_1",
    check(ctx) {
      return Promise.resolve(
        ctx.offers(VIRTIO_F_VERSION_1)
          ? held(`offered ${hex(ctx.offered)}`)
          : broken(`VERSION_1 (bit 32) missing from ${hex(ctx.offered)}`),
      );
    },
  },
  {
    id: "feat.map-unmap",
    section: "5.13.3.2",
    level: "SHOULD",
    summary: "The device offers VIRTIO_IOMMU_F_MAP_UNMAP",
    check(ctx) {
      return Promise.resolve(
        ctx.offers(VIRTIO_IOMMU_F_MAP_UNMAP)
          ? held("MAP_UNMAP (bit 2) offered")
          : broken(`MAP_UNMAP (bit 2) missing from ${hex(ctx.offered)}`),
      );
    },
  },
  {
    id: "feat.no-legacy-bypass",
    section: "5.13.3.2",
    level: "SHOULD",
    summary: "A new device does not offer VIRTIO_IOMMU_F_BYPASS (superseded by BYPASS_CONFIG)",
    check(ctx) {
      return Promise.resolve(
        ctx.offers(VIRTIO_IOMMU_F_BYPASS)
          ? broken("BYPASS (bit 3) offered")
          : held("BYPASS (bit 3) not offered"),
      );
    },
  },
  {
    id: "feat.not-both-bypass",
    section: "5.13.3.2",
    level: "SHOULD",
    summary: "The device does not offer both VIRTIO_IOMMU_F_BYPASS and BYPASS_CONFIG",
    check(ctx) {
      const both = ctx.offers(VIRTIO_IOMMU_F_BYPASS) && ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG);
      return Promise.resolve(
        both ? broken("bits 3 and 6 both offered") : held("not both of bits 3 and 6"),
      );
    },
  },
  {
    id: "feat.defined-bits",
    section: "2.2.2",
    level: "MUST",
    summary: "The device offers no feature bit the spec does not define for its type/transport",
    check(ctx) {
      const extra = ctx.offered & ~definedFeatures(ctx.target.transport.kind);
      return Promise.resolve(
        extra === 0n
          ? held(`every offered bit of ${hex(ctx.offered)} is defined`)
          : broken(`undefined bits ${hex(extra)} offered`),
      );
    },
  },
  {
    id: "feat.accept-subset",
    section: "2.2.2",
    level: "SHOULD",
    summary: "The device accepts any valid subset of its features (FEATURES_OK stays set)",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_F_VERSION_1)) return skip("VERSION_1 is not offered");
      const subsets = [
        featureBit(VIRTIO_F_VERSION_1),
        featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_IOMMU_F_MAP_UNMAP),
        SUITE_FEATURES | featureBit(VIRTIO_F_VERSION_1),
      ];
      const refused: string[] = [];
      for (const subset of subsets) {
        try {
          await beginInit(ctx.target.transport, { supported: subset, timeoutMs: ctx.timeoutMs });
        } catch (error) {
          if (!(error instanceof DeviceInitError)) throw error;
          refused.push(`${hex(subset & ctx.offered)}: ${error.message}`);
        }
      }
      await resetDevice(ctx.target.transport, ctx.timeoutMs);
      return verdictOf(refused, `accepted ${subsets.map((s) => hex(s & ctx.offered)).join(", ")}`);
    },
  },
  {
    id: "feat.renegotiate",
    section: "2.2.2",
    level: "SHOULD",
    summary: "Features negotiated once are accepted again after a device reset",
    async check(ctx) {
      const t = ctx.target.transport;
      const wanted = SUITE_FEATURES | featureBit(VIRTIO_F_VERSION_1);
      let first: bigint;
      try {
        first = await beginInit(t, { supported: wanted, timeoutMs: ctx.timeoutMs });
      } catch (error) {
        return skip(`the first negotiation failed: ${(error as Error).message}`);
      }
      try {
        for (let round = 0; round < 2; round++) {
          await beginInit(t, { supported: first, timeoutMs: ctx.timeoutMs });
        }
      } catch (error) {
        return broken(`re-negotiating ${hex(first)} after a reset: ${(error as Error).message}`);
      } finally {
        await resetDevice(t, ctx.timeoutMs);
      }
      return held(`${hex(first)} accepted three times, with a reset before each`);
    },
  },
];
