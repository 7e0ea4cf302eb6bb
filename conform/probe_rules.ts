/**
 * PROBE and RESV_MEM rules (virtio 1.3 §5.13.6.7.2, §5.13.6.8.1.2). The property area is read
 * raw, header by header, so a wrong length or a stray byte shows; every endpoint is probed once
 * per run and the rules share what came back.
 *
 * @module
 */

import {
  PROP_HEADER_SIZE,
  PROP_TYPE_MASK,
  RESV_MEM_END,
  RESV_MEM_SIZE,
  RESV_MEM_START,
  RESV_MEM_SUBTYPE,
  TAIL_SIZE,
  VIRTIO_IOMMU_F_PROBE,
  VIRTIO_IOMMU_PROBE_T_RESV_MEM,
  VIRTIO_IOMMU_RESV_MEM_T_MSI,
  VIRTIO_IOMMU_S_INVAL,
  VIRTIO_IOMMU_S_NOENT,
  VIRTIO_IOMMU_S_OK,
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
import { unknownEndpoints } from "./attach_rules.ts";
import { attachRequest, mapRequest, probeRequest } from "./requests.ts";
import { type Answer, SENTINEL } from "./session.ts";
import { PreconditionError } from "./types.ts";

/** One property as found in the area. */
interface RawProperty {
  /** Offset of its header in the area. */
  offset: number;
  /** The 12-bit type. */
  type: number;
  /** Bits 12-15 of the first le16. */
  reservedBits: number;
  /** The length field. */
  length: number;
}

/** A RESV_MEM region as found. */
interface RawRegion {
  /** Subtype byte. */
  subtype: number;
  /** `reserved[3]` as a number. */
  reserved: number;
  /** First address. */
  start: bigint;
  /** Last address. */
  end: bigint;
}

/** What PROBE of one endpoint returned. */
interface ProbedEndpoint {
  /** The endpoint. */
  endpoint: number;
  /** The answer (status, used length). */
  answer: Answer;
  /** `probe_size`. */
  probeSize: number;
  /** Properties walked `length + 4` apart (§5.13.6.7). */
  properties: RawProperty[];
  /** RESV_MEM regions among them. */
  regions: RawRegion[];
  /** Where the walk stopped: a NONE header or the end of the area. */
  end: number;
  /** Why the walk could not go on (a property overrunning the area), or null. */
  overrun: string | null;
}

/** Walks the property area of an answered PROBE. */
function walk(endpoint: number, answer: Answer, probeSize: number): ProbedEndpoint {
  const area = answer.writable;
  const view = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const out: ProbedEndpoint = {
    endpoint,
    answer,
    probeSize,
    properties: [],
    regions: [],
    end: 0,
    overrun: null,
  };
  let cur = 0;
  while (cur + PROP_HEADER_SIZE <= probeSize) {
    const word = view.getUint16(cur, true);
    const type = word & PROP_TYPE_MASK;
    if (type === 0) break;
    const length = view.getUint16(cur + 2, true);
    if (cur + PROP_HEADER_SIZE + length > probeSize) {
      out.overrun =
        `property type ${type} at ${cur} claims ${length} bytes, past probe_size ${probeSize}`;
      break;
    }
    out.properties.push({ offset: cur, type, reservedBits: word >> 12, length });
    if (type === VIRTIO_IOMMU_PROBE_T_RESV_MEM && PROP_HEADER_SIZE + length >= RESV_MEM_SIZE) {
      out.regions.push({
        subtype: view.getUint8(cur + RESV_MEM_SUBTYPE),
        reserved: view.getUint32(cur + RESV_MEM_SUBTYPE, true) >>> 8,
        start: view.getBigUint64(cur + RESV_MEM_START, true),
        end: view.getBigUint64(cur + RESV_MEM_END, true),
      });
    }
    cur += PROP_HEADER_SIZE + length;
  }
  out.end = cur;
  return out;
}

/** PROBE of every endpoint, once per run (a {@link PreconditionError} without PROBE). */
function probeAll(ctx: CheckContext): Promise<ProbedEndpoint[]> {
  return ctx.memo("probe-all", async () => {
    const s = await ctx.session();
    if (!s.probes) throw new PreconditionError("PROBE was not negotiated");
    const probeSize = s.config().probeSize;
    const out: ProbedEndpoint[] = [];
    for (const endpoint of ctx.target.endpoints) {
      const answer = await s.send(probeRequest({ endpoint }), { writable: probeSize + TAIL_SIZE });
      if (!isStatus(answer, VIRTIO_IOMMU_S_OK)) {
        throw new PreconditionError(`PROBE of endpoint ${hex(endpoint)}: ${describe(answer)}`);
      }
      out.push(walk(endpoint, answer, probeSize));
    }
    return out;
  });
}

/** Runs `judge` on every probed endpoint, collecting problems. */
async function eachEndpoint(
  ctx: CheckContext,
  judge: (p: ProbedEndpoint) => string[],
  ok: string,
) {
  if (!ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is not offered");
  const probed = await probeAll(ctx);
  return verdictOf(
    probed.flatMap((p) => judge(p).map((problem) => `endpoint ${hex(p.endpoint)}: ${problem}`)),
    `${ok} (${probed.length} endpoints)`,
  );
}

/** Whether [a, b] and [c, d] share an address. */
function overlaps(a: { start: bigint; end: bigint }, b: { start: bigint; end: bigint }): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** PROBE and RESV_MEM rules. */
export const PROBE_RULES: readonly Rule[] = [
  {
    id: "probe.reserved",
    section: "5.13.6.7.2",
    level: "MUST",
    summary: "The device ignores PROBE's reserved field",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is not offered");
      const s = await ctx.session();
      const w = s.probeWritable;
      const plain = await s.send(probeRequest({ endpoint: ctx.endpoint }), { writable: w });
      const marked = await s.send(probeRequest({ endpoint: ctx.endpoint, reservedFill: 0xff }), {
        writable: w,
      });
      if (describe(plain) !== describe(marked)) {
        return broken(`with reserved 0xff…: ${describe(marked)}; without: ${describe(plain)}`);
      }
      return marked.writable.every((b, i) => b === plain.writable[i])
        ? held(`same answer (${describe(plain)}) with reserved[64] all 0xff`)
        : broken("reserved[64] all 0xff changed the properties");
    },
  },
  {
    id: "probe.unknown-endpoint",
    section: "5.13.6.7.2",
    level: "SHOULD",
    summary:
      "PROBE of an endpoint that does not exist is refused with NOENT (IDs above 16 bits too)",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is not offered");
      const s = await ctx.session();
      const problems: string[] = [];
      for (const id of unknownEndpoints(ctx)) {
        const a = await s.send(probeRequest({ endpoint: id }), { writable: s.probeWritable });
        if (!isStatus(a, VIRTIO_IOMMU_S_NOENT)) {
          problems.push(`endpoint ${hex(id)}: ${describe(a)}`);
        }
      }
      return verdictOf(problems, `${unknownEndpoints(ctx).map(hex).join(", ")} refused with NOENT`);
    },
  },
  {
    id: "probe.not-offered",
    section: "5.13.6.7.2",
    level: "SHOULD",
    summary: "Without F_PROBE offered, a PROBE is returned unwritten with used length 0",
    async check(ctx) {
      if (ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is offered");
      const s = await ctx.session();
      const a = await s.send(probeRequest({ endpoint: ctx.endpoint }), { writable: 516 });
      return a.answered && a.used === 0 && a.writable.every((b) => b === SENTINEL)
        ? held("returned with used length 0")
        : broken(`PROBE answered ${describe(a)}`);
    },
  },
  {
    id: "probe.small-buffer",
    section: "5.13.6.7.2",
    level: "SHOULD",
    summary: "PROBE with a properties area below probe_size writes no property and answers INVAL",
    hazard: "QEMU 7.2 aborts on it (assertion in virtio_iommu_handle_command)",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is not offered");
      const s = await ctx.session();
      const area = Math.floor(s.config().probeSize / 2);
      if (area < PROP_HEADER_SIZE) return skip("probe_size is too small to halve");
      const a = await s.send(probeRequest({ endpoint: ctx.endpoint }), {
        writable: area + TAIL_SIZE,
      });
      const props = a.writable.subarray(0, area);
      const problems: string[] = [];
      if (!isStatus(a, VIRTIO_IOMMU_S_INVAL)) problems.push(`answered ${describe(a)}`);
      if (!props.every((b) => b === SENTINEL) && !props.every((b) => b === 0)) {
        problems.push("property bytes were written");
      }
      return verdictOf(problems, `a ${area}-byte area refused with INVAL, no property written`);
    },
  },
  {
    id: "probe.property-reserved",
    section: "5.13.6.7.2",
    level: "SHOULD",
    summary: "The device sets a property's reserved bits (12-15 of its first le16) to zero",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) =>
          p.properties.filter((pr) => pr.reservedBits !== 0).map((pr) =>
            `property at ${pr.offset} has reserved bits ${hex(pr.reservedBits)}`
          ),
        "every property's reserved bits are zero",
      );
    },
  },
  {
    id: "probe.property-length",
    section: "5.13.6.7.2",
    level: "MUST",
    summary: "A property's length is its size without the header (RESV_MEM: 20)",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) =>
          p.properties.filter((pr) =>
            pr.type === VIRTIO_IOMMU_PROBE_T_RESV_MEM &&
            pr.length !== RESV_MEM_SIZE - PROP_HEADER_SIZE
          ).map((pr) => `RESV_MEM at ${pr.offset} has length ${pr.length}`),
        "every RESV_MEM property has length 20",
      );
    },
  },
  {
    id: "probe.property-layout",
    section: "5.13.6.7.2",
    level: "MUST",
    summary: "Properties follow each other exactly length + 4 bytes apart, inside probe_size",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) => p.overrun === null ? [] : [p.overrun],
        "the walk ends at a NONE header or at probe_size",
      );
    },
  },
  {
    id: "probe.zero-fill",
    section: "5.13.6.7.2",
    level: "SHOULD",
    summary: "The bytes of the properties area after the last property are zero",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) => {
          if (p.overrun !== null) return [];
          const rest = p.answer.writable.subarray(p.end, p.probeSize);
          const at = rest.findIndex((b) => b !== 0);
          return at < 0 ? [] : [`byte ${p.end + at} after the last property is ${hex(rest[at])}`];
        },
        "the rest of the area is zero",
      );
    },
  },
  {
    id: "resv.reserved",
    section: "5.13.6.8.1.2",
    level: "SHOULD",
    summary: "The device sets a RESV_MEM property's reserved bytes to zero",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) =>
          p.regions.filter((r) => r.reserved !== 0).map((r) =>
            `region ${hex(r.start)} reserved ${hex(r.reserved)}`
          ),
        "every RESV_MEM reserved field is zero",
      );
    },
  },
  {
    id: "resv.one-msi",
    section: "5.13.6.8.1.2",
    level: "SHOULD",
    summary: "The device presents at most one MSI region per endpoint",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) => {
          const msi = p.regions.filter((r) => r.subtype === VIRTIO_IOMMU_RESV_MEM_T_MSI).length;
          return msi > 1 ? [`${msi} MSI regions`] : [];
        },
        "at most one MSI region each",
      );
    },
  },
  {
    id: "resv.no-overlap",
    section: "5.13.6.8.1.2",
    level: "SHOULD",
    summary: "An endpoint's RESV_MEM regions do not overlap",
    check(ctx) {
      return eachEndpoint(
        ctx,
        (p) => {
          const out: string[] = [];
          p.regions.forEach((a, i) => {
            for (const b of p.regions.slice(i + 1)) {
              if (overlaps(a, b)) {
                out.push(`${hex(a.start)}-${hex(a.end)} overlaps ${hex(b.start)}-${hex(b.end)}`);
              }
            }
          });
          return out;
        },
        "no two regions overlap",
      );
    },
  },
  {
    id: "resv.map-refused",
    section: "5.13.6.8.1.2",
    level: "SHOULD",
    summary: "MAP over a RESV_MEM region of an attached endpoint is refused",
    async check(ctx) {
      if (!ctx.offers(VIRTIO_IOMMU_F_PROBE)) return skip("PROBE is not offered");
      const probed = await probeAll(ctx);
      const withRegion = probed.find((p) => p.regions.length > 0);
      if (withRegion === undefined) return skip("no endpoint reports a reserved region");
      const region = withRegion.regions[0];
      const s = await ctx.session();
      const mask = s.config().pageSizeMask;
      const g = mask === 0n ? 0x1000n : mask & -mask;
      const start = region.start & ~(g - 1n);
      await ctx.ok(
        s,
        attachRequest({ domain: 1, endpoint: withRegion.endpoint }),
        "ATTACH domain 1",
      );
      const a = await s.send(mapRequest({
        domain: 1,
        virtStart: start,
        virtEnd: start + g - 1n,
        physStart: scratchPhys(ctx),
        flags: 1,
      }));
      return isStatus(a, VIRTIO_IOMMU_S_OK)
        ? broken(
          `MAP ${hex(start)} over region ${hex(region.start)}-${hex(region.end)} answered OK`,
        )
        : held(`MAP over ${hex(region.start)}-${hex(region.end)}: ${describe(a)}`);
    },
  },
];
