/**
 * The virtio-pci capability walk (virtio 1.3 §4.1.4): where the common, notify, ISR and device
 * configuration structures live, found through the vendor capabilities in PCI config space and
 * checked against their BAR windows before the transport trusts them.
 *
 * @module
 */

import type { RegisterSpace } from "./registers.ts";
import {
  CommonCfg,
  PCI_CAP_ID_VENDOR,
  PCI_CAP_WALK_LIMIT,
  PCI_CFG_CAPABILITIES,
  PCI_CFG_HEADER_SIZE,
  PCI_CFG_STATUS,
  PCI_STATUS_CAP_LIST,
  VIRTIO_PCI_CAP_SIZE,
  VIRTIO_PCI_NOTIFY_CAP_SIZE,
  VirtioPciCap,
  VirtioPciCapField,
} from "../spec/pci.ts";

/** Bytes of common cfg the transport touches (through queue_device). */
const COMMON_MIN_LENGTH = CommonCfg.QUEUE_DEVICE + 8;

/** Where one virtio structure lives. */
export interface PciCapLocation {
  /** Config-space offset of the capability that described it. */
  cap: number;
  /** BAR index (0–5). */
  bar: number;
  /** Offset inside the BAR. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/** The structures the capability walk found. */
export interface PciLayout {
  /** Common configuration. */
  common: PciCapLocation;
  /** Notification area. */
  notify: PciCapLocation;
  /** ISR status byte. */
  isr: PciCapLocation;
  /** Device-specific configuration. */
  device: PciCapLocation;
  /** `notify_off_multiplier` of the notify capability. */
  notifyOffMultiplier: number;
}

/** Returns the BAR window of BAR `index`, or null when it is not mapped. */
export type PciBarAccessor = (index: number) => RegisterSpace | null;

/** Result of {@link walkCapabilities}: the first usable capability of each type 1–4. */
export interface PciCapWalk {
  /** Indexed by `cfg_type`; null where none was usable. Index 0 is unused. */
  caps: (PciCapLocation | null)[];
  /** `notify_off_multiplier` of the chosen notify capability. */
  multiplier: number;
}

/**
 * Walks the capability list (virtio 1.3 §4.1.4): vendor capabilities only, the first usable
 * one of each type; reserved types, BARs above 5, and structures that do not fit in their
 * BAR's window are skipped. The walk stops at a pointer outside config space, after
 * {@link PCI_CAP_WALK_LIMIT} capabilities, or when a capability repeats (a loop). A function
 * without a capability list (status bit 4 clear) yields no capabilities.
 */
export function walkCapabilities(config: RegisterSpace, bar: PciBarAccessor): PciCapWalk {
  const caps: (PciCapLocation | null)[] = [null, null, null, null, null];
  let multiplier = 0;
  if ((config.read16(PCI_CFG_STATUS) & PCI_STATUS_CAP_LIST) === 0) return { caps, multiplier };
  const visited = new Set<number>();
  let ptr = config.read8(PCI_CFG_CAPABILITIES) & 0xfc;
  for (let n = 0; n < PCI_CAP_WALK_LIMIT && ptr !== 0; n++) {
    if (ptr < PCI_CFG_HEADER_SIZE || ptr + 2 > config.size || visited.has(ptr)) break;
    visited.add(ptr);
    const capId = config.read8(ptr + VirtioPciCapField.CAP_VNDR);
    const next = config.read8(ptr + VirtioPciCapField.CAP_NEXT) & 0xfc;
    if (capId === PCI_CAP_ID_VENDOR && ptr + VIRTIO_PCI_CAP_SIZE <= config.size) {
      const capLen = config.read8(ptr + VirtioPciCapField.CAP_LEN);
      const type = config.read8(ptr + VirtioPciCapField.CFG_TYPE);
      const barIndex = config.read8(ptr + VirtioPciCapField.BAR);
      const known = type >= VirtioPciCap.COMMON && type <= VirtioPciCap.DEVICE;
      // A larger cap_len is accepted (virtio 1.3 §4.1.4); a NOTIFY cap needs its multiplier.
      const minLen = type === VirtioPciCap.NOTIFY
        ? VIRTIO_PCI_NOTIFY_CAP_SIZE
        : VIRTIO_PCI_CAP_SIZE;
      if (
        known && caps[type] === null && barIndex <= 5 && capLen >= minLen &&
        ptr + minLen <= config.size
      ) {
        const offset = config.read32(ptr + VirtioPciCapField.OFFSET);
        const length = config.read32(ptr + VirtioPciCapField.LENGTH);
        const window = bar(barIndex);
        if (window !== null && usable(type, offset, length, window.size)) {
          caps[type] = { cap: ptr, bar: barIndex, offset, length };
          if (type === VirtioPciCap.NOTIFY) {
            multiplier = config.read32(ptr + VirtioPciCapField.NOTIFY_OFF_MULTIPLIER);
          }
        }
      }
    }
    ptr = next;
  }
  return { caps, multiplier };
}

/** Whether a structure of `type` at `offset`/`length` fits a window and its rules. */
function usable(type: number, offset: number, length: number, windowSize: number): boolean {
  if (offset + length > windowSize) return false;
  switch (type) {
    case VirtioPciCap.COMMON:
      return (offset & 3) === 0 && length >= COMMON_MIN_LENGTH; // §4.1.4.3: 4-byte aligned
    case VirtioPciCap.NOTIFY:
      return (offset & 1) === 0 && length >= 2;
    case VirtioPciCap.ISR:
      return length >= 1;
    default:
      return (offset & 3) === 0; // §4.1.4.6: device cfg 4-byte aligned
  }
}
