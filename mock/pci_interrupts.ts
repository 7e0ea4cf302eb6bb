/**
 * The interrupts of the mock virtio-pci function: INTx and MSI-X, as the spec and PCI define
 * them. Without MSI-X enabled the function asserts INTx while its ISR status is not 0 and
 * mirrors that in the status register's Interrupt Status bit (virtio 1.3 §4.1.4.5.1); the
 * command register's Interrupt Disable bit masks it (PCI Local Bus 3.0 §6.2.2). With MSI-X
 * enabled, each event goes to the vector mapped in `config_msix_vector` / `queue_msix_vector`
 * (§4.1.5.1.2): nothing for NO_VECTOR, a pending bit for a masked vector, delivered when it is
 * unmasked. The table and the pending bit array live in BAR 1, as in QEMU.
 *
 * @module
 */

import { hex } from "../util/hex.ts";
import { checkAccess, type RegisterSpace } from "../transport/registers.ts";
import {
  MSIX_BIR_MASK,
  MSIX_CAP_SIZE,
  MSIX_CONTROL_ENABLE,
  MSIX_CONTROL_MASK_ALL,
  MSIX_ENTRY_MASKED,
  MSIX_ENTRY_SIZE,
  MsixCap,
  MsixEntry,
  PCI_CAP_ID_MSIX,
  PCI_COMMAND_INTX_DISABLE,
  PCI_STATUS_INTERRUPT,
  VIRTIO_MSI_NO_VECTOR,
} from "../spec/interrupts.ts";
import { PCI_CFG_COMMAND, PCI_CFG_STATUS } from "../spec/pci.ts";
import { INTERRUPT_CONFIG_CHANGE, type VirtioCore } from "./virtio_core.ts";
import { LevelLine, MockInterruptSource } from "./interrupts.ts";

/** The BAR holding the MSI-X table and pending bit array (QEMU uses BAR 1). */
export const MSIX_BAR = 1;
/** Offset of the MSI-X table in {@link MSIX_BAR}. */
export const MSIX_TABLE_OFFSET = 0x000;
/** Offset of the pending bit array in {@link MSIX_BAR}. */
export const MSIX_PBA_OFFSET = 0x800;
/** Size of {@link MSIX_BAR}. */
export const MSIX_BAR_SIZE = 0x1000;
/** Most MSI-X vectors the mock's BAR layout holds (the table must end before the PBA). */
export const MAX_MOCK_MSIX_VECTORS = MSIX_PBA_OFFSET / MSIX_ENTRY_SIZE;

/** MSI-X options of the mock PCI function. */
export interface MsixOptions {
  /** Entries in the MSI-X table (1 to {@link MAX_MOCK_MSIX_VECTORS}). */
  vectors: number;
  /**
   * How many vectors (0, 1, …) the device can map events to; mapping another reads back
   * VIRTIO_MSI_NO_VECTOR, as a device short of resources does (§4.1.5.1.2.1). Default all.
   */
  mappable?: number;
}

/** INTx, MSI-X and the vector registers of one mock PCI function. */
export class PciInterrupts {
  /** MSI-X table entries; 0 without an MSI-X capability. */
  readonly tableSize: number;
  /** Config-space offset of the MSI-X capability (0: none). */
  capOffset = 0;
  /** BAR 1: the MSI-X table and the pending bit array, or null without MSI-X. */
  readonly bar: RegisterSpace | null;
  #core: VirtioCore;
  #config: DataView;
  #mappable: number;
  #line = new LevelLine();
  #vectorSource: MockInterruptSource | null = null;
  #configVector = VIRTIO_MSI_NO_VECTOR;
  #queueVectors: Uint16Array;
  #table: Uint32Array;
  #pending: Uint8Array;

  /** Wires the core's interrupts to INTx or MSI-X; `config` is the function's config space. */
  constructor(core: VirtioCore, config: DataView, msix: MsixOptions | null) {
    const n = msix?.vectors ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > MAX_MOCK_MSIX_VECTORS) {
      throw new RangeError(`Invalid MSI-X table size ${n}: expected 1 to ${MAX_MOCK_MSIX_VECTORS}`);
    }
    this.tableSize = n;
    this.#core = core;
    this.#config = config;
    this.#mappable = msix?.mappable ?? n;
    this.#queueVectors = new Uint16Array(core.queueCount).fill(VIRTIO_MSI_NO_VECTOR);
    this.#table = new Uint32Array(n * 4);
    // PCI Local Bus 3.0 §6.8.2.9: every vector is masked after reset.
    for (let v = 0; v < n; v++) this.#table[v * 4 + 3] = MSIX_ENTRY_MASKED;
    this.#pending = new Uint8Array(n);
    this.bar = n > 0 ? new MsixBar(this) : null;
    core.onInterrupt = (cause, queue) => this.#raise(cause, queue);
  }

  // ---- Vector registers (virtio 1.3 §4.1.4.3, §4.1.5.1.2) ---------------------------------

  /** `config_msix_vector` as the driver reads it. */
  get configVector(): number {
    return this.#configVector;
  }

  /** A driver write of `config_msix_vector`. */
  setConfigVector(vector: number): void {
    this.#configVector = this.#mapped(vector, "config_msix_vector");
  }

  /** `queue_msix_vector` of queue `queue`. */
  queueVector(queue: number): number {
    return this.#queueVectors[queue] ?? VIRTIO_MSI_NO_VECTOR;
  }

  /** A driver write of `queue_msix_vector` for the selected queue. */
  setQueueVector(queue: number, vector: number): void {
    if (queue >= this.#queueVectors.length) return;
    this.#queueVectors[queue] = this.#mapped(vector, `queue_msix_vector of queue ${queue}`);
  }

  /** What the device keeps for a vector write: the vector, or NO_VECTOR when it cannot map it. */
  #mapped(vector: number, field: string): number {
    if (vector === VIRTIO_MSI_NO_VECTOR) return vector;
    if (vector >= this.tableSize) {
      this.#core.violation(
        `virtio 1.3 §4.1.5.1.2.1: driver wrote vector ${vector} to ${field}, outside the ` +
          `${this.tableSize}-entry MSI-X table`,
      );
      return VIRTIO_MSI_NO_VECTOR;
    }
    return vector < this.#mappable ? vector : VIRTIO_MSI_NO_VECTOR;
  }

  /** Device reset: every event unmapped (§4.1.5.1.2.1), INTx deasserted with the ISR. */
  resetVectors(): void {
    this.#configVector = VIRTIO_MSI_NO_VECTOR;
    this.#queueVectors.fill(VIRTIO_MSI_NO_VECTOR);
    this.updateLine();
  }

  // ---- INTx ---------------------------------------------------------------------------------

  /** Whether the MSI-X capability's Enable bit is set (INTx is then never asserted). */
  get msixEnabled(): boolean {
    return (this.#control() & MSIX_CONTROL_ENABLE) !== 0;
  }

  #control(): number {
    return this.capOffset === 0
      ? 0
      : this.#config.getUint16(this.capOffset + MsixCap.MESSAGE_CONTROL, true);
  }

  /**
   * Re-evaluates INTx after the ISR or the command register changed: Interrupt Status mirrors
   * the ISR (§4.1.4.5.1), the line is asserted unless MSI-X is on or Interrupt Disable is set.
   */
  updateLine(): void {
    const pending = this.#core.interruptStatus !== 0 && !this.msixEnabled;
    const status = this.#config.getUint16(PCI_CFG_STATUS, true);
    this.#config.setUint16(
      PCI_CFG_STATUS,
      pending ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT,
      true,
    );
    const disabled = (this.#config.getUint16(PCI_CFG_COMMAND, true) &
      PCI_COMMAND_INTX_DISABLE) !== 0;
    this.#line.setMasked(disabled);
    const fired = this.#line.source !== null && !disabled && pending;
    this.#line.update(pending);
    // The platform's handler masks INTx with the Interrupt Disable bit (uio_pci_generic).
    if (fired) this.#setIntxDisable(true);
  }

  #setIntxDisable(on: boolean): void {
    const command = this.#config.getUint16(PCI_CFG_COMMAND, true);
    this.#config.setUint16(
      PCI_CFG_COMMAND,
      on ? command | PCI_COMMAND_INTX_DISABLE : command & ~PCI_COMMAND_INTX_DISABLE,
      true,
    );
  }

  /**
   * The platform's INTx for this function, as uio_pci_generic delivers it: MSI-X disabled,
   * the line masked through Interrupt Disable when it fires, unmasked by clearing that bit.
   */
  intx(): MockInterruptSource {
    this.#setControl(0);
    this.#vectorSource?.close();
    this.#vectorSource = null;
    const known = this.#line.source;
    if (known !== null && !known.closed) return known;
    const source = new MockInterruptSource("line", 1, () => {
      this.#setIntxDisable(false);
      this.updateLine();
    });
    this.#line.source = source;
    this.#setIntxDisable(false);
    this.updateLine();
    return source;
  }

  // ---- MSI-X --------------------------------------------------------------------------------

  /**
   * The platform's MSI-X for this function, as VFIO sets it up: Enable set, every table entry
   * programmed and unmasked, one vector per entry. Throws without an MSI-X capability.
   */
  msix(): MockInterruptSource {
    if (this.tableSize === 0) {
      throw new RangeError("The mock PCI function has no MSI-X capability (option msix)");
    }
    this.#line.source?.close();
    this.#line.source = null;
    const source = this.#vectorSource !== null && !this.#vectorSource.closed
      ? this.#vectorSource
      : new MockInterruptSource("vectors", this.tableSize);
    this.#vectorSource = source;
    for (let v = 0; v < this.tableSize; v++) {
      this.#table[v * 4] = 0xfee00000; // x86 MSI address: what a platform would program
      this.#table[v * 4 + 2] = 0x4000 + v;
    }
    this.#setControl(MSIX_CONTROL_ENABLE);
    for (let v = 0; v < this.tableSize; v++) this.writeEntry(v, MsixEntry.VECTOR_CONTROL, 0);
    this.updateLine();
    return source;
  }

  #setControl(bits: number): void {
    if (this.capOffset === 0) return;
    const at = this.capOffset + MsixCap.MESSAGE_CONTROL;
    this.#config.setUint16(at, (this.tableSize - 1) | bits, true);
    this.#flushPending();
  }

  /**
   * A config-space write of `width` bytes at `offset`, done by `store`: in the MSI-X capability
   * only Message Control's Enable and Function Mask bits change; a command register write may
   * change Interrupt Disable. Either re-evaluates INTx and delivers what is no longer masked.
   */
  configWrite(offset: number, width: number, store: () => void): void {
    const cap = this.capOffset;
    const inCap = cap !== 0 && offset < cap + MSIX_CAP_SIZE && offset + width > cap;
    const before = inCap ? new Uint8Array(this.#config.buffer, cap, MSIX_CAP_SIZE).slice() : null;
    store();
    if (before !== null) {
      const at = cap + MsixCap.MESSAGE_CONTROL;
      const writable = MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASK_ALL;
      const written = this.#config.getUint16(at, true) & writable;
      new Uint8Array(this.#config.buffer, cap, MSIX_CAP_SIZE).set(before);
      const previous = this.#config.getUint16(at, true);
      this.#config.setUint16(at, (previous & ~writable) | written, true);
      this.#flushPending();
    }
    if (inCap || (offset <= PCI_CFG_COMMAND + 1 && offset + width > PCI_CFG_COMMAND)) {
      this.updateLine();
    }
  }

  /** A used-buffer or configuration interrupt from the core: INTx or the mapped vector. */
  #raise(cause: number, queue: number): void {
    if (!this.msixEnabled) {
      this.updateLine();
      return;
    }
    const vector = cause === INTERRUPT_CONFIG_CHANGE
      ? this.#configVector
      : this.#queueVectors[queue] ?? VIRTIO_MSI_NO_VECTOR;
    if (vector === VIRTIO_MSI_NO_VECTOR) return; // Unmapped: the event sends nothing.
    this.#signal(vector);
  }

  /** Sends vector `v`'s message, or sets its pending bit while it is masked. */
  #signal(v: number): void {
    const masked = (this.#control() & MSIX_CONTROL_MASK_ALL) !== 0 ||
      (this.#table[v * 4 + 3] & MSIX_ENTRY_MASKED) !== 0;
    if (masked || this.#vectorSource === null) {
      this.#pending[v] = 1;
      return;
    }
    this.#pending[v] = 0;
    this.#vectorSource.fire(1 << (v & 31));
  }

  /** Delivers pending vectors that are no longer masked. */
  #flushPending(): void {
    if (!this.msixEnabled) return;
    for (let v = 0; v < this.tableSize; v++) if (this.#pending[v] !== 0) this.#signal(v);
  }

  /** Whether vector `v`'s pending bit is set. */
  isPending(v: number): boolean {
    return this.#pending[v] === 1;
  }

  /** Reads dword `field` of table entry `v`. */
  readEntry(v: number, field: number): number {
    return this.#table[v * 4 + (field >> 2)];
  }

  /** Writes dword `field` of table entry `v`; unmasking delivers a pending message. */
  writeEntry(v: number, field: number, value: number): void {
    this.#table[v * 4 + (field >> 2)] = field === MsixEntry.VECTOR_CONTROL
      ? value & MSIX_ENTRY_MASKED
      : value >>> 0;
    if (field === MsixEntry.VECTOR_CONTROL && this.#pending[v] !== 0) this.#signal(v);
  }

  /**
   * Writes the MSI-X capability at config offset `at` (PCI Local Bus 3.0 §6.8.2: table and PBA
   * in BAR 1, as QEMU's) and BAR 1's address register; returns the offset of its next pointer.
   */
  writeCapability(at: number): number {
    if (at + MSIX_CAP_SIZE > this.#config.byteLength) {
      throw new RangeError("No room for the MSI-X capability in PCI config space");
    }
    const v = this.#config;
    v.setUint32(0x10 + 4 * MSIX_BAR, 0xfebd0000, true); // 32-bit memory BAR
    v.setUint8(at, PCI_CAP_ID_MSIX);
    v.setUint16(at + MsixCap.MESSAGE_CONTROL, this.tableSize - 1, true);
    v.setUint32(at + MsixCap.TABLE, MSIX_TABLE_OFFSET | (MSIX_BAR & MSIX_BIR_MASK), true);
    v.setUint32(at + MsixCap.PBA, MSIX_PBA_OFFSET | (MSIX_BAR & MSIX_BIR_MASK), true);
    this.capOffset = at;
    return at + 1;
  }
}

/** BAR 1 of the mock: the MSI-X table (32-bit accesses) and the read-only pending bits. */
class MsixBar implements RegisterSpace {
  readonly size = MSIX_BAR_SIZE;
  #irq: PciInterrupts;

  constructor(irq: PciInterrupts) {
    this.#irq = irq;
  }

  read32(offset: number): number {
    checkAccess(offset, 4, this.size);
    const n = this.#irq.tableSize;
    if (offset < n * MSIX_ENTRY_SIZE) {
      return this.#irq.readEntry(offset >> 4, offset & 15);
    }
    if (offset >= MSIX_PBA_OFFSET) {
      const first = (offset - MSIX_PBA_OFFSET) * 8;
      let bits = 0;
      for (let i = 0; i < 32 && first + i < n; i++) {
        if (this.#irq.isPending(first + i)) bits |= 1 << i;
      }
      return bits >>> 0;
    }
    return 0;
  }

  write32(offset: number, value: number): void {
    checkAccess(offset, 4, this.size);
    if (offset < this.#irq.tableSize * MSIX_ENTRY_SIZE) {
      this.#irq.writeEntry(offset >> 4, offset & 15, value);
    }
  }

  read8(offset: number): number {
    return this.#narrow(offset, 1);
  }
  read16(offset: number): number {
    return this.#narrow(offset, 2);
  }
  write8(offset: number): void {
    this.#narrow(offset, 1);
  }
  write16(offset: number): void {
    this.#narrow(offset, 2);
  }

  /** PCI Local Bus 3.0 §6.8.2: the table is accessed with aligned dwords (or qwords). */
  #narrow(offset: number, width: number): number {
    checkAccess(offset, width, this.size);
    throw new RangeError(
      `Cannot access the MSI-X table with a ${width * 8}-bit access at ${hex(offset)}`,
    );
  }
}
