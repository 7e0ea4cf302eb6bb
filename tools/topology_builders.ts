/**
 * Builders for topology tests: VIOT tables from the ACPI 6.4 §5.2.30 layout, flattened device
 * tree blobs, a draft-layout config space for the built-in topology and a fake transport (the
 * fuzz targets of tools/fuzz/targets_topology.ts start from these).
 *
 * @module
 */

import type { Transport } from "../transport/transport.ts";

// ---------------------------------------------------------------- VIOT

/** A VIOT node header followed by `body` (the 4-byte header is written here). */
function viotNode(type: number, length: number, fill: (view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint16(2, length, true);
  fill(view);
  return bytes;
}

/** PCI range node (type 1, 24 bytes). */
export function viotPciRange(
  r: {
    endpointStart: number;
    segmentStart?: number;
    segmentEnd?: number;
    bdfStart: number;
    bdfEnd: number;
    outputNode: number;
  },
): Uint8Array {
  return viotNode(1, 24, (v) => {
    v.setUint32(4, r.endpointStart, true);
    v.setUint16(8, r.segmentStart ?? 0, true);
    v.setUint16(10, r.segmentEnd ?? 0, true);
    v.setUint16(12, r.bdfStart, true);
    v.setUint16(14, r.bdfEnd, true);
    v.setUint16(16, r.outputNode, true);
  });
}

/** Single MMIO endpoint node (type 2, 24 bytes). */
export function viotMmioEndpoint(
  r: { endpoint: number; baseAddress: bigint; outputNode: number },
): Uint8Array {
  return viotNode(2, 24, (v) => {
    v.setUint32(4, r.endpoint, true);
    v.setBigUint64(8, r.baseAddress, true);
    v.setUint16(16, r.outputNode, true);
  });
}

/** virtio-pci IOMMU node (type 3, 16 bytes). */
export function viotPciIommu(r: { segment?: number; bdf: number }): Uint8Array {
  return viotNode(3, 16, (v) => {
    v.setUint16(4, r.segment ?? 0, true);
    v.setUint16(6, r.bdf, true);
  });
}

/** virtio-mmio IOMMU node (type 4, 16 bytes). */
export function viotMmioIommu(r: { baseAddress: bigint }): Uint8Array {
  return viotNode(4, 16, (v) => v.setBigUint64(8, r.baseAddress, true));
}

/** Recomputes the ACPI checksum byte (offset 9) over the `length` field's bytes. */
export function fixChecksum(table: Uint8Array): Uint8Array {
  const length = Math.min(
    new DataView(table.buffer, table.byteOffset).getUint32(4, true),
    table.length,
  );
  table[9] = 0;
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + table[i]) & 0xff;
  table[9] = (256 - sum) & 0xff;
  return table;
}

/** A whole VIOT: 48-byte header, then the nodes at offset 48 (unless `nodeOffset` says else). */
export function buildViot(
  nodes: Uint8Array[],
  options: { nodeCount?: number; nodeOffset?: number } = {},
): Uint8Array {
  const bodyLength = nodes.reduce((n, node) => n + node.length, 0);
  const table = new Uint8Array(48 + bodyLength);
  const view = new DataView(table.buffer);
  table.set([..."VIOT"].map((c) => c.charCodeAt(0)), 0);
  view.setUint32(4, table.length, true);
  table[8] = 0; // revision, as QEMU writes it
  table.set([..."BOCHS "].map((c) => c.charCodeAt(0)), 10);
  table.set([..."BXPC    "].map((c) => c.charCodeAt(0)), 16);
  view.setUint32(24, 1, true);
  table.set([..."BXPC"].map((c) => c.charCodeAt(0)), 28);
  view.setUint32(32, 1, true);
  view.setUint16(36, options.nodeCount ?? nodes.length, true);
  view.setUint16(38, options.nodeOffset ?? 48, true);
  let at = 48;
  for (const node of nodes) {
    table.set(node, at);
    at += node.length;
  }
  return fixChecksum(table);
}

/**
 * QEMU's default q35 VIOT (88 bytes, qemu-guest.md): a virtio-pci IOMMU node at BDF 0x10
 * (00:02.0) at offset 48, then one PCI range for root bus 0 (BDF 0x0000..0x00ff, endpoint_start
 * 0) whose output node is the IOMMU; node_count counts both.
 */
export function qemuQ35Viot(): Uint8Array {
  return buildViot([
    viotPciIommu({ bdf: 0x10 }),
    viotPciRange({ endpointStart: 0, bdfStart: 0x0000, bdfEnd: 0x00ff, outputNode: 48 }),
  ]);
}

// ---------------------------------------------------------------- FDT

/** Builds a flattened device tree blob (version 17) token by token. */
export class FdtBuilder {
  #struct: number[] = [];
  #strings: number[] = [];
  #names = new Map<string, number>();

  /** FDT_BEGIN_NODE with `name`. */
  begin(name: string): this {
    this.#word(1);
    for (const c of name) this.#struct.push(c.charCodeAt(0));
    this.#struct.push(0);
    this.#pad();
    return this;
  }

  /** FDT_END_NODE. */
  end(): this {
    this.#word(2);
    return this;
  }

  /** FDT_PROP with raw bytes. */
  prop(name: string, value: Uint8Array | number[]): this {
    let offset = this.#names.get(name);
    if (offset === undefined) {
      offset = this.#strings.length;
      this.#names.set(name, offset);
      for (const c of name) this.#strings.push(c.charCodeAt(0));
      this.#strings.push(0);
    }
    this.#word(3);
    this.#word(value.length);
    this.#word(offset);
    for (const b of value) this.#struct.push(b);
    this.#pad();
    return this;
  }

  /** A property of big-endian u32 cells. */
  cells(name: string, ...values: number[]): this {
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setUint32(i * 4, v));
    return this.prop(name, bytes);
  }

  /** A string-list property. */
  str(name: string, ...values: string[]): this {
    const bytes: number[] = [];
    for (const v of values) {
      for (const c of v) bytes.push(c.charCodeAt(0));
      bytes.push(0);
    }
    return this.prop(name, bytes);
  }

  /** FDT_NOP. */
  nop(): this {
    this.#word(4);
    return this;
  }

  /** Appends FDT_END and returns the blob. */
  finish(options: { end?: boolean } = {}): Uint8Array {
    if (options.end ?? true) this.#word(9);
    const headerSize = 40;
    const rsvmap = 16; // one empty reservation entry
    const structOff = headerSize + rsvmap;
    const stringsOff = structOff + this.#struct.length;
    const total = stringsOff + this.#strings.length;
    const blob = new Uint8Array(total);
    const view = new DataView(blob.buffer);
    view.setUint32(0, 0xd00dfeed);
    view.setUint32(4, total);
    view.setUint32(8, structOff);
    view.setUint32(12, stringsOff);
    view.setUint32(16, headerSize);
    view.setUint32(20, 17);
    view.setUint32(24, 16);
    view.setUint32(28, 0);
    view.setUint32(32, this.#strings.length);
    view.setUint32(36, this.#struct.length);
    blob.set(this.#struct, structOff);
    blob.set(this.#strings, stringsOff);
    return blob;
  }

  #word(value: number): void {
    this.#struct.push(
      (value >>> 24) & 0xff,
      (value >>> 16) & 0xff,
      (value >>> 8) & 0xff,
      value & 0xff,
    );
  }

  #pad(): void {
    while (this.#struct.length % 4 !== 0) this.#struct.push(0);
  }
}

/**
 * An arm64 `virt`-like tree: a virtio-mmio IOMMU (phandle 1, #iommu-cells 1), a PCI host bridge
 * with `iommu-map = <0x0 &viommu 0x0 0x8>, <0x9 &viommu 0x9 0xfff7>` (the IOMMU at RID 8 is
 * left out), and a platform device with `iommus = <&viommu 0x20>`.
 */
export function virtLikeFdt(): Uint8Array {
  return new FdtBuilder()
    .begin("")
    .cells("#address-cells", 2)
    .cells("#size-cells", 2)
    .begin("virtio_mmio@a000000")
    .str("compatible", "virtio,mmio")
    .cells("reg", 0, 0x0a000000, 0, 0x200)
    .cells("#iommu-cells", 1)
    .cells("phandle", 1)
    .end()
    .begin("pcie@10000000")
    .str("compatible", "pci-host-ecam-generic")
    .str("device_type", "pci")
    .cells("linux,pci-domain", 0)
    .cells("iommu-map", 0x0, 1, 0x0, 0x8, 0x9, 1, 0x9, 0xfff7)
    .end()
    .begin("ethernet@9000000")
    .cells("reg", 0, 0x09000000, 0, 0x1000)
    .cells("iommus", 1, 0x20)
    .end()
    .end()
    .finish();
}

// ---------------------------------------------------------------- built-in topology

/** A little-endian config space that only allows aligned 32-bit reads inside its window. */
export class ConfigSpace {
  /** The bytes. */
  readonly bytes: Uint8Array;
  /** Offsets read, in order. */
  readonly reads: number[] = [];
  #view: DataView;

  /** Creates a zeroed window of `size` bytes. */
  constructor(size = 0x1000) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }

  /** Writes a u32. */
  set32(offset: number, value: number): this {
    this.#view.setUint32(offset, value >>> 0, true);
    return this;
  }

  /** Writes a u16. */
  set16(offset: number, value: number): this {
    this.#view.setUint16(offset, value, true);
    return this;
  }

  /** The 32-bit read the driver is allowed; anything else is a test failure. */
  read32(offset: number): number {
    if (
      !Number.isInteger(offset) || offset % 4 !== 0 || offset < 0 || offset + 4 > this.bytes.length
    ) {
      throw new RangeError(`bad config read at ${offset}`);
    }
    this.reads.push(offset);
    return this.#view.getUint32(offset, true);
  }

  /** Draft `topo_config` at 36/40/44. */
  topo(offset: number, numItems: number, itemLength: number): this {
    return this.set32(36, offset).set32(40, numItems).set32(44, itemLength);
  }

  /** A PCI_RANGE item at `at`. */
  pciRange(
    at: number,
    r: { hierarchy?: number; start: number; end: number; endpointStart: number },
  ): this {
    return this.set16(at, 1).set16(at + 2, r.hierarchy ?? 0).set16(at + 4, r.start).set16(
      at + 6,
      r.end,
    )
      .set32(at + 8, r.endpointStart);
  }

  /** An ENDPOINT item at `at`. */
  endpoint(at: number, r: { endpoint: number; address: bigint }): this {
    this.set16(at, 2).set16(at + 2, 0).set32(at + 4, r.endpoint);
    this.#view.setBigUint64(at + 8, r.address, true);
    return this;
  }
}

/** A fake transport over a {@link ConfigSpace} that records status writes. */
export class FakeTransport implements Transport {
  /** Kind. */
  readonly kind = "pci" as const;
  /** Device ID. */
  readonly deviceId: number = 23;
  /** Status writes in order. */
  readonly statusWrites: number[] = [];
  /** Offered features. */
  features: bigint;
  /** Config generation, bumped by `bumpEvery` reads if set. */
  generation = 0;
  /** Bump the generation on every config read (a device whose config never settles). */
  unstable = false;
  /** Reads of status that still return non-zero after a reset. */
  resetLag = 0;
  #status = 0;
  #lag = 0;
  #config: ConfigSpace;

  /** Creates the transport. */
  constructor(config: ConfigSpace, features: bigint) {
    this.#config = config;
    this.features = features;
  }

  /** Status. */
  getStatus(): number {
    if (this.#lag > 0) {
      this.#lag--;
      return 0x80;
    }
    return this.#status;
  }
  /** Status write. */
  setStatus(status: number): void {
    this.statusWrites.push(status);
    this.#status = status;
    if (status === 0) this.#lag = this.resetLag;
  }
  /** Features. */
  readDeviceFeatures(): bigint {
    return this.features;
  }
  /** Unused. */
  writeDriverFeatures(): void {
    throw new Error("the early probe must not negotiate features");
  }
  /** Generation. */
  configGeneration(): number {
    return this.generation;
  }
  /** Not allowed. */
  readConfig8(): number {
    throw new Error("8-bit config read");
  }
  /** Not allowed. */
  readConfig16(): number {
    throw new Error("16-bit config read");
  }
  /** 32-bit config read. */
  readConfig32(offset: number): number {
    if (this.unstable) this.generation++;
    return this.#config.read32(offset);
  }
  /** Not allowed. */
  writeConfig8(): void {
    throw new Error("config write");
  }
  /** Unused. */
  maxQueueSize(): number {
    return 0;
  }
  /** Unused. */
  enableQueue(): void {
    throw new Error("the early probe must not enable queues");
  }
  /** Unused. */
  notify(): void {}
  /** Unused. */
  resetQueue(): void {
    throw new Error("the early probe must not reset queues");
  }
  /** Unused. */
  queueResetPending(): boolean {
    return false;
  }
  /** Unused. */
  queueEnabled(): boolean {
    return false;
  }
  /** Unused. */
  takeInterrupt(): number {
    return 0;
  }
}
