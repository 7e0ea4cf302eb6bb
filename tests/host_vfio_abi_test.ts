import assert from "node:assert/strict";
import {
  decodeDmaUnmapSize,
  decodeGroupStatus,
  decodeRegionInfo,
  DMA_MAP_SIZE,
  DMA_UNMAP_SIZE,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeGroupStatus,
  encodeRegionInfoRequest,
  REGION_INFO_SIZE,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
} from "../host/vfio_abi.ts";

Deno.test("vfio_abi ioctl numbers match linux/vfio.h (_IO(';', 100 + n))", () => {
  assert.equal(VFIO_GET_API_VERSION, 0x3b64);
  assert.equal(VFIO_CHECK_EXTENSION, 0x3b65);
  assert.equal(VFIO_SET_IOMMU, 0x3b66);
  assert.equal(VFIO_GROUP_GET_STATUS, 0x3b67);
  assert.equal(VFIO_GROUP_SET_CONTAINER, 0x3b68);
  assert.equal(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
  assert.equal(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
  assert.equal(VFIO_IOMMU_MAP_DMA, 0x3b71);
  assert.equal(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
});

Deno.test("encodeGroupStatus() sets argsz 8 and decodeGroupStatus() reads flags at +4", () => {
  const bytes = encodeGroupStatus();
  assert.deepEqual([...bytes], [8, 0, 0, 0, 0, 0, 0, 0]);
  bytes[4] = 3;
  assert.equal(decodeGroupStatus(bytes), 3);
});

Deno.test("encodeRegionInfoRequest() puts argsz 32 and the index at +8", () => {
  const bytes = encodeRegionInfoRequest(7);
  assert.equal(bytes.length, REGION_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 32);
  assert.equal(view.getUint32(8, true), 7);
  assert.equal(view.getUint32(4, true), 0);
});

Deno.test("decodeRegionInfo() reads flags, index, 64-bit size at +16 and offset at +24", () => {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(4, 0x7, true);
  view.setUint32(8, 4, true);
  view.setBigUint64(16, 0x4000n, true);
  view.setBigUint64(24, 0x40_0000_0000n, true);
  assert.deepEqual(decodeRegionInfo(bytes), {
    flags: 7,
    index: 4,
    size: 0x4000n,
    offset: 0x40_0000_0000n,
  });
});

Deno.test("encodeDmaMap() lays out argsz, flags, vaddr, iova, size in 32 bytes", () => {
  const bytes = encodeDmaMap(
    0x7f00_1234_5000n,
    0x10_0000n,
    0x2000n,
    VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
  );
  assert.equal(bytes.length, DMA_MAP_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 32);
  assert.equal(view.getUint32(4, true), 3);
  assert.equal(view.getBigUint64(8, true), 0x7f00_1234_5000n);
  assert.equal(view.getBigUint64(16, true), 0x10_0000n);
  assert.equal(view.getBigUint64(24, true), 0x2000n);
});

Deno.test("encodeDmaUnmap() is 24 bytes with iova at +8 and size at +16", () => {
  const bytes = encodeDmaUnmap(0x30_0000n, 0x1000n);
  assert.equal(bytes.length, DMA_UNMAP_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 24);
  assert.equal(view.getUint32(4, true), 0);
  assert.equal(view.getBigUint64(8, true), 0x30_0000n);
  assert.equal(decodeDmaUnmapSize(bytes), 0x1000n);
});
