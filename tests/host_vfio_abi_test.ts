import assert from "node:assert/strict";
import {
  decodeDmaUnmapSize,
  decodeGroupStatus,
  decodeIrqInfo,
  decodeRegionInfo,
  DMA_MAP_SIZE,
  DMA_UNMAP_SIZE,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeGroupStatus,
  encodeIrqInfoRequest,
  encodeIrqSet,
  encodeRegionInfoRequest,
  IRQ_INFO_SIZE,
  IRQ_SET_HEADER_SIZE,
  REGION_INFO_SIZE,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
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

Deno.test("VFIO_DEVICE_GET_IRQ_INFO and VFIO_DEVICE_SET_IRQS are _IO(';', 109) and 110", () => {
  assert.equal(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
  assert.equal(VFIO_DEVICE_SET_IRQS, 0x3b6e);
  assert.deepEqual(
    [VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX],
    [0, 1, 2],
  );
});

Deno.test("encodeIrqInfoRequest() is 16 bytes with the index at +8; decodeIrqInfo() reads it back", () => {
  const bytes = encodeIrqInfoRequest(VFIO_PCI_MSI_IRQ_INDEX);
  assert.equal(bytes.length, IRQ_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 16);
  assert.equal(view.getUint32(8, true), 1);
  view.setUint32(4, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_AUTOMASKED, true);
  view.setUint32(12, 3, true);
  assert.deepEqual(decodeIrqInfo(bytes), { flags: 0b101, index: 1, count: 3 });
});

Deno.test("encodeIrqSet() is the 20-byte header plus one s32 eventfd per interrupt", () => {
  const bytes = encodeIrqSet(
    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_PCI_MSIX_IRQ_INDEX,
    0,
    2,
    [7, -1],
  );
  assert.equal(bytes.length, IRQ_SET_HEADER_SIZE + 8);
  const view = new DataView(bytes.buffer);
  assert.deepEqual(
    [0, 4, 8, 12, 16].map((o) => view.getUint32(o, true)),
    [28, (1 << 2) | (1 << 5), 2, 0, 2],
  );
  assert.equal(view.getInt32(20, true), 7);
  assert.equal(view.getInt32(24, true), -1, "−1 detaches that interrupt's eventfd");
  const unmask = encodeIrqSet(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1);
  assert.equal(unmask.length, 20);
  assert.equal(new DataView(unmask.buffer).getUint32(4, true), (1 << 0) | (1 << 4));
  assert.throws(() => encodeIrqSet(VFIO_IRQ_SET_DATA_EVENTFD, 2, 0, 2, [1]), RangeError);
});
