import assert from "node:assert/strict";
import { PagemapDma, physicalAddress } from "../host/pagemap.ts";
import { isRoot, pointerAddress } from "../host/ffi.ts";
import { DmaError, regionAddress } from "../transport/dma.ts";
import { skipName } from "./_notes.ts";

// pagemap shows frame numbers only to root.
const root = isRoot();
const notRoot = root ? null : "not root: /proc/self/pagemap shows frame numbers only to root";

Deno.test({
  name: skipName(
    "PagemapDma.alloc() returns zeroed regions whose address matches /proc/self/pagemap",
    notRoot,
  ),
  ignore: !root,
  fn(): void {
    const dma = new PagemapDma();
    try {
      const region = dma.alloc(100);
      assert.ok(region.bytes.every((b) => b === 0));
      const virt = pointerAddress(Deno.UnsafePointer.of(region.bytes)!);
      assert.equal(physicalAddress(virt), regionAddress(region));
      region.view.setUint32(0, 0xabcd1234, true);
      assert.equal(region.bytes[0], 0x34);
    } finally {
      dma.close();
    }
  },
});

Deno.test({
  name: skipName(
    "PagemapDma.alloc() honours alignment and keeps multi-page regions contiguous",
    notRoot,
  ),
  ignore: !root,
  fn(): void {
    const dma = new PagemapDma();
    try {
      dma.alloc(24);
      const aligned = dma.alloc(5000, 8192);
      assert.equal(regionAddress(aligned) % 8192n, 0n);
      const base = pointerAddress(Deno.UnsafePointer.of(aligned.bytes)!);
      assert.equal(physicalAddress(base + 4096n), regionAddress(aligned) + 4096n);
    } finally {
      dma.close();
    }
  },
});

Deno.test({
  name: skipName("PagemapDma.free() rejects a region freed twice", notRoot),
  ignore: !root,
  fn(): void {
    const dma = new PagemapDma();
    try {
      const region = dma.alloc(64);
      dma.free(region);
      assert.throws(() => dma.free(region), DmaError);
    } finally {
      dma.close();
    }
  },
});

Deno.test("PagemapDma.alloc() rejects a non-power-of-two alignment with RangeError", () => {
  const dma = new PagemapDma();
  assert.throws(() => dma.alloc(64, 3000), RangeError);
  assert.throws(() => dma.alloc(0), RangeError);
});
