/**
 * Model-based testing of the virtio-iommu driver with fast-check's `commands` API: random
 * sequences of attach/detach/map/unmap/probe/translate/reset run against the driver on the mock
 * device ({@link System}) AND against the {@link ReferenceModel}; after every step the outcome,
 * the pending count and both sides' mappings are compared. fast-check shrinks a failing
 * sequence to a short one and reports it with the seed and path that replay it.
 *
 * @module
 */

import fc from "fast-check";
import { hex } from "../../util/hex.ts";
import { VirtioIommu } from "../../driver/iommu/device.ts";
import { IommuError } from "../../driver/iommu/errors.ts";
import type { RingLayout } from "../../driver/virtio/virtqueue.ts";
import { SimulatedMemory } from "../../transport/memory.ts";
import { MockIommuDevice } from "../../mock/iommu/device.ts";
import { MmioDevice } from "../../mock/mmio_device.ts";
import { MmioTransport } from "../../transport/mmio.ts";
import {
  BASE,
  DOMAIN_END,
  DOMAIN_START,
  ENDPOINTS,
  formatOp,
  mapText,
  MOCK_OPTIONS,
  type Op,
  PAGE,
  PHYS_BASE,
  ReferenceModel,
  regionText,
  UNKNOWN_ENDPOINT,
} from "./reference_model.ts";

export { formatOp, type Op, ReferenceModel } from "./reference_model.ts";

/** The driver on the mock, driven by the same ops. */
export class System {
  #iommu: VirtioIommu;
  #device: MockIommuDevice;

  private constructor(iommu: VirtioIommu, device: MockIommuDevice) {
    this.#iommu = iommu;
    this.#device = device;
  }

  /** Creates the driver on a fresh mock over MMIO, with the `ring` layout (default split). */
  static async create(ring: RingLayout = "split"): Promise<System> {
    const memory = new SimulatedMemory();
    const device = new MockIommuDevice({ ...MOCK_OPTIONS, packed: ring === "packed" });
    const transport = MmioTransport.create(new MmioDevice(device, memory));
    const iommu = await VirtioIommu.create(transport, memory, {
      maxQueueSize: 8,
      timeoutMs: 1000,
      spinMs: 0,
    });
    return new System(iommu, device);
  }

  /** Applies `op` and returns its outcome, in the model's words. */
  async apply(op: Op): Promise<string> {
    const io = this.#iommu;
    try {
      switch (op.k) {
        case "attach":
          await io.attach(op.d, op.ep);
          return "OK";
        case "detach":
          await io.detach(op.d, op.ep);
          return "OK";
        case "map":
          await io.map(op.d, op.iova, op.phys, op.size, op.flags);
          return "OK";
        case "unmap":
          await io.unmap(op.d, op.iova, op.size);
          return "OK";
        case "probe": {
          const r = await io.probe(op.ep);
          return "OK " + JSON.stringify(r.regions.map(regionText));
        }
        case "translate": {
          const t = this.#device.translate(op.ep, op.iova, op.access);
          io.takeFaults(); // keep the event queue drained
          return t.ok ? `ok ${hex(t.address)}` : `fault ${t.fault.reason}`;
        }
        case "reset":
          await io.reset();
          return "OK";
      }
    } catch (e) {
      if (e instanceof IommuError) return e.status;
      return `THREW ${e instanceof Error ? e.name + ": " + e.message : String(e)}`;
    }
  }

  /** Domain → mappings as the driver remembers them. */
  driverState(): string {
    const parts: string[] = [];
    for (const d of this.#iommu.domains().map((x) => x.id).sort((a, b) => a - b)) {
      const maps = this.#iommu.mappings(d);
      if (maps.length === 0) continue;
      parts.push(
        `${d}: ${
          maps.map((m) => mapText({ start: m.iova, end: m.last, phys: m.phys, flags: m.flags }))
            .join(" ")
        }`,
      );
    }
    return parts.join("; ");
  }

  /** Domain → mappings as the device holds them. */
  deviceState(): string {
    const parts: string[] = [];
    for (const d of this.#device.domains().map((x) => x.id)) {
      const maps = this.#device.mappings(d);
      if (maps.length === 0) continue;
      parts.push(
        `${d}: ${
          maps.map((m) => mapText({ start: m.start, end: m.end, phys: m.phys, flags: m.flags }))
            .join(" ")
        }`,
      );
    }
    return parts.join("; ");
  }

  /** Requests still pending (must be 0 between ops). */
  get pending(): number {
    return this.#iommu.pending;
  }

  /** Closes the driver. */
  close(): Promise<void> {
    return this.#iommu.close();
  }
}

/** Domains: mostly in range, 5 % just outside it (0 and 5). */
const domainArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 19, arbitrary: fc.constantFrom(1, 1, 1, 2, 2, 3, 4) },
  { weight: 1, arbitrary: fc.constantFrom(DOMAIN_START - 1, DOMAIN_END + 1) },
);
/** Endpoints: mostly known to the device, 5 % unknown. */
const endpointArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 19, arbitrary: fc.constantFrom(...ENDPOINTS) },
  { weight: 1, arbitrary: fc.constant(UNKNOWN_ENDPOINT) },
);
const page = (n: number): bigint => BASE + BigInt(n) * PAGE;

/**
 * One op, weighted as the hand-written generator was (attach 20, detach 8, map 30, unmap 15,
 * probe 5, translate 19, reset 3 in 100); a few MAPs are misaligned or carry bad flags.
 */
export const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 20,
    arbitrary: fc.record({ k: fc.constant("attach" as const), d: domainArb, ep: endpointArb }),
  },
  {
    weight: 8,
    arbitrary: fc.record({ k: fc.constant("detach" as const), d: domainArb, ep: endpointArb }),
  },
  {
    weight: 30,
    arbitrary: fc.record({
      k: fc.constant("map" as const),
      d: domainArb,
      iova: fc.tuple(
        fc.nat(15),
        fc.oneof({ weight: 32, arbitrary: fc.constant(0n) }, {
          weight: 1,
          arbitrary: fc.constant(0x800n),
        }),
      ).map(([n, off]) => page(n) + off),
      phys: fc.nat(63).map((n) => PHYS_BASE + BigInt(n) * PAGE),
      size: fc.integer({ min: 1, max: 4 }).map((n) => BigInt(n) * PAGE),
      flags: fc.constantFrom(1, 2, 3, 3, 3, 0, 7, 0x10),
    }),
  },
  {
    weight: 15,
    arbitrary: fc.record({
      k: fc.constant("unmap" as const),
      d: domainArb,
      iova: fc.nat(15).map(page),
      size: fc.integer({ min: 1, max: 6 }).map((n) => BigInt(n) * PAGE),
    }),
  },
  { weight: 5, arbitrary: fc.record({ k: fc.constant("probe" as const), ep: endpointArb }) },
  {
    weight: 19,
    arbitrary: fc.record({
      k: fc.constant("translate" as const),
      ep: endpointArb,
      iova: fc.tuple(fc.nat(16), fc.nat(0xfff)).map(([n, off]) => page(n) + BigInt(off)),
      access: fc.constantFrom("read" as const, "write" as const),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ k: "reset" as const }) },
);

/** One op as a fast-check command: applied to both sides, outcomes and states compared. */
class OpCommand implements fc.AsyncCommand<ReferenceModel, System> {
  readonly op: Op;

  constructor(op: Op) {
    this.op = op;
  }

  /** Ops run so far, every sequence (for the figures). */
  static ran = 0;

  check(): boolean {
    return true;
  }

  async run(model: ReferenceModel, system: System): Promise<void> {
    OpCommand.ran++;
    const expected = model.apply(this.op);
    const actual = await system.apply(this.op);
    diverged("outcome", expected, actual);
    diverged("pending requests", "0", String(system.pending));
    diverged("driver mappings", model.driverState(), system.driverState());
    diverged("device mappings", model.deviceState(), system.deviceState());
  }

  toString(): string {
    return formatOp(this.op);
  }
}

function diverged(what: string, expected: string, actual: string): void {
  if (expected !== actual) {
    throw new Error(`${what} diverged:\n  expected ${expected}\n  actual   ${actual}`);
  }
}

/** Sequences of up to `maxCommands` ops (default 24), lengths spread over the whole range. */
export function sequences(
  maxCommands = 24,
  size: fc.SizeForArbitrary = "max",
  replayPath?: string,
): fc.Arbitrary<Iterable<fc.AsyncCommand<ReferenceModel, System>>> {
  return fc.commands([opArbitrary.map((op) => new OpCommand(op))], {
    maxCommands,
    size,
    replayPath,
  });
}

/**
 * The property: every sequence gives the same outcomes on the driver as on the model made by
 * `makeModel` (a subclass lets a test check that a wrong model is caught and shrunk).
 */
export function modelProperty(
  makeModel: () => ReferenceModel = () => new ReferenceModel(),
  replayPath?: string,
  ring: RingLayout = "split",
): fc.IAsyncPropertyWithHooks<[Iterable<fc.AsyncCommand<ReferenceModel, System>>]> {
  return fc.asyncProperty(sequences(24, "max", replayPath), async (commands) => {
    const system = await System.create(ring);
    try {
      await fc.asyncModelRun(() => ({ model: makeModel(), real: system }), commands);
    } finally {
      await system.close();
    }
  });
}

/** Figures of a model run. */
export interface ModelRun {
  /** Sequences run (up to and including a failing one). */
  sequences: number;
  /** Ops applied, shrinking included. */
  ops: number;
  /** The seed (replays the run with the same budget). */
  seed: number;
  /** Null, or fast-check's report: seed, path, and the shrunk failing command list. */
  failure: string | null;
}

/** Options of {@link runModel}. */
export interface ModelRunOptions {
  /** fast-check's seed (default 1). */
  seed?: number;
  /** The model (default {@link ReferenceModel}). */
  makeModel?: () => ReferenceModel;
  /** fast-check's `path` from a report: replays that one case. */
  path?: string;
  /** The commands' `replayPath` from a report (with `path`, replays the shrunk list). */
  replayPath?: string;
  /** The ring layout the driver runs on (default split). */
  ring?: RingLayout;
}

/** Runs `count` sequences from `seed`; a failure comes back shrunk, with its report. */
export async function runModel(count: number, options: ModelRunOptions = {}): Promise<ModelRun> {
  const seed = options.seed ?? 1;
  const before = OpCommand.ran;
  const details = await fc.check(
    modelProperty(options.makeModel, options.replayPath, options.ring),
    {
      numRuns: count,
      seed,
      path: options.path,
    },
  );
  return {
    sequences: details.numRuns,
    ops: OpCommand.ran - before,
    seed,
    failure: details.failed
      ? `${fc.defaultReportMessage(details) ?? "failed"}\n${String(details.errorInstance)}`
      : null,
  };
}
