/**
 * The virtio-mmio register layout (virtio 1.3 §4.2.2), shared by the driver's `MmioTransport`
 * and the mock's `MmioDevice` so both read one table. Every register below {@link MmioReg.CONFIG}
 * is a little-endian 32-bit register taking aligned 32-bit accesses only (§4.2.2.2).
 *
 * @module
 */

/** Register offsets of virtio-mmio version 2 (virtio 1.3 §4.2.2, reference §4.4). */
export const MmioReg = {
  /** R: 0x74726976, "virt". */
  MAGIC_VALUE: 0x000,
  /** R: 2 for a modern device, 1 for legacy. */
  VERSION: 0x004,
  /** R: the virtio device ID; 0 is a placeholder (§4.2.2.2). */
  DEVICE_ID: 0x008,
  /** R: the subsystem vendor ID. */
  VENDOR_ID: 0x00c,
  /** R: feature bits [32·DeviceFeaturesSel, 32·DeviceFeaturesSel + 31]. */
  DEVICE_FEATURES: 0x010,
  /** W: selects the half of DeviceFeatures to read. */
  DEVICE_FEATURES_SEL: 0x014,
  /** W: the accepted feature bits of the selected half. */
  DRIVER_FEATURES: 0x020,
  /** W: selects the half of DriverFeatures to write. */
  DRIVER_FEATURES_SEL: 0x024,
  /** W: selects the queue the Queue* registers refer to. */
  QUEUE_SEL: 0x030,
  /** R: the selected queue's maximum size; 0 when the queue does not exist. */
  QUEUE_SIZE_MAX: 0x034,
  /** W: the selected queue's size. */
  QUEUE_SIZE: 0x038,
  /** RW: the selected queue is ready (1) or stopped (0). */
  QUEUE_READY: 0x044,
  /** W: a queue index: the queue has new available buffers. */
  QUEUE_NOTIFY: 0x050,
  /** R: bit 0 used buffer, bit 1 config change. */
  INTERRUPT_STATUS: 0x060,
  /** W: the InterruptStatus bits the driver handled. */
  INTERRUPT_ACK: 0x064,
  /** RW: the device status byte; 0 resets (§2.1). */
  STATUS: 0x070,
  /** W: descriptor table address, low half. */
  QUEUE_DESC_LOW: 0x080,
  /** W: descriptor table address, high half. */
  QUEUE_DESC_HIGH: 0x084,
  /** W: driver area (avail ring) address, low half. */
  QUEUE_DRIVER_LOW: 0x090,
  /** W: driver area (avail ring) address, high half. */
  QUEUE_DRIVER_HIGH: 0x094,
  /** W: device area (used ring) address, low half. */
  QUEUE_DEVICE_LOW: 0x0a0,
  /** W: device area (used ring) address, high half. */
  QUEUE_DEVICE_HIGH: 0x0a4,
  /** W: selects a shared memory region. */
  SHM_SEL: 0x0ac,
  /** R: the selected region's length, low half (all ones: no such region). */
  SHM_LEN_LOW: 0x0b0,
  /** R: the selected region's length, high half. */
  SHM_LEN_HIGH: 0x0b4,
  /** R: the selected region's base address, low half (all ones: no such region). */
  SHM_BASE_LOW: 0x0b8,
  /** R: the selected region's base address, high half. */
  SHM_BASE_HIGH: 0x0bc,
  /** RW: write 1 to reset the selected queue (VIRTIO_F_RING_RESET, §2.6.1). */
  QUEUE_RESET: 0x0c0,
  /** R: changes whenever the device config may have changed (§2.5.1). */
  CONFIG_GENERATION: 0x0fc,
  /** The device-specific config starts here; it takes 8-, 16- and 32-bit accesses. */
  CONFIG: 0x100,
} as const;

/**
 * Registers of legacy (version 1) virtio-mmio that a version 2 device does not have
 * (virtio 1.3 §4.2.4); a modern driver never writes them.
 */
export const MmioLegacyReg = {
  /** W: the guest page size, for QueuePFN. */
  GUEST_PAGE_SIZE: 0x028,
  /** W: the used ring alignment of the legacy contiguous layout. */
  QUEUE_ALIGN: 0x03c,
  /** RW: page number of the selected queue; 0 stops it. */
  QUEUE_PFN: 0x040,
} as const;

/** "virt" read as a little-endian u32: the MagicValue of every virtio-mmio device. */
export const MMIO_MAGIC_VALUE = 0x74726976;
/** The Version of a modern (virtio 1.0+) virtio-mmio device. */
export const MMIO_VERSION_MODERN = 2;
/** The Version of a legacy virtio-mmio device (§4.2.4). */
export const MMIO_VERSION_LEGACY = 1;
