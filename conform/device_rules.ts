/**
 * Rules about the device as a virtio device: its config fields (virtio 1.3 §2.5.2, §4.1.4.3.1,
 * §5.13.4.2), its status byte and reset (§2.1.2, §2.4.1, §5.13.5). Feature bits are in
 * feature_rules.ts.
 *
 * @module
 */

import { beginInit, finishInit, resetDevice } from "../driver/virtio/init.ts";
import {
  CONFIG_BYPASS,
  VIRTIO_IOMMU_F_BYPASS_CONFIG,
  VIRTIO_IOMMU_F_DOMAIN_RANGE,
  VIRTIO_IOMMU_F_INPUT_RANGE,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_MAP_F_READ,
} from "../spec/iommu.ts";
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER } from "../spec/status.ts";
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
import { attachRequest, detachRequest, mapRequest, probeRequest } from "./requests.ts";
import { type RawConfig, readRawConfig, SUITE_FEATURES } from "./session.ts";

/** The fields of `config` a driver may rely on given the offered features. */
function offeredFields(ctx: CheckContext, config: RawConfig): Record<string, string> {
  const out: Record<string, string> = { page_size_mask: hex(config.pageSizeMask) };
  if (ctx.offers(VIRTIO_IOMMU_F_INPUT_RANGE)) {
    out.input_range = `${hex(config.inputStart)}-${hex(config.inputEnd)}`;
  }
  if (ctx.offers(VIRTIO_IOMMU_F_DOMAIN_RANGE)) {
    out.domain_range = `${config.domainStart}-${config.domainEnd}`;
  }
  if (ctx.offers(VIRTIO_IOMMU_F_PROBE)) out.probe_size = String(config.probeSize);
  if (ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) out.bypass = String(config.bypass);
  return out;
}

/** The fields that differ between two reads, as "name: a → b". */
function differences(a: Record<string, string>, b: Record<string, string>): string[] {
  return Object.keys(a).filter((k) => a[k] !== b[k]).map((k) => `${k}: ${a[k]} → ${b[k]}`);
}

/**
 * A physical address for MAPs nobody DMAs through: a page of one granule the suite owns (a
 * longer mapping runs past it, which is harmless as long as no access is made).
 */
export function scratchPhys(ctx: CheckContext): bigint {
  const g = Number(ctx.granule());
  const page = ctx.target.dma.alloc(g, g);
  ctx.onClose(() => ctx.target.dma.free(page));
  return (BigInt(page.addrHi) << 32n) | BigInt(page.addrLo >>> 0);
}

/** Config, status and reset rules. */
export const DEVICE_RULES: readonly Rule[] = [
  {
    id: "status.reset",
    section: "2.4.1",
    level: "MUST",
    summary: "After a reset the device status reads 0",
    async check(ctx) {
      const t = ctx.target.transport;
      const problems: string[] = [];
      const states: [string, () => Promise<unknown>][] = [
        ["0", () => Promise.resolve()],
        [
          "ACKNOWLEDGE|DRIVER",
          () => Promise.resolve(t.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER)),
        ],
        ["DRIVER_OK", async () => {
          await beginInit(t, { supported: SUITE_FEATURES, timeoutMs: ctx.timeoutMs });
          finishInit(t);
        }],
      ];
      for (const [name, reach] of states) {
        try {
          await reach();
          await resetDevice(t, ctx.timeoutMs);
        } catch (error) {
          problems.push(`from status ${name}: ${(error as Error).message}`);
        }
      }
      return verdictOf(problems, "status read 0 after each reset");
    },
  },
  {
    id: "status.no-early-use",
    section: "2.1.2",
    level: "MUST",
    summary: "The device does not consume buffers before DRIVER_OK",
    async check(ctx) {
      const s = await ctx.session({ driverOk: false, eventBuffers: 0 });
      // The driver breaks its own rule (§3.1.1: no notification before DRIVER_OK) on purpose.
      const early = await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }), {
        timeoutMs: ctx.quietMs,
      });
      s.start(0);
      // The early notification may have been ignored, so the ring's suppression state is stale.
      await ctx.ok(
        s,
        attachRequest({ domain: 2, endpoint: ctx.endpoint }),
        "ATTACH after DRIVER_OK",
        {
          notify: "always",
        },
      );
      return early.answered
        ? broken(`a request notified before DRIVER_OK was answered (${describe(early)})`)
        : held(`nothing consumed for ${ctx.quietMs} ms before DRIVER_OK; answered after it`);
    },
  },
  {
    id: "status.needs-reset-notify",
    section: "2.1.2",
    level: "MUST",
    summary:
      "After setting DEVICE_NEEDS_RESET with DRIVER_OK set, the device sends a config notification",
    async check(ctx) {
      const s = await ctx.session();
      s.transport.takeInterrupt();
      // Error states a device may answer with DEVICE_NEEDS_RESET: a descriptor pointing outside
      // memory, then a request with no writable part.
      const bogus = await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }), {
        badAddress: true,
        timeoutMs: ctx.quietMs,
      });
      const tailless = bogus.needsReset ? bogus : await s.send(
        attachRequest({ domain: 1, endpoint: ctx.endpoint }),
        { writable: 0, timeoutMs: ctx.quietMs },
      );
      if (!tailless.needsReset) {
        return skip(
          `the device did not set DEVICE_NEEDS_RESET (a bogus descriptor: ${describe(bogus)}; ` +
            `no tail: ${describe(tailless)})`,
        );
      }
      const isr = s.transport.takeInterrupt();
      return (isr & 2) !== 0
        ? held("DEVICE_NEEDS_RESET set with a configuration change interrupt")
        : broken(`DEVICE_NEEDS_RESET set, interrupt status ${isr}: no config change notification`);
    },
  },
  {
    id: "reset.quiet",
    section: "2.4.1",
    level: "MUST",
    summary: "After a reset the device does not touch the old queues, even when notified",
    async check(ctx) {
      const s = await ctx.session();
      await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }), {
        notify: false,
        timeoutMs: 0,
      });
      if (s.returned()) return skip("the device answered a request that was never notified");
      await resetDevice(s.transport, ctx.timeoutMs);
      s.notify(0); // the driver breaks a rule on purpose: the queue is not set up any more
      await new Promise((resolve) => setTimeout(resolve, ctx.quietMs));
      return s.returned()
        ? broken("the device answered a request of the queue it was reset from")
        : held(`the old queue stayed untouched for ${ctx.quietMs} ms after the reset`);
    },
  },
  {
    id: "init.reset-detaches",
    section: "5.13.5",
    level: "MUST",
    summary: "After a reset no endpoint is attached and no domain exists (stated in §5.13.5)",
    async check(ctx) {
      const ep = ctx.endpoint;
      const phys = scratchPhys(ctx);
      let s = await ctx.session();
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      const g = ctx.granule();
      const range = { domain: 1, virtStart: 0x10_0000n, virtEnd: 0x10_0000n + g - 1n };
      await ctx.ok(
        s,
        mapRequest({ ...range, physStart: phys, flags: VIRTIO_IOMMU_MAP_F_READ }),
        "MAP",
      );
      s = await ctx.session();
      const detach = await s.send(detachRequest({ domain: 1, endpoint: ep }));
      const map = await s.send(mapRequest({ ...range, physStart: phys, flags: 1 }));
      const problems: string[] = [];
      if (isStatus(detach, 0)) problems.push("DETACH from domain 1 after the reset answered OK");
      if (isStatus(map, 0)) problems.push("MAP into domain 1 after the reset answered OK");
      return verdictOf(
        problems,
        `after the reset DETACH answered ${describe(detach)}, MAP ${describe(map)}`,
      );
    },
  },
  {
    id: "config.page-size-mask",
    section: "5.13.4.2",
    level: "MUST",
    summary: "page_size_mask has at least one bit set",
    async check(ctx) {
      const s = await ctx.session();
      const mask = s.config().pageSizeMask;
      return mask === 0n ? broken("page_size_mask is 0") : held(`page_size_mask ${hex(mask)}`);
    },
  },
  {
    id: "config.bypass-value",
    section: "5.13.4.2",
    level: "MUST",
    summary: "The bypass field reads 0 or 1",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return skip("BYPASS_CONFIG is not offered");
      const s = await ctx.session();
      const value = s.transport.readConfig8(CONFIG_BYPASS);
      return value <= 1 ? held(`bypass reads ${value}`) : broken(`bypass reads ${value}`);
    },
  },
  {
    id: "config.before-features-ok",
    section: "2.5.2",
    level: "MUST",
    summary: "Config fields (those of offered features too) read the same before FEATURES_OK",
    async check(ctx) {
      const t = ctx.target.transport;
      await resetDevice(t, ctx.timeoutMs);
      t.setStatus(STATUS_ACKNOWLEDGE);
      t.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
      const early = offeredFields(ctx, readRawConfig(t));
      const s = await ctx.session();
      const late = offeredFields(ctx, s.config());
      const diff = differences(early, late);
      return diff.length === 0
        ? held(`read before FEATURES_OK: ${JSON.stringify(early)}`)
        : broken(`before FEATURES_OK vs after DRIVER_OK: ${diff.join(", ")}`);
    },
  },
  {
    id: "config.generation",
    section: "4.1.4.3.1",
    level: "MUST",
    summary: "A config field changes only together with the config generation",
    async check(ctx) {
      const s = await ctx.session();
      const t = s.transport;
      const g0 = t.configGeneration();
      const before = offeredFields(ctx, s.config());
      await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }));
      if (s.probes) {
        await s.send(probeRequest({ endpoint: ctx.endpoint }), { writable: s.probeWritable });
      }
      const after = offeredFields(ctx, s.config());
      const g1 = t.configGeneration();
      const diff = differences(before, after);
      if (diff.length > 0 && g0 === g1) {
        return broken(`${diff.join(", ")} with config generation ${g0} unchanged`);
      }
      return held(
        diff.length === 0
          ? "config unchanged across requests"
          : `changed with generation ${g0} → ${g1}`,
      );
    },
  },
  {
    id: "config.bypass-sticky",
    section: "5.13.4.2",
    level: "SHOULD",
    summary: "A value written to bypass survives a device reset",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_BYPASS_CONFIG)) return skip("BYPASS_CONFIG is not offered");
      let s = await ctx.session();
      const initial = s.transport.readConfig8(CONFIG_BYPASS) & 1;
      const written = initial ^ 1;
      s.transport.writeConfig8(CONFIG_BYPASS, written);
      if ((s.transport.readConfig8(CONFIG_BYPASS) & 1) !== written) {
        return skip(`writing ${written} to bypass had no effect`);
      }
      s = await ctx.session();
      const after = s.transport.readConfig8(CONFIG_BYPASS) & 1;
      s.transport.writeConfig8(CONFIG_BYPASS, initial);
      return after === written
        ? held(`bypass ${written} kept across the reset`)
        : broken(`bypass ${written} read ${after} after a device reset`);
    },
  },
];
