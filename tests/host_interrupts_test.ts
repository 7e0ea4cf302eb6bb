/**
 * {@link FdInterruptSource} on the host, with eventfds standing in for a device's interrupt
 * fds (uio's /dev/uioN and VFIO's eventfds behave the same to poll()): a wait resolves when an
 * fd becomes readable, with the vector bits; the count is taken off so it does not fire twice;
 * cancel() and close() end a wait and free the poll thread. Needs --allow-ffi.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createEventFd, FdInterruptSource, signalEventFd } from "../host/fd_interrupts.ts";
import { closeFile } from "../host/ffi.ts";
import { MmioTransport } from "../transport/mmio.ts";
import { SimulatedMemory } from "../transport/memory.ts";
import { VirtioInterrupts } from "../transport/interrupts.ts";
import { MmioDevice } from "../mock/mmio_device.ts";
import { EchoDevice } from "./_echo_device.ts";

/** Two eventfds as two vectors; `released` counts release() calls. */
function vectors(): { source: FdInterruptSource; fds: number[]; released: () => number } {
  const fds = [createEventFd(), createEventFd()];
  let released = 0;
  const source = new FdInterruptSource({
    delivery: "vectors",
    fds,
    readSize: 8,
    release: () => {
      released++;
      for (const fd of fds) closeFile(fd);
    },
  });
  return { source, fds, released: () => released };
}

Deno.test("FdInterruptSource.wait() resolves with the bit of the fd that became readable", async () => {
  const { source, fds } = vectors();
  const wait = source.wait();
  signalEventFd(fds[1]);
  assert.equal(await wait, 1 << 1);
  // The counter was read off: the next wait does not resolve by itself.
  const next = source.wait();
  const raced = await Promise.race([next, new Promise((r) => setTimeout(() => r("none"), 30))]);
  assert.equal(raced, "none");
  signalEventFd(fds[0]);
  signalEventFd(fds[1]);
  // The poll thread may wake between the two writes: then the second comes with the next wait.
  let bits = await next;
  if (bits !== 0b11) bits |= await source.wait();
  assert.equal(bits, 0b11);
  source.close();
  await source.settled();
});

Deno.test("FdInterruptSource keeps what fired with no waiter for the next wait()", async () => {
  const { source, fds } = vectors();
  const first = source.wait();
  source.cancel();
  assert.equal(await first, 0, "cancel() ends the wait with 0");
  await source.settled();
  signalEventFd(fds[0]);
  assert.equal(await source.wait(), 1);
  source.close();
  await source.settled();
});

Deno.test("FdInterruptSource.close() ends a pending wait, frees the thread, releases once", async () => {
  const { source, released } = vectors();
  const wait = source.wait();
  source.close();
  assert.equal(await wait, 0);
  await source.settled();
  assert.equal(released(), 1);
  assert.equal(await source.wait(), 0, "closed: waits resolve 0 at once");
  source.close();
  assert.equal(released(), 1);
});

Deno.test("FdInterruptSource refuses a line of several fds and an empty set", () => {
  const fd = createEventFd();
  assert.throws(
    () => new FdInterruptSource({ delivery: "line", fds: [fd, fd], readSize: 8 }),
    RangeError,
  );
  assert.throws(
    () => new FdInterruptSource({ delivery: "vectors", fds: [], readSize: 8 }),
    RangeError,
  );
  closeFile(fd);
});

Deno.test("FdInterruptSource as a line: VirtioInterrupts reads the status and unmasks", async () => {
  const fd = createEventFd();
  let unmasked = 0;
  const source = new FdInterruptSource({
    delivery: "line",
    fds: [fd],
    readSize: 8,
    unmask: () => unmasked++,
    release: () => closeFile(fd),
  });
  const regs = new MmioDevice(new EchoDevice(), new SimulatedMemory());
  const t = MmioTransport.create(regs, { interrupts: source });
  const irq = new VirtioInterrupts(t, source);
  const next = irq.next();
  signalEventFd(fd); // a line that fired with nothing in InterruptStatus: spurious
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(irq.stats.spurious, 1);
  assert.equal(unmasked, 1);
  irq.stop();
  assert.equal(await next, 0);
  source.close();
  await source.settled();
});
