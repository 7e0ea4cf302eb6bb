/**
 * A device model that forwards everything to another one: the base of wrappers that change a
 * little of a device's behaviour (fault injection, scripted answers) and leave the rest alone.
 *
 * @module
 */

import type { DeviceContext, DeviceModel } from "./device.ts";

/** Forwards every {@link DeviceModel} call to `inner`; subclasses override what they change. */
export class ForwardingDevice<M extends DeviceModel = DeviceModel> implements DeviceModel {
  /** The wrapped model. */
  readonly inner: M;
  #context: DeviceContext | null = null;

  /** Wraps `inner`. */
  constructor(inner: M) {
    this.inner = inner;
  }

  /** The context the harness plugged the device into, or null before that. */
  get context(): DeviceContext | null {
    return this.#context;
  }

  /** Virtio device ID of the inner model. */
  get deviceId(): number {
    return this.inner.deviceId;
  }
  /** Features of the inner model. */
  get features(): bigint {
    return this.inner.features;
  }
  /** Queue sizes of the inner model. */
  get queueSizes(): readonly number[] {
    return this.inner.queueSizes;
  }
  /** Config size of the inner model. */
  get configSize(): number {
    return this.inner.configSize;
  }
  /** Whether the inner model processes notifications before DRIVER_OK. */
  get notifyBeforeDriverOk(): boolean {
    return this.inner.notifyBeforeDriverOk === true;
  }

  /** Keeps the context and plugs the inner model into it. */
  attach(context: DeviceContext): void {
    this.#context = context;
    this.inner.attach(context);
  }
  /** Forwards. */
  readConfig(offset: number, width: number): number {
    return this.inner.readConfig(offset, width);
  }
  /** Forwards. */
  writeConfig(offset: number, width: number, value: number): void {
    this.inner.writeConfig(offset, width, value);
  }
  /** Forwards. */
  notify(index: number): void {
    this.inner.notify(index);
  }
  /** Forwards. */
  reset(): void {
    this.inner.reset();
  }
  /** Forwards (when the inner model cares about queue resets). */
  resetQueue(index: number): void {
    this.inner.resetQueue?.(index);
  }
}
