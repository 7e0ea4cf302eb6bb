/**
 * An in-memory modern virtio-pci function (virtio 1.3 §4.1): a 256-byte config space with the
 * vendor capability list, and BAR 4 laid out like QEMU's (common cfg at 0x0, ISR at 0x1000,
 * device cfg at 0x2000, notify at 0x3000 with `notify_off_multiplier` 4; 16 KiB), whose
 * register decoding lives in `pci_bar.ts`. It shares
 * {@link VirtioCore} with the MMIO register file: only where the registers are differs.
 * Options inject odd capability lists for transport tests.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { checkAccess, MemoryRegisters, type RegisterSpace } from "../transport/registers.ts";
import type { SimulatedMemory } from "../transport/memory.ts";
import {
  PCI_CAP_ID_VENDOR,
  PCI_CFG_BAR0,
  PCI_CFG_CAPABILITIES,
  PCI_CFG_CLASS,
  PCI_CFG_COMMAND,
  PCI_CFG_DEVICE,
  PCI_CFG_HEADER_SIZE,
  PCI_CFG_INTERRUPT_LINE,
  PCI_CFG_INTERRUPT_PIN,
  PCI_CFG_REVISION,
  PCI_CFG_SPACE_SIZE,
  PCI_CFG_STATUS,
  PCI_CFG_SUBSYSTEM,
  PCI_CFG_SUBSYSTEM_VENDOR,
  PCI_CFG_VENDOR,
  PCI_STATUS_CAP_LIST,
  VIRTIO_PCI_CAP_SIZE,
  VIRTIO_PCI_CFG_CAP_SIZE,
  VIRTIO_PCI_MODERN_BASE,
  VIRTIO_PCI_NOTIFY_CAP_SIZE,
  VIRTIO_PCI_VENDOR,
  VirtioPciCap,
  VirtioPciCapField,
} from "../spec/pci.ts";
import type { MockInterruptSource } from "./interrupts.ts";
import { MSIX_BAR, type MsixOptions, PciInterrupts } from "./pci_interrupts.ts";
import type { DeviceModel } from "./device.ts";
import {
  COMMON_BASE,
  DEVICE_BASE,
  ISR_BASE,
  NOTIFY_BASE,
  REGION_SIZE,
  VIRTIO_BAR,
  VirtioBar,
} from "./pci_bar.ts";
import { VirtioCore, type VirtioCoreOptions } from "./virtio_core.ts";

/** A capability to put in the list, for tests that need unusual ones. */
export interface PciCapSpec {
  /** `cfg_type` (1 COMMON, 2 NOTIFY, 3 ISR, 4 DEVICE, 5 PCI_CFG, others reserved). */
  cfgType: number;
  /** `bar` field. */
  bar: number;
  /** `offset` field. */
  offset: number;
  /** `length` field. */
  length: number;
  /** Capability ID; default 0x09 (vendor-specific). */
  vendor?: number;
  /** `notify_off_multiplier` for a NOTIFY capability; default 4. */
  multiplier?: number;
}

/** Options for {@link PciFunction}. */
export interface PciFunctionOptions extends VirtioCoreOptions {
  /** PCI vendor ID; default 0x1AF4. */
  vendorId?: number;
  /** PCI device ID; default 0x1040 + the model's device ID. */
  pciDeviceId?: number;
  /** PCI subsystem ID; default 0x1100 (QEMU's for modern devices). */
  subsystemId?: number;
  /** Revision ID; default 1. */
  revision?: number;
  /** `notify_off_multiplier` of the standard NOTIFY capability; default 4. */
  notifyMultiplier?: number;
  /** `queue_notify_off` of each queue; default the queue index. */
  queueNotifyOff?: readonly number[];
  /** Capabilities placed before the standard ones. */
  capsBefore?: readonly PciCapSpec[];
  /** Capabilities placed after the standard ones. */
  capsAfter?: readonly PciCapSpec[];
  /** Standard capabilities (by `cfg_type`) to leave out. */
  omitCaps?: readonly number[];
  /** `cap_next` of the last capability; default 0 (use 0x40 to make a loop). */
  lastNext?: number;
  /** Whether the status register advertises a capability list; default true. */
  capabilityList?: boolean;
  /**
   * An MSI-X capability with this many table entries (table and PBA in BAR 1, as QEMU's);
   * default none: the function interrupts through INTx only, as QEMU's virtio-iommu-pci does.
   */
  msix?: MsixOptions;
}

/** The PCI config space: reads are plain, writes to virtio capabilities are violations. */
class PciConfigSpace extends MemoryRegisters {
  readonly #core: VirtioCore;
  /** Ranges [start, end) of capabilities the driver must not write. */
  readonly #protected: Array<[number, number]> = [];
  /** The function's interrupts: told about command register and MSI-X control writes. */
  irq: PciInterrupts | null = null;

  constructor(core: VirtioCore) {
    super(PCI_CFG_SPACE_SIZE);
    this.#core = core;
  }

  protect(start: number, end: number): void {
    this.#protected.push([start, end]);
  }

  #allowed(offset: number, width: number): boolean {
    for (const [start, end] of this.#protected) {
      if (offset < end && offset + width > start) {
        this.#core.violation(
          `virtio 1.3 §4.1.4: driver wrote capability bytes at config ${hex(offset)}`,
        );
        return false;
      }
    }
    // Identity, class, header type and capability pointer are read-only.
    if (
      offset < PCI_CFG_COMMAND || (offset >= PCI_CFG_REVISION && offset < PCI_CFG_BAR0) ||
      (offset >= PCI_CFG_SUBSYSTEM_VENDOR && offset < PCI_CFG_INTERRUPT_LINE)
    ) {
      return false;
    }
    return true;
  }

  override write8(offset: number, value: number): void {
    checkAccess(offset, 1, this.size);
    this.#write(offset, 1, () => super.write8(offset, value));
  }
  override write16(offset: number, value: number): void {
    checkAccess(offset, 2, this.size);
    this.#write(offset, 2, () => super.write16(offset, value));
  }
  override write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    this.#write(offset, 4, () => super.write32(offset, value));
  }

  /** Writes if allowed; the interrupts see command register and MSI-X control writes. */
  #write(offset: number, width: number, store: () => void): void {
    if (!this.#allowed(offset, width)) return;
    if (this.irq === null) store();
    else this.irq.configWrite(offset, width, store);
  }
}

/** A modern virtio-pci function in memory: config space plus BAR 4. */
export class PciFunction {
  /** The generic device core (violations, faults, queues). */
  readonly core: VirtioCore;
  /** The 256-byte PCI config space. */
  readonly config: RegisterSpace;
  /** `notify_off_multiplier` of the standard NOTIFY capability. */
  readonly notifyMultiplier: number;
  /** INTx, MSI-X and the vector registers (`config_msix_vector`, `queue_msix_vector`). */
  readonly irq: PciInterrupts;
  #bar4: VirtioBar;
  #queueNotifyOff: readonly number[] | null;

  /** Creates the function for `model` over `memory`; see {@link PciFunctionOptions}. */
  constructor(model: DeviceModel, memory: SimulatedMemory, options: PciFunctionOptions = {}) {
    this.core = new VirtioCore(model, memory, options);
    this.notifyMultiplier = options.notifyMultiplier ?? 4;
    this.#queueNotifyOff = options.queueNotifyOff ?? null;
    this.#bar4 = new VirtioBar(this);
    const config = new PciConfigSpace(this.core);
    this.config = config;
    this.irq = new PciInterrupts(this.core, config.view, options.msix ?? null);
    PciFunction.#buildConfig(config, model, options, this.notifyMultiplier, this.irq);
    config.irq = this.irq;
  }

  /**
   * The function's INTx as uio_pci_generic delivers it (MSI-X off; the Interrupt Disable bit
   * masks the line when it fires until the driver unmasks it): `PciTransport`'s `interrupts`.
   */
  intxInterrupts(): MockInterruptSource {
    return this.irq.intx();
  }

  /** The function's MSI-X vectors as VFIO enables them (needs the `msix` option). */
  msixInterrupts(): MockInterruptSource {
    return this.irq.msix();
  }

  static #buildConfig(
    config: PciConfigSpace,
    model: DeviceModel,
    options: PciFunctionOptions,
    multiplier: number,
    irq: PciInterrupts,
  ): void {
    const v = config.view;
    v.setUint16(PCI_CFG_VENDOR, options.vendorId ?? VIRTIO_PCI_VENDOR, true);
    v.setUint16(
      PCI_CFG_DEVICE,
      options.pciDeviceId ?? VIRTIO_PCI_MODERN_BASE + model.deviceId,
      true,
    );
    v.setUint16(PCI_CFG_STATUS, options.capabilityList === false ? 0 : PCI_STATUS_CAP_LIST, true);
    v.setUint8(PCI_CFG_REVISION, options.revision ?? 1);
    v.setUint8(PCI_CFG_CLASS, 0xff); // class: unassigned
    v.setUint32(PCI_CFG_BAR0 + 4 * VIRTIO_BAR, 0xfe00000c, true); // 64-bit prefetchable memory
    v.setUint16(PCI_CFG_SUBSYSTEM_VENDOR, VIRTIO_PCI_VENDOR, true);
    v.setUint16(PCI_CFG_SUBSYSTEM, options.subsystemId ?? 0x1100, true);
    v.setUint8(PCI_CFG_INTERRUPT_PIN, 1); // INTA#
    const omit = options.omitCaps ?? [];
    const standard: PciCapSpec[] = [
      { cfgType: VirtioPciCap.COMMON, bar: VIRTIO_BAR, offset: COMMON_BASE, length: REGION_SIZE },
      { cfgType: VirtioPciCap.ISR, bar: VIRTIO_BAR, offset: ISR_BASE, length: REGION_SIZE },
      { cfgType: VirtioPciCap.DEVICE, bar: VIRTIO_BAR, offset: DEVICE_BASE, length: REGION_SIZE },
      {
        cfgType: VirtioPciCap.NOTIFY,
        bar: VIRTIO_BAR,
        offset: NOTIFY_BASE,
        length: REGION_SIZE,
        multiplier,
      },
      { cfgType: VirtioPciCap.PCI_CFG, bar: 0, offset: 0, length: 0 },
    ].filter((c) => !omit.includes(c.cfgType));
    const caps = [...(options.capsBefore ?? []), ...standard, ...(options.capsAfter ?? [])];
    let at = PCI_CFG_HEADER_SIZE;
    let prevNext = PCI_CFG_CAPABILITIES;
    for (const cap of caps) {
      const vendor = cap.vendor ?? PCI_CAP_ID_VENDOR;
      const len = cap.cfgType === VirtioPciCap.NOTIFY
        ? VIRTIO_PCI_NOTIFY_CAP_SIZE
        : cap.cfgType === VirtioPciCap.PCI_CFG
        ? VIRTIO_PCI_CFG_CAP_SIZE
        : VIRTIO_PCI_CAP_SIZE;
      if (at + len > PCI_CFG_SPACE_SIZE) {
        throw new RangeError("Too many capabilities for PCI config space");
      }
      v.setUint8(prevNext, at);
      v.setUint8(at + VirtioPciCapField.CAP_VNDR, vendor);
      v.setUint8(at + VirtioPciCapField.CAP_LEN, len);
      v.setUint8(at + VirtioPciCapField.CFG_TYPE, cap.cfgType);
      v.setUint8(at + VirtioPciCapField.BAR, cap.bar);
      v.setUint32(at + VirtioPciCapField.OFFSET, cap.offset, true);
      v.setUint32(at + VirtioPciCapField.LENGTH, cap.length, true);
      if (cap.cfgType === VirtioPciCap.NOTIFY) {
        v.setUint32(at + VirtioPciCapField.NOTIFY_OFF_MULTIPLIER, cap.multiplier ?? 4, true);
      }
      // The driver may write only the PCI_CFG capability's body (virtio 1.3 §4.1.4.9).
      if (vendor === PCI_CAP_ID_VENDOR) {
        config.protect(at, cap.cfgType === VirtioPciCap.PCI_CFG ? at + 4 : at + len);
      }
      prevNext = at + VirtioPciCapField.CAP_NEXT;
      at += len;
    }
    if (irq.tableSize > 0) {
      v.setUint8(prevNext, at);
      prevNext = irq.writeCapability(at);
    }
    v.setUint8(prevNext, options.lastNext ?? 0);
  }

  /** The register window of BAR `index`: BAR 4 holds the virtio structures, others are null. */
  bar(index: number): RegisterSpace | null {
    if (index === MSIX_BAR) return this.irq.bar;
    return index === VIRTIO_BAR ? this.#bar4 : null;
  }

  /** `queue_notify_off` of queue `index`. */
  queueNotifyOff(index: number): number {
    if (index >= this.core.queueCount) return 0;
    return this.#queueNotifyOff?.[index] ?? index;
  }

  /** Handles a driver write at `offset` in the notify region (virtio 1.3 §4.1.4.4). */
  notifyWrite(offset: number, width: number, value: number): void {
    const core = this.core;
    if (width !== 2) {
      core.violation(
        `virtio 1.3 §4.1.5.2: ${width * 8}-bit notify write; a 16-bit queue index is required`,
      );
      return;
    }
    let queue = -1;
    const mult = this.notifyMultiplier;
    if (mult === 0) {
      queue = value;
    } else {
      for (let i = 0; i < core.queueCount; i++) {
        if (this.queueNotifyOff(i) * mult === offset) {
          queue = i;
          break;
        }
      }
    }
    if (queue < 0) {
      core.violation(
        `virtio 1.3 §4.1.4.4: notify write at ${hex(offset)} matches no queue`,
      );
      return;
    }
    if (value !== queue) {
      core.violation(
        `virtio 1.3 §4.1.5.2: notify write for queue ${queue} carries index ${value}`,
      );
      return;
    }
    core.notify(queue);
  }
}
