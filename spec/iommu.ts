/**
 * virtio-iommu wire layouts and numbers (virtio 1.3 §5.13). Pure spec data with no logic:
 * the driver encodes with it and the mock device decodes with it; the raw-byte tests pin
 * every value here against the spec's tables, so a wrong constant cannot hide in both sides.
 *
 * @module
 */

/** Virtio device ID of the IOMMU (§5.13.1). */
export const VIRTIO_ID_IOMMU = 23;
/** Index of the request queue (§5.13.2). */
export const REQUEST_QUEUE = 0;
/** Index of the event queue (§5.13.2). */
export const EVENT_QUEUE = 1;

// Feature bits (§5.13.3).
/** `input_range` is valid. */
export const VIRTIO_IOMMU_F_INPUT_RANGE = 0n;
/** `domain_range` is valid. */
export const VIRTIO_IOMMU_F_DOMAIN_RANGE = 1n;
/** MAP and UNMAP requests are available. */
export const VIRTIO_IOMMU_F_MAP_UNMAP = 2n;
/** Unattached endpoints bypass translation (legacy; superseded by BYPASS_CONFIG). */
export const VIRTIO_IOMMU_F_BYPASS = 3n;
/** PROBE requests are available and `probe_size` is valid. */
export const VIRTIO_IOMMU_F_PROBE = 4n;
/** `VIRTIO_IOMMU_MAP_F_MMIO` is available. */
export const VIRTIO_IOMMU_F_MMIO = 5n;
/** The `bypass` config field and `ATTACH_F_BYPASS` are available. */
export const VIRTIO_IOMMU_F_BYPASS_CONFIG = 6n;

/** Names of the virtio-iommu feature bits, by number. */
export const IOMMU_FEATURE_NAMES: ReadonlyMap<bigint, string> = new Map([
  [VIRTIO_IOMMU_F_INPUT_RANGE, "INPUT_RANGE"],
  [VIRTIO_IOMMU_F_DOMAIN_RANGE, "DOMAIN_RANGE"],
  [VIRTIO_IOMMU_F_MAP_UNMAP, "MAP_UNMAP"],
  [VIRTIO_IOMMU_F_BYPASS, "BYPASS"],
  [VIRTIO_IOMMU_F_PROBE, "PROBE"],
  [VIRTIO_IOMMU_F_MMIO, "MMIO"],
  [VIRTIO_IOMMU_F_BYPASS_CONFIG, "BYPASS_CONFIG"],
]);

// struct virtio_iommu_config (§5.13.4), offsets from the start of device config.
/** `page_size_mask` le64. */
export const CONFIG_PAGE_SIZE_MASK = 0;
/** `input_range.start` le64. */
export const CONFIG_INPUT_START = 8;
/** `input_range.end` le64 (inclusive). */
export const CONFIG_INPUT_END = 16;
/** `domain_range.start` le32. */
export const CONFIG_DOMAIN_START = 24;
/** `domain_range.end` le32 (inclusive). */
export const CONFIG_DOMAIN_END = 28;
/** `probe_size` le32. */
export const CONFIG_PROBE_SIZE = 32;
/** `bypass` u8 (BYPASS_CONFIG only; the only field a driver may write). */
export const CONFIG_BYPASS = 36;
/** Size of the published config structure. */
export const CONFIG_SIZE = 40;

// Request types (§5.13.6).
/** ATTACH request type. */
export const VIRTIO_IOMMU_T_ATTACH = 1;
/** DETACH request type. */
export const VIRTIO_IOMMU_T_DETACH = 2;
/** MAP request type. */
export const VIRTIO_IOMMU_T_MAP = 3;
/** UNMAP request type. */
export const VIRTIO_IOMMU_T_UNMAP = 4;
/** PROBE request type. */
export const VIRTIO_IOMMU_T_PROBE = 5;

// Status codes (§5.13.6).
/** Success. */
export const VIRTIO_IOMMU_S_OK = 0;
/** Virtio communication error. */
export const VIRTIO_IOMMU_S_IOERR = 1;
/** Unsupported request. */
export const VIRTIO_IOMMU_S_UNSUPP = 2;
/** Internal device error. */
export const VIRTIO_IOMMU_S_DEVERR = 3;
/** Invalid parameters. */
export const VIRTIO_IOMMU_S_INVAL = 4;
/** Out-of-range parameters. */
export const VIRTIO_IOMMU_S_RANGE = 5;
/** Entry not found. */
export const VIRTIO_IOMMU_S_NOENT = 6;
/** Bad address. */
export const VIRTIO_IOMMU_S_FAULT = 7;
/** Insufficient resources. */
export const VIRTIO_IOMMU_S_NOMEM = 8;

/** Status names without the `VIRTIO_IOMMU_S_` prefix, indexed by code. */
export const STATUS_NAMES: readonly string[] = [
  "OK",
  "IOERR",
  "UNSUPP",
  "DEVERR",
  "INVAL",
  "RANGE",
  "NOENT",
  "FAULT",
  "NOMEM",
];

// Framing (§5.13.6): struct virtio_iommu_req_head { u8 type; u8 reserved[3]; } and
// struct virtio_iommu_req_tail { u8 status; u8 reserved[3]; }.
/** Offset of `type` in the head. */
export const HEAD_TYPE = 0;
/** Size of the request head. */
export const HEAD_SIZE = 4;
/** Size of the request tail; `status` is its first byte. */
export const TAIL_SIZE = 4;

// ATTACH (§5.13.6.3): head 0:4, domain 4:4, endpoint 8:4, flags 12:4, reserved 16:4, tail 20:4.
/** ATTACH `domain` le32. */
export const ATTACH_DOMAIN = 4;
/** ATTACH `endpoint` le32. */
export const ATTACH_ENDPOINT = 8;
/** ATTACH `flags` le32. */
export const ATTACH_FLAGS = 12;
/** ATTACH `reserved[4]`. */
export const ATTACH_RESERVED = 16;
/** Device-readable bytes of ATTACH. */
export const ATTACH_SIZE = 20;
/** ATTACH flag: the domain is a bypass (identity) domain. */
export const VIRTIO_IOMMU_ATTACH_F_BYPASS = 1;

// DETACH (§5.13.6.4): head 0:4, domain 4:4, endpoint 8:4, reserved 12:8, tail 20:4.
/** DETACH `domain` le32. */
export const DETACH_DOMAIN = 4;
/** DETACH `endpoint` le32. */
export const DETACH_ENDPOINT = 8;
/** DETACH `reserved[8]`. */
export const DETACH_RESERVED = 12;
/** Device-readable bytes of DETACH. */
export const DETACH_SIZE = 20;

// MAP (§5.13.6.5): head 0:4, domain 4:4, virt_start 8:8, virt_end 16:8, phys_start 24:8,
// flags 32:4, tail 36:4.
/** MAP `domain` le32. */
export const MAP_DOMAIN = 4;
/** MAP `virt_start` le64. */
export const MAP_VIRT_START = 8;
/** MAP `virt_end` le64 (inclusive). */
export const MAP_VIRT_END = 16;
/** MAP `phys_start` le64. */
export const MAP_PHYS_START = 24;
/** MAP `flags` le32. */
export const MAP_FLAGS = 32;
/** Device-readable bytes of MAP. */
export const MAP_SIZE = 36;
/** MAP flag: endpoints may read. */
export const VIRTIO_IOMMU_MAP_F_READ = 1;
/** MAP flag: endpoints may write. */
export const VIRTIO_IOMMU_MAP_F_WRITE = 2;
/** MAP flag: the range is device memory (F_MMIO only). */
export const VIRTIO_IOMMU_MAP_F_MMIO = 4;

// UNMAP (§5.13.6.6): head 0:4, domain 4:4, virt_start 8:8, virt_end 16:8, reserved 24:4, tail 28:4.
/** UNMAP `domain` le32. */
export const UNMAP_DOMAIN = 4;
/** UNMAP `virt_start` le64. */
export const UNMAP_VIRT_START = 8;
/** UNMAP `virt_end` le64 (inclusive). */
export const UNMAP_VIRT_END = 16;
/** UNMAP `reserved[4]`. */
export const UNMAP_RESERVED = 24;
/** Device-readable bytes of UNMAP. */
export const UNMAP_SIZE = 28;

// PROBE (§5.13.6.7): head 0:4, endpoint 4:4, reserved 8:64, properties 72:probe_size, tail.
/** PROBE `endpoint` le32. */
export const PROBE_ENDPOINT = 4;
/** PROBE `reserved[64]`. */
export const PROBE_RESERVED = 8;
/** Device-readable bytes of PROBE; the `probe_size` property bytes follow, then the tail. */
export const PROBE_SIZE = 72;

// Probe properties (§5.13.6.7): le16 type (bits 0-11; 12-15 reserved), le16 length (excluding
// the 4-byte header); the next property starts at cur + 4 + length.
/** Size of a property header. */
export const PROP_HEADER_SIZE = 4;
/** Mask of the type bits in the first le16 of a property. */
export const PROP_TYPE_MASK = 0xfff;
/** End of the property list. */
export const VIRTIO_IOMMU_PROBE_T_NONE = 0;
/** Reserved memory region property. */
export const VIRTIO_IOMMU_PROBE_T_RESV_MEM = 1;

// RESV_MEM (§5.13.6.7.1): header 0:4, subtype 4:1, reserved 5:3, start 8:8, end 16:8.
/** RESV_MEM `subtype` u8 (from the start of the property, header included). */
export const RESV_MEM_SUBTYPE = 4;
/** RESV_MEM `start` le64. */
export const RESV_MEM_START = 8;
/** RESV_MEM `end` le64 (inclusive). */
export const RESV_MEM_END = 16;
/** Total bytes of a RESV_MEM property, header included; its `length` field is 20. */
export const RESV_MEM_SIZE = 24;
/** RESV_MEM subtype: accesses are not allowed. */
export const VIRTIO_IOMMU_RESV_MEM_T_RESERVED = 0;
/** RESV_MEM subtype: software MSI doorbell, identity-mapped by the device. */
export const VIRTIO_IOMMU_RESV_MEM_T_MSI = 1;

// struct virtio_iommu_fault (§5.13.7): reason 0:1, reserved 1:3, flags 4:4, endpoint 8:4,
// reserved1 12:4, address 16:8.
/** Fault `reason` u8. */
export const FAULT_REASON = 0;
/** Fault `flags` le32. */
export const FAULT_FLAGS = 4;
/** Fault `endpoint` le32. */
export const FAULT_ENDPOINT = 8;
/** Fault `address` le64. */
export const FAULT_ADDRESS = 16;
/** Size of a fault report. */
export const FAULT_SIZE = 24;
/** Fault reason: unknown. */
export const VIRTIO_IOMMU_FAULT_R_UNKNOWN = 0;
/** Fault reason: the endpoint is not attached to any domain. */
export const VIRTIO_IOMMU_FAULT_R_DOMAIN = 1;
/** Fault reason: no mapping, or the mapping's permissions forbid the access. */
export const VIRTIO_IOMMU_FAULT_R_MAPPING = 2;
/** Fault flag: a read. */
export const VIRTIO_IOMMU_FAULT_F_READ = 1;
/** Fault flag: a write. */
export const VIRTIO_IOMMU_FAULT_F_WRITE = 2;
/** Fault flag: the `address` field is valid. */
export const VIRTIO_IOMMU_FAULT_F_ADDRESS = 0x100;
