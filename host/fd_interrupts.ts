/**
 * An {@link InterruptSource} over file descriptors the kernel makes readable when a device
 * interrupts: `/dev/uioN` (uio_pci_generic's INTx, a 4-byte event count) or one eventfd per
 * vector (VFIO, an 8-byte counter). One `poll()` over all of them plus a cancel eventfd runs as
 * a `nonblocking` FFI call, on a thread of Deno's blocking pool, so the event loop sleeps
 * undisturbed: no timer, no wake-up until the device interrupts. {@link FdInterruptSource.cancel}
 * and {@link FdInterruptSource.close} write the cancel eventfd to end a poll in flight, so a
 * process never hangs on it at exit.
 *
 * @module
 */

import type { InterruptDelivery, InterruptSource } from "../transport/interrupt_source.ts";
import { MAX_INTERRUPT_VECTORS } from "../transport/interrupt_source.ts";
import { closeFile, EFD_CLOEXEC, EFD_NONBLOCK, libc, syscallError } from "./ffi.ts";

/** `POLLIN`: data to read (asm-generic/poll.h). */
export const POLLIN = 0x001;
/** `POLLERR`. */
export const POLLERR = 0x008;
/** `POLLHUP`. */
export const POLLHUP = 0x010;
/** `POLLNVAL`: the fd is not open. */
export const POLLNVAL = 0x020;
/** Bytes of `struct pollfd { int fd; short events; short revents; }`. */
const POLLFD_SIZE = 8;

/** Options of {@link FdInterruptSource}. */
export interface FdInterruptOptions {
  /** A shared line (uio, VFIO INTx) or vectors (VFIO MSI / MSI-X). */
  delivery: InterruptDelivery;
  /** One readable fd per vector, in vector order. */
  fds: readonly number[];
  /** Bytes one read takes off an fd: 4 for uio's event count, 8 for an eventfd's counter. */
  readSize: 4 | 8;
  /** Re-enables a line the kernel masked when it fired (INTx disable bit, VFIO unmask). */
  unmask?: () => void;
  /** Releases what the fds belong to (disables VFIO's triggers, closes the fds). */
  release?: () => void;
}

/** Creates an eventfd (non-blocking, close-on-exec); throws HostError on failure. */
export function createEventFd(): number {
  const fd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw syscallError("Cannot create an eventfd");
  return fd;
}

/** Adds 1 to eventfd `fd`'s counter (makes it readable). */
export function signalEventFd(fd: number): void {
  const one = new Uint8Array(8);
  one[0] = 1;
  libc().write(fd, one, 8n);
}

/** Interrupts delivered through readable file descriptors. */
export class FdInterruptSource implements InterruptSource {
  /** A shared line or vectors. */
  readonly delivery: InterruptDelivery;
  /** One per fd. */
  readonly vectors: number;
  /** Wake-ups the kernel delivered (polls that found an fd readable). */
  delivered = 0;
  #fds: readonly number[];
  #readSize: number;
  #cancelFd: number;
  #pollfds: Uint8Array<ArrayBuffer>;
  #pollView: DataView;
  #scratch = new Uint8Array(8);
  #unmask: (() => void) | null;
  #release: (() => void) | null;
  #inFlight = false;
  #polling: Promise<void> = Promise.resolve();
  #pending = 0;
  #waiter: ((bits: number) => void) | null = null;
  #closed = false;

  /** Watches `options.fds`; see {@link FdInterruptOptions}. Needs `--allow-ffi`. */
  constructor(options: FdInterruptOptions) {
    const n = options.fds.length;
    if (n < 1 || n > MAX_INTERRUPT_VECTORS) {
      throw new RangeError(`Cannot watch ${n} interrupt fds: expected 1 to 32`);
    }
    if (options.delivery === "line" && n !== 1) {
      throw new RangeError(`An interrupt line is one fd, not ${n}`);
    }
    this.delivery = options.delivery;
    this.vectors = n;
    this.#fds = [...options.fds];
    this.#readSize = options.readSize;
    this.#unmask = options.unmask ?? null;
    this.#release = options.release ?? null;
    this.#cancelFd = createEventFd();
    this.#pollfds = new Uint8Array((n + 1) * POLLFD_SIZE);
    this.#pollView = new DataView(this.#pollfds.buffer);
    for (let i = 0; i <= n; i++) {
      this.#pollView.setInt32(i * POLLFD_SIZE, i < n ? this.#fds[i] : this.#cancelFd, true);
      this.#pollView.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
    }
  }

  /** Resolves with the vectors that fired since the last call (0 when cancelled or closed). */
  wait(): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    if (this.#pending !== 0) {
      const bits = this.#pending;
      this.#pending = 0;
      return Promise.resolve(bits);
    }
    const promise = new Promise<number>((resolve) => {
      this.#waiter = resolve;
    });
    if (!this.#inFlight) this.#polling = this.#poll();
    return promise;
  }

  /** Resolves once no poll() is in flight (after cancel() or close(): the thread is free). */
  settled(): Promise<void> {
    return this.#polling;
  }

  /** One poll() on the blocking pool; its result goes to the waiter, or is kept for the next. */
  async #poll(): Promise<void> {
    this.#inFlight = true;
    const n = this.#fds.length;
    for (let i = 0; i <= n; i++) this.#pollView.setInt16(i * POLLFD_SIZE + 6, 0, true);
    const rc = await libc().poll(this.#pollfds, BigInt(n + 1), -1);
    this.#inFlight = false;
    if (this.#closed) {
      this.#finishClose();
      return;
    }
    let bits = 0;
    let broken = false;
    if (rc > 0) {
      for (let i = 0; i <= n; i++) {
        const revents = this.#pollView.getInt16(i * POLLFD_SIZE + 6, true);
        if (revents === 0) continue;
        const fd = i < n ? this.#fds[i] : this.#cancelFd;
        if ((revents & POLLIN) !== 0) {
          // Takes the count off (uio's event count, an eventfd's counter): readable once more
          // only after the next interrupt.
          libc().read(fd, this.#scratch, BigInt(i < n ? this.#readSize : 8));
          if (i < n) bits |= 1 << i;
        } else if ((revents & (POLLERR | POLLHUP | POLLNVAL)) !== 0) {
          broken = true;
        }
      }
    }
    if (broken) {
      // An fd went bad (device removed, fd closed under us): nothing more will come.
      this.close();
      return;
    }
    if (bits !== 0) {
      this.delivered++;
      const waiter = this.#waiter;
      this.#waiter = null;
      if (waiter !== null) waiter(bits);
      else this.#pending |= bits;
    }
    // Cancelled, interrupted (EINTR) or a new waiter came meanwhile: poll again for it.
    if (this.#waiter !== null && !this.#inFlight) await this.#poll();
  }

  /** Ends a pending wait with 0 and wakes the poll thread so it does not linger. */
  cancel(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    if (waiter !== null) waiter(0);
    if (this.#inFlight) signalEventFd(this.#cancelFd);
  }

  /** Re-enables a line the kernel masked. */
  unmask(): void {
    if (!this.#closed) this.#unmask?.();
  }

  /** Ends every wait with 0 and releases the fds (once the poll thread has returned). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.(0);
    if (this.#inFlight) signalEventFd(this.#cancelFd);
    else this.#finishClose();
  }

  /** Whether {@link FdInterruptSource.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #finishClose(): void {
    if (this.#cancelFd < 0) return;
    closeFile(this.#cancelFd);
    this.#cancelFd = -1;
    this.#release?.();
  }
}
