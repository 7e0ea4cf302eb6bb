/** The mutation table of conform_mutation_test.ts: per catalogue rule, a mock that breaks it. */

import { unmapRequest } from "../conform/requests.ts";
import { QEMU_IOMMU_FEATURES, QEMU_X86_MSI_REGION } from "../mock/iommu/options.ts";
import type { TranslateResult } from "../mock/iommu/device.ts";
import type { Mutant, MutantRequest, Mutation } from "./_conform_mutants.ts";

const ATTACH = 1;
const DETACH = 2;
const MAP = 3;
const UNMAP = 4;
const PROBE = 5;
const OK = 0;
const INVAL = 4;
const RANGE = 5;
const MSI_START = 0xfee0_0000n;
const MSI_END = 0xfeef_ffffn;

/** Field readers over a request (little-endian, as on the wire). */
const u32 = (r: MutantRequest, at: number): number => r.view.getUint32(at, true);
const u64 = (r: MutantRequest, at: number): bigint => r.view.getBigUint64(at, true);
const set32 = (r: MutantRequest, at: number, v: number): void =>
  r.view.setUint32(at, v >>> 0, true);
const set64 = (r: MutantRequest, at: number, v: bigint): void =>
  r.view.setBigUint64(at, BigInt.asUintN(64, v), true);

/** Whether `r` is a complete request of `type` (`size` readable bytes). */
function is(r: MutantRequest, type: number, size: number): boolean {
  return r.type === type && r.bytes.length >= size;
}

/** The existing domain of a request's `domain` field (offset 4), or undefined. */
function domainOf(r: MutantRequest, m: Mutant) {
  return m.inner.domains().find((d) => d.id === u32(r, 4));
}

/** The mappings of the request's domain overlapping its [virt_start, virt_end]. */
function overlapping(r: MutantRequest, m: Mutant) {
  const s = u64(r, 8);
  const e = u64(r, 16);
  return m.inner.mappings(u32(r, 4)).filter((x) => x.start <= e && s <= x.end);
}

/** A translation that pretends the access was blocked. */
function blocked(a: { endpoint: number; iova: bigint }): TranslateResult {
  return {
    ok: false,
    fault: { reason: "MAPPING", flags: 0x100, endpoint: a.endpoint, address: a.iova },
  };
}

/** Changes the first property of a PROBE answer with `edit`. */
function firstProperty(edit: (w: Uint8Array) => void): Mutation["answer"] {
  return (req, used, m) => {
    if (req.type !== PROBE || used <= 4) return used;
    const w = m.writable(req.chain);
    if ((w[0] | w[1]) !== 0) {
      edit(w);
      m.setWritable(req.chain, 0, w.subarray(0, w.length - 4));
    }
    return used;
  };
}

/** One mutation per rule of the catalogue. */
export const MUTATIONS: Record<string, Mutation> = {
  "feat.version-1": { options: { features: QEMU_IOMMU_FEATURES & ~(1n << 32n) } },
  "feat.map-unmap": { options: { features: QEMU_IOMMU_FEATURES & ~4n } },
  "feat.no-legacy-bypass": { options: { features: QEMU_IOMMU_FEATURES | 8n } },
  "feat.not-both-bypass": { options: { features: QEMU_IOMMU_FEATURES | 8n } },
  "feat.defined-bits": { options: { features: QEMU_IOMMU_FEATURES | 0x80n } },
  "feat.accept-subset": { core: { refuseFeatures: true } },
  "feat.renegotiate": {
    transport(t) {
      let accepted = 0;
      return {
        setStatus(v: number): void {
          const before = t.getStatus();
          t.setStatus(v);
          if ((v & 8) !== 0 && (before & 8) === 0) accepted++;
        },
        getStatus: (): number => accepted > 1 ? t.getStatus() & ~8 : t.getStatus(),
      };
    },
  },
  "status.reset": { core: { resetReads: 1e12 } },
  "status.no-early-use": { notifyBeforeDriverOk: true },
  "status.needs-reset-notify": {
    transport: (t) => ({ takeInterrupt: () => t.takeInterrupt() & ~2 }),
  },
  "reset.quiet": {
    reset(m) {
      // Answers a request still in the ring the driver just reset the device from.
      const q = m.lastRequestQueue;
      const chain = q?.pop() ?? null;
      if (q && chain) q.push(chain.head, 0);
      m.inner.reset();
    },
  },
  "init.reset-detaches": { reset() {} },
  "config.page-size-mask": { options: { pageSizeMask: 0n } },
  "config.bypass-value": {
    transport: (t) => ({ readConfig8: (o) => o === 36 ? 2 : t.readConfig8(o) }),
  },
  "config.before-features-ok": {
    transport: (t) => ({ readConfig32: (o) => (t.getStatus() & 8) !== 0 ? t.readConfig32(o) : 0 }),
  },
  "config.generation": {
    transport(t) {
      let reads = 0;
      return { readConfig32: (o) => o === 32 ? 512 + 4 * reads++ : t.readConfig32(o) };
    },
  },
  "config.bypass-sticky": { reset: (m) => m.inner.systemReset() },
  "ops.status-ok": {
    answer(req, used, m) {
      if (req.type === DETACH && m.writable(req.chain)[0] === OK) m.status(req.chain, 3);
      return used;
    },
  },
  "ops.unknown-type": { options: { unknownRequest: "qemu" } },
  "ops.head-reserved": {
    request: (r, m) =>
      r.bytes.length >= 4 && (r.bytes[1] | r.bytes[2] | r.bytes[3]) !== 0
        ? m.status(r.chain, INVAL)
        : undefined,
  },
  "ops.tail-reserved": {
    answer(req, used, m) {
      if (used >= 4) {
        m.setWritable(req.chain, req.chain.writableLength - 3, new Uint8Array([1, 2, 3]));
      }
      return used;
    },
  },
  "framing.unparsable": {
    request: (r) => r.chain.readableLength < 4 || r.chain.writableLength < 4 ? "keep" : undefined,
  },
  "framing.short-request": {
    request(r, m) {
      const need = [0, 20, 20, 36, 28, 72][r.type];
      return need !== undefined && r.bytes.length < need ? m.status(r.chain, OK) : undefined;
    },
  },
  "framing.layout": {
    request: (r, m) => r.chain.readableCount > 1 ? m.status(r.chain, INVAL) : undefined,
  },
  "framing.readable-untouched": {
    answer(req, used, m) {
      const seg = req.chain.readable[0];
      if (seg !== undefined && m.context !== null) m.context.memory.bytes[seg.offset + 1] ^= 0x80;
      return used;
    },
  },
  "framing.used-length": { answer: (req, used) => req.type === PROBE ? used + 8 : used },
  "framing.spurious-notify": {
    onNotify(index, m) {
      if (index === 0 && m.context?.queue(0)?.pending() === 0) m.context.needsReset("spurious");
    },
  },
  "notify.suppressed": { transport: (t) => ({ takeInterrupt: () => t.takeInterrupt() | 1 }) },
  "notify.enabled": { transport: (t) => ({ takeInterrupt: () => t.takeInterrupt() & ~1 }) },
  "attach.reserved": { request: (r) => void (is(r, ATTACH, 20) && set32(r, 16, 0)) },
  "attach.unknown-flags": {
    request: (r) => void (is(r, ATTACH, 20) && set32(r, 12, u32(r, 12) & 1)),
  },
  "attach.unknown-endpoint": {
    request: (r) => void (is(r, ATTACH, 20) && set32(r, 8, u32(r, 8) & 0xffff)),
  },
  "attach.attaches": { request: (r, m) => is(r, ATTACH, 20) ? m.status(r.chain, OK) : undefined },
  "attach.shared-domain": {
    request(r, m) {
      const d = is(r, ATTACH, 20) ? domainOf(r, m) : undefined;
      return d !== undefined && !d.endpoints.includes(u32(r, 8))
        ? m.status(r.chain, INVAL)
        : undefined;
    },
  },
  "attach.bypass-mismatch": {
    request(r, m) {
      const d = is(r, ATTACH, 20) ? domainOf(r, m) : undefined;
      if (d !== undefined) set32(r, 12, (u32(r, 12) & ~1) | (d.bypass ? 1 : 0));
      return undefined;
    },
  },
  "attach.implicit-detach": {
    request(r, m) {
      if (!is(r, ATTACH, 20)) return undefined;
      const current = m.inner.endpointDomain(u32(r, 8));
      return current !== null && current !== u32(r, 4) ? m.status(r.chain, INVAL) : undefined;
    },
  },
  "attach.domain-range": {
    options: { domainRange: { start: 0, end: 1023 } },
    request: (r) => void (is(r, ATTACH, 20) && u32(r, 4) > 1023 && set32(r, 4, u32(r, 4) & 0x3ff)),
  },
  "detach.reserved": {
    request: (r, m) =>
      is(r, DETACH, 20) && r.bytes.subarray(12, 20).some((b) => b !== 0)
        ? m.status(r.chain, INVAL)
        : undefined,
  },
  "detach.unknown-endpoint": {
    request: (r) => void (is(r, DETACH, 20) && set32(r, 8, u32(r, 8) & 0xffff)),
  },
  "detach.wrong-domain": {
    request(r, m) {
      const current = is(r, DETACH, 20) ? m.inner.endpointDomain(u32(r, 8)) : null;
      if (current !== null) set32(r, 4, current);
      return undefined;
    },
  },
  "detach.domain-gone": {
    request: (r, m) => is(r, DETACH, 20) ? m.status(r.chain, OK) : undefined,
  },
  "detach.no-access": { request: (r, m) => is(r, DETACH, 20) ? m.status(r.chain, OK) : undefined },
  "map.alignment": {
    request(r) {
      if (!is(r, MAP, 36)) return undefined;
      set64(r, 8, u64(r, 8) & ~0xfffn);
      set64(r, 16, u64(r, 16) | 0xfffn);
      set64(r, 24, u64(r, 24) & ~0xfffn);
      return undefined;
    },
  },
  "map.overlap": {
    request: (r, m) =>
      is(r, MAP, 36) && overlapping(r, m).length > 0 ? m.status(r.chain, OK) : undefined,
  },
  "map.unknown-flags": { request: (r) => void (is(r, MAP, 36) && set32(r, 32, u32(r, 32) & 7)) },
  "map.unknown-domain": {
    request: (r, m) =>
      is(r, MAP, 36) && domainOf(r, m) === undefined ? m.status(r.chain, INVAL) : undefined,
  },
  "map.bypass-domain": {
    request: (r, m) =>
      is(r, MAP, 36) && domainOf(r, m)?.bypass === true ? m.status(r.chain, OK) : undefined,
  },
  "map.input-range": {
    options: { inputRange: { start: 0n, end: (1n << 40n) - 1n } },
    request(r) {
      if (is(r, MAP, 36) && u64(r, 16) >= 1n << 40n) {
        set64(r, 8, u64(r, 8) & ((1n << 40n) - 1n));
        set64(r, 16, u64(r, 16) & ((1n << 40n) - 1n));
      }
      return undefined;
    },
  },
  "map.translation": {
    translate: (t, a) =>
      t.ok && a.iova >= 0x60_0000n && a.iova < 0x60_2000n
        ? { ...t, address: t.address + 0x40n }
        : t,
  },
  "map.read-only": {
    translate: (t, a, d) =>
      a.access === "write" && !t.ok && a.iova >= 0x80_0000n && a.iova < 0x80_1000n
        ? d.translate(a.endpoint, a.iova, "read")
        : t,
  },
  "map.write-only": {
    translate: (t, a) =>
      a.access === "write" && a.iova >= 0xa0_0000n && a.iova < 0xa0_1000n ? blocked(a) : t,
  },
  "unmap.reserved": {
    request: (r, m) => is(r, UNMAP, 28) && u32(r, 24) !== 0 ? m.status(r.chain, OK) : undefined,
  },
  "unmap.unknown-domain": {
    request: (r, m) =>
      is(r, UNMAP, 28) && domainOf(r, m) === undefined ? m.status(r.chain, OK) : undefined,
  },
  "unmap.bypass-domain": {
    request: (r, m) =>
      is(r, UNMAP, 28) && domainOf(r, m)?.bypass === true ? m.status(r.chain, OK) : undefined,
  },
  "unmap.split": {
    request(r, m) {
      if (!is(r, UNMAP, 28)) return undefined;
      const [s, e] = [u64(r, 8), u64(r, 16)];
      const split = overlapping(r, m).some((x) => x.start < s || x.end > e);
      return split ? m.status(r.chain, OK) : undefined;
    },
  },
  "unmap.split-atomic": {
    request(r, m) {
      if (!is(r, UNMAP, 28)) return undefined;
      const [s, e] = [u64(r, 8), u64(r, 16)];
      const hits = overlapping(r, m);
      if (!hits.some((x) => x.start < s || x.end > e)) return undefined;
      // QEMU 7.2's way: remove the covered mappings, then refuse the split one.
      for (const x of hits.filter((x) => x.start >= s && x.end <= e)) {
        m.send(unmapRequest({ domain: u32(r, 4), virtStart: x.start, virtEnd: x.end }));
      }
      return m.status(r.chain, RANGE);
    },
  },
  "unmap.covered": { request: (r, m) => is(r, UNMAP, 28) ? m.status(r.chain, OK) : undefined },
  "probe.reserved": {
    request: (r, m) =>
      is(r, PROBE, 72) && r.bytes.subarray(8, 72).some((b) => b !== 0)
        ? m.status(r.chain, INVAL)
        : undefined,
  },
  "probe.unknown-endpoint": {
    request: (r) => void (is(r, PROBE, 72) && set32(r, 4, u32(r, 4) & 0xffff)),
  },
  "probe.not-offered": {
    options: { features: QEMU_IOMMU_FEATURES & ~0x10n },
    request: (r, m) => r.type === PROBE ? m.status(r.chain, OK) : undefined,
  },
  "probe.small-buffer": {
    request: (r, m) =>
      r.type === PROBE && r.chain.writableLength < 516 ? m.status(r.chain, OK) : undefined,
  },
  "probe.property-reserved": { answer: firstProperty((w) => void (w[1] |= 0x10)) },
  "probe.property-length": { answer: firstProperty((w) => void (w[2] = 24)) },
  "probe.property-layout": { answer: firstProperty((w) => void (w[3] = 0x02)) },
  "probe.zero-fill": {
    answer(req, used, m) {
      if (req.type === PROBE && used === 516) m.setWritable(req.chain, 511, new Uint8Array([0xee]));
      return used;
    },
  },
  "resv.reserved": { answer: firstProperty((w) => void (w[5] = 1)) },
  "resv.one-msi": {
    options: {
      endpoints: [0x18, 0x08, 0x10, 0x00].map((id) => ({
        id,
        reservedRegions: [QEMU_X86_MSI_REGION, {
          start: 0xfef0_0000n,
          end: 0xfef0_ffffn,
          subtype: "msi" as const,
        }],
      })),
    },
  },
  "resv.no-overlap": {
    options: {
      endpoints: [0x18, 0x08, 0x10, 0x00].map((id) => ({
        id,
        reservedRegions: [QEMU_X86_MSI_REGION, {
          start: 0xfee8_0000n,
          end: 0xfee8_ffffn,
          subtype: "reserved" as const,
        }],
      })),
    },
  },
  "resv.map-refused": {
    request: (r, m) =>
      is(r, MAP, 36) && u64(r, 8) <= MSI_END && u64(r, 16) >= MSI_START
        ? m.status(r.chain, OK)
        : undefined,
  },
  "ops.unattached-blocked": {
    translate: (t, a) =>
      !t.ok && t.fault.reason === "DOMAIN" ? { ok: true, address: a.iova, bypass: true } : t,
  },
  "bypass.unattached": {
    translate: (t, a, d) =>
      t.ok && t.bypass && d.endpointDomain(a.endpoint) === null ? blocked(a) : t,
  },
  "bypass.domain": {
    translate: (t, a, d) =>
      t.ok && t.bypass && d.endpointDomain(a.endpoint) !== null ? blocked(a) : t,
  },
  "fault.reserved": { event: (v, used) => (v.setUint8(1, 1), used) },
  "fault.flags": { event: (v, used) => (v.setUint32(4, v.getUint32(4, true) | 0x20, true), used) },
  "fault.endpoint": { event: (v, used) => (v.setUint32(8, v.getUint32(8, true) + 1, true), used) },
  "fault.address": {
    event(v, used) {
      v.setUint32(4, v.getUint32(4, true) | 0x100, true);
      v.setBigUint64(16, v.getBigUint64(16, true) + 0x10_0000n, true);
      return used;
    },
  },
  "fault.reason": { event: (v, used) => (v.setUint8(0, 0), used) },
  "fault.one-buffer": { event: () => 20 },
};
