/**
 * Rules about requests in general (virtio 1.3 §5.13.6.2) and how the device handles the ring
 * they travel on: framing and descriptor layouts (§2.7.4.1, §5.13.6), device-readable buffers
 * left alone (§2.7.5.1), used lengths (§2.7.8.2), notifications (§2.7.7.2, §2.7.10.2).
 *
 * @module
 */

import { VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE } from "../spec/iommu.ts";
import {
  broken,
  type CheckContext,
  describe,
  held,
  isStatus,
  type Rule,
  verdictOf,
} from "./context.ts";
import { scratchPhys } from "./device_rules.ts";
import {
  attachRequest,
  detachRequest,
  mapRequest,
  probeRequest,
  typedRequest,
  unmapRequest,
} from "./requests.ts";
import { type Answer, type RawSession, type SendOptions, SENTINEL } from "./session.ts";

/** Whether the device returned the buffers without writing anything. */
function untouched(a: Answer, fill = SENTINEL): boolean {
  return a.answered && a.used === 0 && a.writable.every((b) => b === fill);
}

/** One request of each type, valid, in a sequence that succeeds on a conforming device. */
async function validSequence(
  ctx: CheckContext,
  s: RawSession,
): Promise<{ what: string; answer: Answer; readable: Uint8Array }[]> {
  const ep = ctx.endpoint;
  const phys = scratchPhys(ctx);
  const map = { domain: 1, virtStart: 0x10_0000n, virtEnd: 0x10_0fffn };
  const steps: { what: string; bytes: Uint8Array; options?: SendOptions }[] = [];
  if (s.probes) {
    steps.push({
      what: "PROBE",
      bytes: probeRequest({ endpoint: ep }),
      options: { writable: s.probeWritable },
    });
  }
  steps.push(
    { what: "ATTACH", bytes: attachRequest({ domain: 1, endpoint: ep }) },
    {
      what: "MAP",
      bytes: mapRequest({ ...map, physStart: phys, flags: VIRTIO_IOMMU_MAP_F_READ }),
    },
    { what: "UNMAP", bytes: unmapRequest(map) },
    { what: "DETACH", bytes: detachRequest({ domain: 1, endpoint: ep }) },
  );
  const out = [];
  for (const step of steps) {
    const readable = step.bytes.slice();
    out.push({ what: step.what, answer: await s.send(step.bytes, step.options), readable });
  }
  return out;
}

/** Request-level and ring-level rules. */
export const FRAMING_RULES: readonly Rule[] = [
  {
    id: "ops.status-ok",
    section: "5.13.6.2",
    level: "SHOULD",
    summary: "A request that succeeds gets status OK",
    async check(ctx) {
      const s = await ctx.session();
      const steps = await validSequence(ctx, s);
      const bad = steps.filter((st) => !isStatus(st.answer, 0));
      return verdictOf(
        bad.map((st) => `${st.what} answered ${describe(st.answer)}`),
        `${steps.map((st) => st.what).join(", ")} all answered OK`,
      );
    },
  },
  {
    id: "ops.unknown-type",
    section: "5.13.6.2",
    level: "SHOULD",
    summary: "A request of unknown type is returned unwritten with used length 0",
    async check(ctx) {
      const problems: string[] = [];
      let s = await ctx.session();
      for (const type of [0, 6, 0x80, 0xff]) {
        const a = await s.send(typedRequest(type, 20), { writable: 4 });
        if (!untouched(a)) problems.push(`type ${type}: ${describe(a)}`);
        if (a.needsReset || !a.answered) s = await ctx.session();
      }
      return verdictOf(problems, "types 0, 6, 0x80 and 0xff returned with used length 0");
    },
  },
  {
    id: "ops.head-reserved",
    section: "5.13.6.2",
    level: "MUST",
    summary: "The device ignores head.reserved",
    async check(ctx) {
      const s = await ctx.session();
      const ep = ctx.endpoint;
      const headReserved = 0xffffff;
      const problems: string[] = [];
      const attach = await s.send(attachRequest({ domain: 1, endpoint: ep, headReserved }));
      if (!isStatus(attach, 0)) problems.push(`ATTACH answered ${describe(attach)}`);
      if (s.probes) {
        const plain = await s.send(probeRequest({ endpoint: ep }), { writable: s.probeWritable });
        const marked = await s.send(probeRequest({ endpoint: ep, headReserved }), {
          writable: s.probeWritable,
        });
        if (describe(plain) !== describe(marked)) {
          problems.push(`PROBE answered ${describe(marked)}, ${describe(plain)} without`);
        }
      }
      const detach = await s.send(detachRequest({ domain: 1, endpoint: ep, headReserved }));
      if (!isStatus(detach, 0)) problems.push(`DETACH answered ${describe(detach)}`);
      return verdictOf(problems, "ATTACH, PROBE and DETACH with head.reserved 0xffffff succeeded");
    },
  },
  {
    id: "ops.tail-reserved",
    section: "5.13.6.2",
    level: "SHOULD",
    summary: "The device sets tail.reserved to zero",
    async check(ctx) {
      const s = await ctx.session();
      const answers = await validSequence(ctx, s);
      const refused = await s.send(unmapRequest({ domain: 77, virtStart: 0n, virtEnd: 0xfffn }));
      answers.push({
        what: "UNMAP of a missing domain",
        answer: refused,
        readable: new Uint8Array(),
      });
      const problems: string[] = [];
      for (const { what, answer } of answers) {
        if (answer.status === null) continue;
        const at = answer.writable.length - 4;
        const reserved = [...answer.writable.subarray(at + 1, at + 4)];
        if (reserved.some((b) => b !== 0)) problems.push(`${what}: tail.reserved ${reserved}`);
      }
      return verdictOf(problems, `tail.reserved zero in ${answers.length} answers`);
    },
  },
  {
    id: "framing.unparsable",
    section: "5.13.6",
    level: "SHOULD",
    summary: "A request without a head or a tail is returned with nothing written",
    async check(ctx) {
      const attach = () => attachRequest({ domain: 1, endpoint: ctx.endpoint });
      const cases: [string, Uint8Array, number][] = [
        ["no writable part", attach(), 0],
        ["a 2-byte writable part", attach(), 2],
        ["no readable part", new Uint8Array(0), 4],
        ["a 2-byte readable part", attach().subarray(0, 2), 4],
      ];
      const problems: string[] = [];
      for (const [what, bytes, writable] of cases) {
        const s = await ctx.session();
        const a = await s.send(bytes, { writable, timeoutMs: ctx.quietMs });
        if (!untouched(a)) problems.push(`${what}: ${describe(a)}`);
      }
      return verdictOf(problems, "each returned with used length 0");
    },
  },
  {
    id: "framing.short-request",
    section: "5.13.6",
    level: "SHOULD",
    summary: "A request too short for its type is refused (used length 0 or an error status)",
    async check(ctx) {
      const s = await ctx.session();
      const ep = ctx.endpoint;
      const phys = scratchPhys(ctx);
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ep }), "ATTACH domain 1");
      const map = mapRequest({
        domain: 1,
        virtStart: 0x10_0000n,
        virtEnd: 0x10_0fffn,
        physStart: phys,
        flags: VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE,
      });
      const cases: [string, Uint8Array, number][] = [
        ["ATTACH of 12 bytes", attachRequest({ domain: 2, endpoint: ep }).subarray(0, 12), 4],
        ["DETACH of 8 bytes", detachRequest({ domain: 1, endpoint: ep }).subarray(0, 8), 4],
        ["MAP of 24 bytes", map.subarray(0, 24), 4],
        [
          "UNMAP of 16 bytes",
          unmapRequest({ domain: 1, virtStart: 0n, virtEnd: 0xfffn }).subarray(0, 16),
          4,
        ],
      ];
      if (s.probes) {
        cases.push([
          "PROBE of 40 bytes",
          probeRequest({ endpoint: ep }).subarray(0, 40),
          s.probeWritable,
        ]);
      }
      const problems: string[] = [];
      for (const [what, bytes, writable] of cases) {
        const a = await s.send(bytes.slice(), { writable });
        if (!untouched(a) && (!a.answered || a.status === null || a.status === 0)) {
          problems.push(`${what}: ${describe(a)}`);
        }
      }
      // The short DETACH must not have detached: a full one still works.
      const detach = await s.send(detachRequest({ domain: 1, endpoint: ep }));
      if (!isStatus(detach, 0)) problems.push(`then DETACH domain 1 answered ${describe(detach)}`);
      return verdictOf(
        problems,
        `${cases.length} short requests refused, the endpoint still attached`,
      );
    },
  },
  {
    id: "framing.layout",
    section: "2.7.4.1",
    level: "MUST",
    summary: "The device makes no assumption about how a request is split into descriptors",
    async check(ctx) {
      const s = await ctx.session();
      const ep = ctx.endpoint;
      const problems: string[] = [];
      // 4 + 3 descriptors (indirect, if negotiated), then 6 + 4 (direct: more than the table).
      const attach = await s.send(attachRequest({ domain: 1, endpoint: ep }), {
        splitReadable: [2, 6, 11],
        splitWritable: [1, 3],
      });
      if (!isStatus(attach, 0)) problems.push(`split ATTACH answered ${describe(attach)}`);
      if (s.probes) {
        const size = s.probeWritable;
        const whole = await s.send(probeRequest({ endpoint: ep }), { writable: size });
        const split = await s.send(probeRequest({ endpoint: ep }), {
          writable: size,
          splitReadable: [1, 2, 5, 8, 40],
          splitWritable: [100, size - 3, size - 1],
        });
        if (describe(whole) !== describe(split) || split.used !== whole.used) {
          problems.push(
            `split PROBE answered ${describe(split)} (used ${split.used}), whole ${
              describe(whole)
            } (used ${whole.used})`,
          );
        } else if (!whole.writable.every((b, i) => b === split.writable[i])) {
          problems.push("split PROBE wrote other properties than the whole one");
        }
      }
      const detach = await s.send(detachRequest({ domain: 1, endpoint: ep }), {
        splitReadable: [1, 4, 12, 19],
        splitWritable: [2],
      });
      if (!isStatus(detach, 0)) problems.push(`split DETACH answered ${describe(detach)}`);
      return verdictOf(
        problems,
        "ATTACH, PROBE and DETACH split at odd offsets answered as whole ones",
      );
    },
  },
  {
    id: "framing.readable-untouched",
    section: "2.7.5.1",
    level: "MUST",
    summary: "The device does not write to device-readable buffers",
    async check(ctx) {
      const s = await ctx.session();
      const steps = await validSequence(ctx, s);
      const unknown = typedRequest(0xff, 20);
      steps.push({ what: "unknown type", answer: await s.send(unknown), readable: unknown });
      const written = steps.filter((st) => !st.answer.readableIntact).map((st) => st.what);
      return written.length === 0
        ? held(`${steps.length} requests left their readable bytes alone`)
        : broken(`the device wrote into the readable part of ${written.join(", ")}`);
    },
  },
  {
    id: "framing.used-length",
    section: "2.7.8.2",
    level: "MUST",
    summary: "The used length is no more than the bytes the device wrote",
    async check(ctx) {
      const problems: string[] = [];
      for (const fill of [SENTINEL, 0x5a]) {
        const s = await ctx.session();
        if (!s.probes) {
          const a = await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }), { fill });
          if (a.ringError !== null) problems.push(a.ringError);
          else if (a.used > 0 && a.writable[0] === fill) {
            problems.push(`used ${a.used}, status not written`);
          }
          continue;
        }
        const a = await s.send(probeRequest({ endpoint: ctx.endpoint }), {
          writable: s.probeWritable,
          fill,
        });
        if (a.ringError !== null) problems.push(a.ringError);
        const unwritten = a.writable.subarray(0, Math.max(0, a.used)).findIndex((b) => b === fill);
        if (unwritten >= 0) {
          problems.push(
            `PROBE used length ${a.used} but byte ${unwritten} still holds the fill ${fill}`,
          );
        }
      }
      return verdictOf(problems, "every byte the used length covers was written");
    },
  },
  {
    id: "framing.spurious-notify",
    section: "2.7.10.2",
    level: "MUST",
    summary: "The device copes with notifications when nothing new is available",
    async check(ctx) {
      const s = await ctx.session();
      for (let i = 0; i < 3; i++) {
        s.notify(0);
        s.notify(1);
      }
      await new Promise((resolve) => setTimeout(resolve, ctx.quietMs));
      if (s.needsReset()) return broken("spurious notifications set DEVICE_NEEDS_RESET");
      if (s.returned()) return broken("spurious notifications made the device return a buffer");
      const a = await s.send(attachRequest({ domain: 1, endpoint: ctx.endpoint }));
      return isStatus(a, 0)
        ? held("six spurious notifications, then an ATTACH answered OK")
        : broken(`after spurious notifications ATTACH answered ${describe(a)}`);
    },
  },
  {
    id: "notify.suppressed",
    section: "2.7.7.2",
    level: "SHOULD",
    summary:
      "The device sends no used-buffer notification while the driver suppresses them (after the first)",
    async check(ctx) {
      const s = await ctx.session();
      // QEMU and Linux's vhost notify for the first used buffer of a queue whatever used_event
      // says (the driver tolerates it, §2.7.7.1); the rule is judged from the second one on.
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH");
      s.transport.takeInterrupt();
      await ctx.ok(s, attachRequest({ domain: 2, endpoint: ctx.endpoint }), "ATTACH");
      const isr = s.transport.takeInterrupt();
      return (isr & 1) === 0
        ? held("no queue interrupt with notifications suppressed")
        : broken(`interrupt status ${isr} after a request with notifications suppressed`);
    },
  },
  {
    id: "notify.enabled",
    section: "2.7.7.2",
    level: "MUST",
    summary: "The device sends a used-buffer notification when the driver asks for them",
    async check(ctx) {
      const s = await ctx.session();
      s.requestInterrupts(true);
      await ctx.ok(s, attachRequest({ domain: 1, endpoint: ctx.endpoint }), "ATTACH");
      s.transport.takeInterrupt();
      await ctx.ok(s, attachRequest({ domain: 2, endpoint: ctx.endpoint }), "ATTACH");
      const isr = s.transport.takeInterrupt();
      s.requestInterrupts(false);
      return (isr & 1) !== 0
        ? held("queue interrupt raised for the request")
        : broken(`interrupt status ${isr}: no queue interrupt with notifications enabled`);
    },
  },
];
