/**
 * The virtio-pci layouts (virtio 1.3 §4.1): IDs (§4.1.2), the vendor capability (§4.1.4), the
 * common configuration structure (§4.1.4.3), and the few PCI config header fields (PCI Local
 * Bus 3.0 §6.1) the walk needs. Shared by the driver's `PciTransport`, the mock's `PciFunction`
 * and the topology's PCI classifier, so all three read one table. All fields are little-endian.
 *
 * @module
 */

// ---- PCI config header (PCI Local Bus 3.0 §6.1, PCIe 5.0 §7.5) ----------------------------

/** Size of standard (non-extended) PCI config space. */
export const PCI_CFG_SPACE_SIZE = 256;
/** Size of the standard header; capabilities live above it. */
export const PCI_CFG_HEADER_SIZE = 0x40;
/** Vendor ID (le16); 0xffff: no function. */
export const PCI_CFG_VENDOR = 0x00;
/** Device ID (le16). */
export const PCI_CFG_DEVICE = 0x02;
/** Command register (le16). */
export const PCI_CFG_COMMAND = 0x04;
/** Status register (le16; bit 4: capabilities list, {@link PCI_STATUS_CAP_LIST}). */
export const PCI_CFG_STATUS = 0x06;
/** Revision ID (u8). */
export const PCI_CFG_REVISION = 0x08;
/** Class code: sub-class @0x0a, base class @0x0b. */
export const PCI_CFG_SUBCLASS = 0x0a;
/** Base class code (u8). */
export const PCI_CFG_CLASS = 0x0b;
/** Header type (bits 6:0). */
export const PCI_CFG_HEADER_TYPE = 0x0e;
/** Base address register 0 (le32); BAR n is at 0x10 + 4·n. */
export const PCI_CFG_BAR0 = 0x10;
/** Type-1 header: secondary bus number. */
export const PCI_CFG_SECONDARY_BUS = 0x19;
/** Subsystem vendor ID (le16). */
export const PCI_CFG_SUBSYSTEM_VENDOR = 0x2c;
/** Subsystem ID (le16); a transitional virtio device's device ID (virtio 1.3 §4.1.2.1). */
export const PCI_CFG_SUBSYSTEM = 0x2e;
/** Capabilities pointer. */
export const PCI_CFG_CAPABILITIES = 0x34;
/** Interrupt line (u8). */
export const PCI_CFG_INTERRUPT_LINE = 0x3c;
/** Interrupt pin (u8; 1 is INTA#). */
export const PCI_CFG_INTERRUPT_PIN = 0x3d;
/** Status bit: the function has a capability list at {@link PCI_CFG_CAPABILITIES}. */
export const PCI_STATUS_CAP_LIST = 0x10;
/** Capability ID of a vendor-specific capability (every virtio capability). */
export const PCI_CAP_ID_VENDOR = 0x09;
/** PCI Express capability ID. */
export const PCI_CAP_ID_EXP = 0x10;
/**
 * Most capabilities a walk may visit: (256 − 64) / 4 = 48, as many 4-byte capabilities as fit
 * above the header (Linux's PCI_FIND_CAP_TTL). A longer walk is a loop.
 */
export const PCI_CAP_WALK_LIMIT = 48;

// ---- Virtio PCI IDs (virtio 1.3 §4.1.2) --------------------------------------------------

/** The PCI vendor ID of virtio functions. */
export const VIRTIO_PCI_VENDOR = 0x1af4;
/** First modern virtio PCI device ID (0x1040 + virtio device ID). */
export const VIRTIO_PCI_MODERN_BASE = 0x1040;
/** Last modern virtio PCI device ID. */
export const VIRTIO_PCI_MODERN_LAST = 0x107f;
/** First transitional virtio PCI device ID (device ID in the subsystem ID, §4.1.2.1). */
export const VIRTIO_PCI_TRANSITIONAL_FIRST = 0x1000;
/** Last transitional virtio PCI device ID. */
export const VIRTIO_PCI_TRANSITIONAL_LAST = 0x103f;

// ---- Virtio PCI capabilities (virtio 1.3 §4.1.4) -----------------------------------------

/** Virtio PCI capability types (`cfg_type`, virtio 1.3 §4.1.4). */
export const VirtioPciCap = {
  /** Common configuration (§4.1.4.3). */
  COMMON: 1,
  /** Notifications (§4.1.4.4). */
  NOTIFY: 2,
  /** ISR status (§4.1.4.5). */
  ISR: 3,
  /** Device-specific configuration (§4.1.4.6). */
  DEVICE: 4,
  /** PCI configuration access (§4.1.4.9). */
  PCI_CFG: 5,
  /** Shared memory region (§4.1.4.7). */
  SHARED_MEMORY: 8,
  /** Vendor-specific data (§4.1.4.8). */
  VENDOR: 9,
} as const;

/** Offsets in `struct virtio_pci_cap` and the notify capability (virtio 1.3 §4.1.4). */
export const VirtioPciCapField = {
  /** u8: {@link PCI_CAP_ID_VENDOR}. */
  CAP_VNDR: 0,
  /** u8: config-space offset of the next capability, 0 at the end. */
  CAP_NEXT: 1,
  /** u8: length of this capability, at least 16. */
  CAP_LEN: 2,
  /** u8: {@link VirtioPciCap}. */
  CFG_TYPE: 3,
  /** u8: the BAR holding the structure (0–5; other values: ignore the capability). */
  BAR: 4,
  /** u8: tells several capabilities of one type apart. */
  ID: 5,
  /** le32: offset of the structure inside the BAR. */
  OFFSET: 8,
  /** le32: length of the structure. */
  LENGTH: 12,
  /** le32, notify capability only: `notify_off_multiplier` (§4.1.4.4). */
  NOTIFY_OFF_MULTIPLIER: 16,
} as const;

/** Size of `struct virtio_pci_cap`. */
export const VIRTIO_PCI_CAP_SIZE = 16;
/** Size of `struct virtio_pci_notify_cap`: the cap plus `notify_off_multiplier`. */
export const VIRTIO_PCI_NOTIFY_CAP_SIZE = 20;
/** Size of `struct virtio_pci_cfg_cap`: the cap plus `pci_cfg_data[4]` (§4.1.4.9). */
export const VIRTIO_PCI_CFG_CAP_SIZE = 20;

/** Offsets in the common configuration structure (virtio 1.3 §4.1.4.3). */
export const CommonCfg = {
  /** le32. */
  DEVICE_FEATURE_SELECT: 0,
  /** le32, read-only. */
  DEVICE_FEATURE: 4,
  /** le32. */
  DRIVER_FEATURE_SELECT: 8,
  /** le32. */
  DRIVER_FEATURE: 12,
  /** le16. */
  CONFIG_MSIX_VECTOR: 16,
  /** le16, read-only. */
  NUM_QUEUES: 18,
  /** u8. */
  DEVICE_STATUS: 20,
  /** u8, read-only. */
  CONFIG_GENERATION: 21,
  /** le16. */
  QUEUE_SELECT: 22,
  /** le16: the maximum after reset; 0 when the queue is absent. */
  QUEUE_SIZE: 24,
  /** le16. */
  QUEUE_MSIX_VECTOR: 26,
  /** le16: the driver writes 1 only, never 0 (§4.1.4.3.2). */
  QUEUE_ENABLE: 28,
  /** le16, read-only. */
  QUEUE_NOTIFY_OFF: 30,
  /** le64. */
  QUEUE_DESC: 32,
  /** le64. */
  QUEUE_DRIVER: 40,
  /** le64. */
  QUEUE_DEVICE: 48,
  /** le16, read-only. */
  QUEUE_NOTIF_CONFIG_DATA: 56,
  /** le16 (VIRTIO_F_RING_RESET, §2.6.1). */
  QUEUE_RESET: 58,
  /** le16, read-only. */
  ADMIN_QUEUE_INDEX: 60,
  /** le16, read-only. */
  ADMIN_QUEUE_NUM: 62,
} as const;

/** Size of the common configuration structure, through `admin_queue_num`. */
export const COMMON_CFG_SIZE = 64;

/**
 * Access width of the common-cfg field starting at `offset`, in bytes (virtio 1.3 §4.1.4.3,
 * and §4.1.3.1: each field takes accesses of its own width, a 64-bit field two 32-bit ones);
 * 0 when no field or 32-bit half starts there.
 */
export function commonCfgFieldWidth(offset: number): number {
  if (offset < CommonCfg.CONFIG_MSIX_VECTOR) return (offset & 3) === 0 ? 4 : 0;
  if (offset === CommonCfg.DEVICE_STATUS || offset === CommonCfg.CONFIG_GENERATION) return 1;
  if (offset < CommonCfg.QUEUE_DESC) return (offset & 1) === 0 ? 2 : 0;
  if (offset < CommonCfg.QUEUE_NOTIF_CONFIG_DATA) return (offset & 3) === 0 ? 4 : 0;
  if (offset < COMMON_CFG_SIZE) return (offset & 1) === 0 ? 2 : 0;
  return 0;
}

/** `config_msix_vector`/`queue_msix_vector` value: no MSI-X vector (virtio 1.3 §4.1.4.3). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;
