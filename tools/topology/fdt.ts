/** A flattened device tree builder and an arm64 virt-like tree, for topology tests. */

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
