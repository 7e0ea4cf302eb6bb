/**
 * QEMU's `edu` test device (QEMU docs/specs/edu.rst, hw/misc/edu.c): its PCI IDs and BAR0
 * registers. Not a virtio device: the DMA engine the conformance suite and the real-device
 * tests put behind the virtio-iommu as the oracle of translation. All registers are le32; the
 * 64-bit ones are written as two halves, low first.
 *
 * @module
 */

/** edu's PCI vendor ID. */
export const EDU_VENDOR = 0x1234;
/** edu's PCI device ID. */
export const EDU_DEVICE = 0x11e8;

/** BAR0: liveness check; reads back the bitwise inverse of what was written. */
export const EDU_ALIVE = 0x04;
/** BAR0: interrupt status (bit 8: DMA done). */
export const EDU_IRQ_STATUS = 0x24;
/** BAR0: raise an interrupt with this status. */
export const EDU_IRQ_RAISE = 0x60;
/** BAR0: acknowledge (clear) these status bits. */
export const EDU_IRQ_ACK = 0x64;
/** BAR0: DMA source address (64-bit). */
export const EDU_DMA_SRC = 0x80;
/** BAR0: DMA destination address (64-bit). */
export const EDU_DMA_DST = 0x88;
/** BAR0: DMA byte count (64-bit). */
export const EDU_DMA_COUNT = 0x90;
/** BAR0: DMA command. */
export const EDU_DMA_CMD = 0x98;

/** DMA command bit 0: start; reads back 1 while the DMA runs. */
export const EDU_CMD_RUN = 0x1;
/** DMA command bit 1: direction, 1 = edu's buffer → RAM, 0 = RAM → edu's buffer. */
export const EDU_CMD_TO_RAM = 0x2;
/** DMA command bit 2: raise interrupt 0x100 when the DMA is done. */
export const EDU_CMD_IRQ = 0x4;

/** Where edu's internal buffer sits in its own DMA address space. */
export const EDU_BUFFER = 0x40000;
/** Bytes in edu's buffer. */
export const EDU_BUFFER_SIZE = 4096;
/** edu's default DMA mask: it reaches addresses below 2^28. */
export const EDU_ADDRESS_LIMIT: bigint = 1n << 28n;
/** edu starts a DMA this long after the command (its timer, hw/misc/edu.c). */
export const EDU_DMA_DELAY_MS = 100;
