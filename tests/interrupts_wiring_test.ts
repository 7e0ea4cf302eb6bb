/** Interrupts on every wiring with suppression (§2.7.7, §2.7.10); the MMIO line and PCI INTx. */

import assert from "node:assert/strict";
import {
  type InterruptSource,
  NOTIFY_CONFIG_CHANGE,
  NOTIFY_USED_BUFFER,
} from "../transport/interrupts.ts";
import { PCI_COMMAND_INTX_DISABLE, PCI_STATUS_INTERRUPT } from "../spec/interrupts.ts";
import { rig, roundTrip, type Wiring } from "./_interrupts.ts";

const WIRINGS: readonly Wiring[] = ["mmio", "intx", "msix"];

/** Resolves with the source's next wake-up, or "none" when nothing fires within a tick. */
async function nextWake(source: InterruptSource): Promise<number | "none"> {
  const wake = source.wait();
  const none = new Promise<"none">((resolve) => setTimeout(() => resolve("none"), 5));
  const result = await Promise.race([wake, none]);
  if (result === "none") source.cancel();
  return result;
}

for (const wiring of WIRINGS) {
  for (const eventIdx of [false, true]) {
    const name = `${wiring}${eventIdx ? " with EVENT_IDX" : ""}`;

    Deno.test(`${name}: no interrupt is raised while the driver suppresses them`, async () => {
      const r = rig(wiring, eventIdx);
      assert.equal(r.vq.setInterrupts(false), true);
      if (eventIdx) {
        // With EVENT_IDX the device notifies the first used buffer of a fresh queue whatever
        // used_event says (QEMU's signalled_used_valid); the driver tolerates it (§2.7.10).
        roundTrip(r);
        r.vq.popUsed();
        assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
      }
      const before = r.core.interruptCount;
      const fired = r.source.fired;
      for (let i = 0; i < 3; i++) {
        roundTrip(r);
        r.vq.popUsed();
      }
      assert.equal(r.core.interruptCount, before, "the device saw suppression each time");
      assert.equal(r.source.fired, fired);
      assert.equal(await nextWake(r.source), "none");
      assert.deepEqual(r.core.violations, []);
    });

    Deno.test(`${name}: every answer interrupts while enabled, none is lost`, async () => {
      const r = rig(wiring, eventIdx);
      assert.equal(r.vq.setInterrupts(true), true, "nothing used yet");
      for (let i = 0; i < 4; i++) {
        const head = roundTrip(r);
        const bits = await r.irq.next();
        assert.equal(bits, NOTIFY_USED_BUFFER, `round ${i}`);
        assert.equal(r.vq.popUsed(), head);
      }
      assert.equal(r.core.interruptCount, 4);
      assert.equal(r.irq.stats.usedBuffer, 4);
      assert.equal(r.irq.stats.spurious, 0);
      assert.deepEqual(r.core.violations, []);
    });

    Deno.test(`${name}: setInterrupts(true) reports an answer that came while suppressed`, async () => {
      const r = rig(wiring, eventIdx);
      r.vq.setInterrupts(false);
      if (eventIdx) {
        roundTrip(r); // the fresh queue's one notification (see above)
        r.vq.popUsed();
        await r.irq.next();
      }
      const fired = r.source.fired;
      const head = roundTrip(r);
      // The answer raised no interrupt: a driver that now just enables and sleeps would hang.
      assert.equal(r.source.fired, fired);
      assert.equal(r.vq.setInterrupts(true), false, "poll before sleeping");
      assert.equal(r.vq.popUsed(), head);
      assert.equal(r.vq.setInterrupts(true), true);
      roundTrip(r);
      assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
    });

    Deno.test(`${name}: a configuration change comes as NOTIFY_CONFIG_CHANGE`, async () => {
      const r = rig(wiring, eventIdx);
      r.core.configChanged();
      assert.equal(await r.irq.next(), NOTIFY_CONFIG_CHANGE);
      assert.equal(r.irq.stats.configChange, 1);
    });
  }
}

Deno.test("MMIO: the line stays masked until unmasked, and InterruptACK is written", async () => {
  const r = rig("mmio", false);
  r.vq.setInterrupts(true);
  roundTrip(r);
  r.core.configChanged();
  // Two events, one line: one wake-up, both bits in InterruptStatus, both acknowledged.
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER | NOTIFY_CONFIG_CHANGE);
  assert.equal(r.source.fired, 1);
  assert.equal(r.core.interruptStatus, 0, "acknowledged through InterruptACK");
  assert.equal(await nextWake(r.source), "none");
});

Deno.test("PCI INTx: Interrupt Status mirrors the ISR, Interrupt Disable masks until unmask", async () => {
  const r = rig("intx", false);
  const fn = r.fn!;
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(fn.config.read16(0x06) & PCI_STATUS_INTERRUPT, PCI_STATUS_INTERRUPT);
  assert.equal(
    fn.config.read16(0x04) & PCI_COMMAND_INTX_DISABLE,
    PCI_COMMAND_INTX_DISABLE,
    "the platform masked INTx when it fired (as uio_pci_generic does)",
  );
  r.vq.popUsed();
  roundTrip(r); // ISR still set, line masked: no second interrupt yet
  assert.equal(r.source.fired, 1);
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER); // ISR read, then unmask
  assert.equal(fn.config.read16(0x06) & PCI_STATUS_INTERRUPT, 0, "the ISR read deasserts");
  assert.equal(fn.config.read16(0x04) & PCI_COMMAND_INTX_DISABLE, 0, "unmasked");
  assert.equal(await nextWake(r.source), "none", "both answers were in the one ISR read");
});

Deno.test("PCI INTx: unmasking with the ISR still set fires again (level-triggered)", async () => {
  const r = rig("intx", false);
  r.vq.setInterrupts(true);
  roundTrip(r);
  assert.equal(await r.source.wait(), 1);
  // Unmask without reading the ISR: the line is still asserted and fires at once.
  r.source.unmask();
  assert.equal(r.source.fired, 2);
  assert.equal(await r.irq.next(), NOTIFY_USED_BUFFER);
});

Deno.test("PCI INTx: an interrupt with ISR 0 is counted spurious and waited past", async () => {
  const r = rig("intx", false);
  r.source.fire(1); // another function on the shared line
  r.vq.setInterrupts(true);
  const pending = r.irq.next();
  await new Promise((resolve) => setTimeout(resolve, 0));
  roundTrip(r);
  assert.equal(await pending, NOTIFY_USED_BUFFER);
  assert.equal(r.irq.stats.spurious, 1);
});
