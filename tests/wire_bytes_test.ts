/**
 * The driver's requests byte for byte (virtio 1.3 §5.13.6), checked against the spec's tables
 * written out here with literal offsets — not the driver's own constants — so a wrong offset,
 * a swapped 64-bit half or a stale reserved byte in a reused slot cannot hide.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MAP_MMIO, MAP_READ, MAP_WRITE } from "../mod.ts";
import { KINDS, type RequestInfo, setup } from "./_fixtures.ts";

/** Little-endian bytes of `value` in `size` bytes. */
function le(value: bigint, size: number): number[] {
  return Array.from({ length: size }, (_, i) => Number((value >> BigInt(8 * i)) & 0xffn));
}

for (const kind of KINDS) {
  Deno.test(`[${kind}] VirtioIommu sends ATTACH, MAP, UNMAP, DETACH and PROBE byte-exact`, async () => {
    const { iommu, scripted } = await setup(kind, {
      endpoints: [{ id: 0x0102_0304 }],
      inputRange: { start: 0n, end: (1n << 64n) - 1n },
    });
    const seen: RequestInfo[] = [];
    scripted.script = (r) => {
      seen.push(r);
      return { do: "pass" };
    };
    const iova = 0x1_2345_6000n, phys = 0xab_cdef_0000n, size = 0x3000n;
    // A MAP before ATTACH, into a domain the driver does not track: sent as is (NOENT), and
    // it leaves its bytes in the slot the ATTACH reuses next.
    await assert.rejects(iommu.map(0x0a0b_0c0d, iova, phys, size, MAP_READ));
    await iommu.attach(0x0a0b_0c0d, 0x0102_0304);
    await iommu.map(0x0a0b_0c0d, iova, phys, size, MAP_READ | MAP_WRITE | MAP_MMIO);
    await iommu.unmap(0x0a0b_0c0d, iova, size);
    await iommu.detach(0x0a0b_0c0d, 0x0102_0304);
    await iommu.probe(0x0102_0304);
    // The slot the PROBE lent its own buffers to carries a MAP again, from the slot itself.
    await assert.rejects(iommu.map(0x0a0b_0c0d + 1, iova, phys, size, MAP_READ));

    const [map0, attach, map, unmap, detach, probe, mapAfterProbe] = seen;
    const domain = le(0x0a0b_0c0dn, 4), endpoint = le(0x0102_0304n, 4);
    const head = (type: number) => [type, 0, 0, 0];
    // ATTACH: head, domain, endpoint, flags, reserved[4]; then a 4-byte tail.
    assert.deepEqual([...attach.bytes], [
      ...head(1),
      ...domain,
      ...endpoint,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
    ]);
    assert.deepEqual([attach.readableLength, attach.writableLength], [20, 4]);
    // MAP: head, domain, virt_start le64, virt_end le64 (inclusive), phys_start le64, flags.
    const mapBytes = (flags: number) => [
      ...head(3),
      ...domain,
      ...le(iova, 8),
      ...le(iova + size - 1n, 8),
      ...le(phys, 8),
      flags,
      0,
      0,
      0,
    ];
    assert.deepEqual([...map0.bytes], mapBytes(1));
    assert.deepEqual([...map.bytes], mapBytes(1 | 2 | 4));
    assert.deepEqual([map.readableLength, map.writableLength], [36, 4]);
    // UNMAP: head, domain, virt_start, virt_end, reserved[4].
    assert.deepEqual([...unmap.bytes], [
      ...head(4),
      ...domain,
      ...le(iova, 8),
      ...le(iova + size - 1n, 8),
      0,
      0,
      0,
      0,
    ]);
    assert.deepEqual([unmap.readableLength, unmap.writableLength], [28, 4]);
    // DETACH: head, domain, endpoint, reserved[8].
    assert.deepEqual([...detach.bytes], [
      ...head(2),
      ...domain,
      ...endpoint,
      ...new Array(8).fill(0),
    ]);
    assert.deepEqual([detach.readableLength, detach.writableLength], [20, 4]);
    // PROBE: head, endpoint, reserved[64]; writable: probe_size (512) properties + tail.
    assert.deepEqual([...probe.bytes], [...head(5), ...endpoint, ...new Array(64).fill(0)]);
    assert.deepEqual([probe.readableLength, probe.writableLength], [72, 512 + 4]);
    assert.deepEqual([...mapAfterProbe.bytes].slice(8), mapBytes(1).slice(8));
    assert.deepEqual([mapAfterProbe.readableLength, mapAfterProbe.writableLength], [36, 4]);
    await iommu.close();
  });
}
