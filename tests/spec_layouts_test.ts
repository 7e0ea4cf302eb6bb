/**
 * The transport and VIOT layouts in `spec/` against the spec's tables, written out here with
 * literal offsets. The driver and the mock both read these constants, so a wrong one would
 * agree with itself end to end; only a pin against the spec itself catches it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  MMIO_MAGIC_VALUE,
  MMIO_VERSION_LEGACY,
  MMIO_VERSION_MODERN,
  MmioLegacyReg,
  MmioReg,
} from "../spec/mmio.ts";
import {
  COMMON_CFG_SIZE,
  CommonCfg,
  commonCfgFieldWidth,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_VENDOR,
  PCI_CFG_CAPABILITIES,
  PCI_CFG_DEVICE,
  PCI_CFG_STATUS,
  PCI_CFG_SUBSYSTEM,
  PCI_STATUS_CAP_LIST,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_CAP_SIZE,
  VIRTIO_PCI_CFG_CAP_SIZE,
  VIRTIO_PCI_MODERN_BASE,
  VIRTIO_PCI_NOTIFY_CAP_SIZE,
  VIRTIO_PCI_VENDOR,
  VirtioPciCap,
  VirtioPciCapField,
} from "../spec/pci.ts";
import {
  ACPI_CHECKSUM,
  ACPI_HEADER_SIZE,
  ACPI_LENGTH,
  ACPI_OEM_ID,
  ACPI_OEM_TABLE_ID,
  acpiByteSum,
  VIOT_HEADER_SIZE,
  VIOT_MMIO_BASE_ADDRESS,
  VIOT_MMIO_ENDPOINT,
  VIOT_MMIO_OUTPUT_NODE,
  VIOT_NODE_COUNT,
  VIOT_NODE_OFFSET,
  VIOT_PCI_RANGE_BDF_END,
  VIOT_PCI_RANGE_BDF_START,
  VIOT_PCI_RANGE_ENDPOINT_START,
  VIOT_PCI_RANGE_OUTPUT_NODE,
  VIOT_PCI_RANGE_SEGMENT_END,
  VIOT_PCI_RANGE_SEGMENT_START,
  VIOT_VIRTIO_IOMMU_MMIO_BASE_ADDRESS,
  VIOT_VIRTIO_IOMMU_PCI_BDF,
  VIOT_VIRTIO_IOMMU_PCI_SEGMENT,
} from "../spec/viot.ts";
import { q35Viot } from "../mock/q35_viot.ts";
import { parseViot } from "../driver/topology/viot.ts";
import { qemuQ35Viot } from "../tools/topology/viot.ts";

Deno.test("MmioReg is the virtio-mmio register table of virtio 1.3 §4.2.2", () => {
  assert.deepEqual({ ...MmioReg }, {
    MAGIC_VALUE: 0x000,
    VERSION: 0x004,
    DEVICE_ID: 0x008,
    VENDOR_ID: 0x00c,
    DEVICE_FEATURES: 0x010,
    DEVICE_FEATURES_SEL: 0x014,
    DRIVER_FEATURES: 0x020,
    DRIVER_FEATURES_SEL: 0x024,
    QUEUE_SEL: 0x030,
    QUEUE_SIZE_MAX: 0x034,
    QUEUE_SIZE: 0x038,
    QUEUE_READY: 0x044,
    QUEUE_NOTIFY: 0x050,
    INTERRUPT_STATUS: 0x060,
    INTERRUPT_ACK: 0x064,
    STATUS: 0x070,
    QUEUE_DESC_LOW: 0x080,
    QUEUE_DESC_HIGH: 0x084,
    QUEUE_DRIVER_LOW: 0x090,
    QUEUE_DRIVER_HIGH: 0x094,
    QUEUE_DEVICE_LOW: 0x0a0,
    QUEUE_DEVICE_HIGH: 0x0a4,
    SHM_SEL: 0x0ac,
    SHM_LEN_LOW: 0x0b0,
    SHM_LEN_HIGH: 0x0b4,
    SHM_BASE_LOW: 0x0b8,
    SHM_BASE_HIGH: 0x0bc,
    QUEUE_RESET: 0x0c0,
    CONFIG_GENERATION: 0x0fc,
    CONFIG: 0x100,
  });
  assert.deepEqual({ ...MmioLegacyReg }, {
    GUEST_PAGE_SIZE: 0x028,
    QUEUE_ALIGN: 0x03c,
    QUEUE_PFN: 0x040,
  });
  // "virt" as a little-endian u32.
  assert.equal(
    MMIO_MAGIC_VALUE,
    new DataView(new TextEncoder().encode("virt").buffer).getUint32(0, true),
  );
  assert.deepEqual([MMIO_VERSION_LEGACY, MMIO_VERSION_MODERN], [1, 2]);
});

Deno.test("CommonCfg is the common configuration table of virtio 1.3 §4.1.4.3", () => {
  assert.deepEqual({ ...CommonCfg }, {
    DEVICE_FEATURE_SELECT: 0,
    DEVICE_FEATURE: 4,
    DRIVER_FEATURE_SELECT: 8,
    DRIVER_FEATURE: 12,
    CONFIG_MSIX_VECTOR: 16,
    NUM_QUEUES: 18,
    DEVICE_STATUS: 20,
    CONFIG_GENERATION: 21,
    QUEUE_SELECT: 22,
    QUEUE_SIZE: 24,
    QUEUE_MSIX_VECTOR: 26,
    QUEUE_ENABLE: 28,
    QUEUE_NOTIFY_OFF: 30,
    QUEUE_DESC: 32,
    QUEUE_DRIVER: 40,
    QUEUE_DEVICE: 48,
    QUEUE_NOTIF_CONFIG_DATA: 56,
    QUEUE_RESET: 58,
    ADMIN_QUEUE_INDEX: 60,
    ADMIN_QUEUE_NUM: 62,
  });
  assert.equal(COMMON_CFG_SIZE, 64);
  assert.equal(VIRTIO_MSI_NO_VECTOR, 0xffff);
});

Deno.test("commonCfgFieldWidth() gives each §4.1.4.3 field its width and 0 between fields", () => {
  // [offset, width] of every access the spec allows; a 64-bit field is two 32-bit halves.
  const fields: Array<[number, number]> = [
    [0, 4],
    [4, 4],
    [8, 4],
    [12, 4],
    [16, 2],
    [18, 2],
    [20, 1],
    [21, 1],
    [22, 2],
    [24, 2],
    [26, 2],
    [28, 2],
    [30, 2],
    [32, 4],
    [36, 4],
    [40, 4],
    [44, 4],
    [48, 4],
    [52, 4],
    [56, 2],
    [58, 2],
    [60, 2],
    [62, 2],
  ];
  const expected = new Map(fields);
  for (let offset = 0; offset < 80; offset++) {
    assert.equal(commonCfgFieldWidth(offset), expected.get(offset) ?? 0, `offset ${offset}`);
  }
});

Deno.test("The virtio PCI capability layout is virtio 1.3 §4.1.4's", () => {
  assert.deepEqual({ ...VirtioPciCap }, {
    COMMON: 1,
    NOTIFY: 2,
    ISR: 3,
    DEVICE: 4,
    PCI_CFG: 5,
    SHARED_MEMORY: 8,
    VENDOR: 9,
  });
  assert.deepEqual({ ...VirtioPciCapField }, {
    CAP_VNDR: 0,
    CAP_NEXT: 1,
    CAP_LEN: 2,
    CFG_TYPE: 3,
    BAR: 4,
    ID: 5,
    OFFSET: 8,
    LENGTH: 12,
    NOTIFY_OFF_MULTIPLIER: 16,
  });
  assert.deepEqual([VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_NOTIFY_CAP_SIZE, VIRTIO_PCI_CFG_CAP_SIZE], [
    16,
    20,
    20,
  ]);
  // IDs (§4.1.2) and the PCI header fields the walk reads (PCI Local Bus 3.0 §6.1).
  assert.deepEqual([VIRTIO_PCI_VENDOR, VIRTIO_PCI_MODERN_BASE], [0x1af4, 0x1040]);
  assert.deepEqual([PCI_CFG_DEVICE, PCI_CFG_STATUS, PCI_CFG_SUBSYSTEM, PCI_CFG_CAPABILITIES], [
    0x02,
    0x06,
    0x2e,
    0x34,
  ]);
  assert.deepEqual([PCI_STATUS_CAP_LIST, PCI_CAP_ID_VENDOR, PCI_CAP_ID_EXP], [0x10, 0x09, 0x10]);
});

Deno.test("The VIOT layout is ACPI 6.4 §5.2.30's", () => {
  assert.deepEqual([ACPI_HEADER_SIZE, ACPI_LENGTH, ACPI_CHECKSUM, ACPI_OEM_ID, ACPI_OEM_TABLE_ID], [
    36,
    4,
    9,
    10,
    16,
  ]);
  assert.deepEqual([VIOT_NODE_COUNT, VIOT_NODE_OFFSET, VIOT_HEADER_SIZE], [36, 38, 48]);
  assert.deepEqual([
    VIOT_PCI_RANGE_ENDPOINT_START,
    VIOT_PCI_RANGE_SEGMENT_START,
    VIOT_PCI_RANGE_SEGMENT_END,
    VIOT_PCI_RANGE_BDF_START,
    VIOT_PCI_RANGE_BDF_END,
    VIOT_PCI_RANGE_OUTPUT_NODE,
  ], [4, 8, 10, 12, 14, 16]);
  assert.deepEqual([VIOT_MMIO_ENDPOINT, VIOT_MMIO_BASE_ADDRESS, VIOT_MMIO_OUTPUT_NODE], [4, 8, 16]);
  assert.deepEqual([
    VIOT_VIRTIO_IOMMU_PCI_SEGMENT,
    VIOT_VIRTIO_IOMMU_PCI_BDF,
    VIOT_VIRTIO_IOMMU_MMIO_BASE_ADDRESS,
  ], [4, 6, 8]);
});

Deno.test("acpiByteSum() sums the first `length` bytes mod 256", () => {
  assert.equal(acpiByteSum(new Uint8Array([0xff, 0x02, 0x07]), 2), 0x01);
  assert.equal(acpiByteSum(new Uint8Array([0x80, 0x80]), 2), 0);
  assert.equal(acpiByteSum(new Uint8Array([5]), 0), 0);
});

Deno.test("q35Viot() is byte for byte the table written from literal offsets", () => {
  assert.deepEqual(q35Viot(), qemuQ35Viot());
  const narrow = q35Viot({ iommuBdf: 0x08, bdfEnd: 0x1f });
  const viot = parseViot(narrow);
  assert.deepEqual(viot.iommus, [{ kind: "virtio-pci", offset: 48, segment: 0, bdf: 0x08 }]);
  assert.equal(viot.pciRanges[0].bdfEnd, 0x1f);
  // Bytes at literal offsets: the IOMMU node's BDF @48+6, the range's bdf_end @64+14.
  assert.deepEqual([narrow[54], narrow[78]], [0x08, 0x1f]);
});
