/**
 * Real-device tests: boots a QEMU guest (q35, TCG, a virtio-iommu-pci and an edu DMA device)
 * through tools/guest.ts, runs tests/guest/real_device.ts inside it and asserts on the JSON
 * report it prints. The device's INTx comes through uio_pci_generic: faults from edu's DMA are
 * delivered by interrupt with no polling, measured against a second driver that polls. Then a
 * second, shorter boot with `packed=on` runs the same driver over the packed ring (virtio 1.3
 * §2.8). Without QEMU or the kernel the tests are skipped, the skip's name saying why (listed at
 * the end of `deno task test`), except under CI (`CI=true`), where that is a failure. While the
 * guest boots, a progress line says what it is doing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { defaultProjectRoot, locateTools } from "../tools/guest_tools.ts";
import { describePhase, type GuestResult, runGuest } from "../tools/qemu.ts";
import { note, skipName, status } from "./_notes.ts";

const root = defaultProjectRoot();
const tools = locateTools(root);
const missing = Array.isArray(tools) ? tools : [];
const inCi = Deno.env.get("CI") === "true";

/** The guest's report: what tests/guest/real_device.ts measured. */
type Report = Record<string, unknown>;

/** One guest run and its report. */
type Run = { result: GuestResult; report: Report; wallMs: number };

/** The shared guest runs: QEMU's default (split ring) and `packed=on`. */
const pending = new Map<boolean, Promise<Run>>();

/** Returns the parsed report of the shared guest run (`packed`: the packed=on boot). */
async function report(packed = false): Promise<Report> {
  return (await guest(packed)).report;
}

/** Returns the result of step `name`, failing with the guest's error when the step failed. */
function stepResult(r: Report, name: string): Record<string, unknown> {
  const s = r[name] as
    | { ok: boolean; result?: Record<string, unknown>; error?: string }
    | undefined;
  assert.ok(s, `the guest reported step ${name}`);
  assert.ok(s.ok, `guest step ${name} failed: ${s.error}`);
  return s.result ?? {};
}

/**
 * Asserts a burst of faults from edu: at least one, the first at `address`, every one a
 * MAPPING fault from edu's endpoint inside the same 4 KiB page.
 */
function assertFaultBurst(faults: unknown, address: string): void {
  const list = faults as { reason: string; endpoint: number; address: string }[];
  assert.ok(list.length >= 1, "at least one fault arrived");
  assert.equal(list[0].address, address);
  for (const fault of list) {
    assert.equal(fault.reason, "MAPPING");
    assert.equal(fault.endpoint, 0x18);
    assert.equal(BigInt(fault.address) >> 12n, BigInt(address) >> 12n);
  }
}

/** Boots the guest once per mode (shared by every test below) and parses its report. */
function guest(packed = false): Promise<Run> {
  const known = pending.get(packed);
  if (known !== undefined) return known;
  const run = (async () => {
    const start = performance.now();
    const command = ["deno", "run", "-A", "tests/guest/real_device.ts"];
    const what = packed ? "real device (packed=on)" : "real device";
    const result = await runGuest(packed ? [...command, "--packed"] : command, {
      qemuArgs: [
        "-device",
        "edu",
        ...(packed ? ["-global", "virtio-iommu-pci.packed=on"] : []),
      ],
      timeoutSeconds: 170,
      projectRoot: root,
      onPhase: (phase) => status(`${what}: ${describePhase(phase)}`),
    }).finally(() => status(null));
    const wallMs = performance.now() - start;
    note(
      `${what} guest: boot ${(result.bootMs / 1000).toFixed(1)} s, whole run ` +
        `${(wallMs / 1000).toFixed(1)} s (initramfs ${(result.buildMs / 1000).toFixed(1)} s)`,
    );
    const line = result.lines.find((l) => l.startsWith("REPORT "));
    if (result.code !== 0 || line === undefined) {
      throw new Error(
        `The guest script failed (exit code ${result.code}${
          result.timedOut ? ", timed out" : ""
        }):\n` +
          result.lines.join("\n") + "\n--- guest console ---\n" +
          result.noise.slice(-40).join("\n"),
      );
    }
    return { result, report: JSON.parse(line.slice("REPORT ".length)) as Report, wallMs };
  })();
  pending.set(packed, run);
  return run;
}

if (missing.length > 0) {
  const why = missing.join("; ");
  if (inCi) {
    Deno.test("real device: QEMU and the guest kernel are installed in CI", () => {
      assert.fail(`Real-device tests cannot run in CI: ${why} (run .ci/install-guest-deps)`);
    });
  } else {
    Deno.test({
      name: skipName("real device", `${why} (run .ci/install-guest-deps as root)`),
      ignore: true,
      fn(): void {},
    });
  }
} else {
  Deno.test("real device: the guest boots and the script reports within the time budget", async () => {
    const { result, wallMs } = await guest();
    assert.equal(result.code, 0);
    assert.ok(result.bootMs > 0, "the begin marker was seen");
    assert.ok(wallMs < 170_000, `whole run took ${wallMs} ms`);
  });

  Deno.test("real device: no kernel driver owns the virtio-iommu and virtio_pci is not loaded", async () => {
    const { report } = await guest();
    assert.equal(report.driverBefore, null);
    assert.equal(report.virtioPciLoaded, false);
  });

  Deno.test("real device: openSysfsPci() reads the virtio-iommu's IDs and enables bus mastering", async () => {
    const open = stepResult(await report(), "open");
    assert.equal(open.vendor, 0x1af4);
    assert.equal(open.device, 0x1057);
    assert.equal((open.command as number) & 0x6, 0x6, "memory space and bus master set");
  });

  Deno.test("real device: deno task cli -- topology --json resolves the guest's PCI devices", async () => {
    const cli = stepResult(await report(), "cli") as {
      topology: { code: number; lines: Array<Record<string, unknown>> };
      probeMissing: { code: number; lines: Array<Record<string, unknown>> };
    };
    assert.equal(cli.topology.code, 0);
    const devices = cli.topology.lines[0].devices as Array<Record<string, unknown>>;
    const edu = devices.find((d) => d.device === "0000:00:03.0");
    assert.equal(edu?.endpointId, 0x18, "edu's endpoint ID is its BDF (QEMU's VIOT)");
    const self = devices.find((d) => d.device === "0000:00:02.0");
    assert.equal(self?.endpointId, null, "the IOMMU never translates itself");
    assert.equal(cli.probeMissing.code, 1, "a refused request exits 1");
    assert.equal(cli.probeMissing.lines[0].status, "NOENT");
  });

  Deno.test("real device: PciTransport finds common, ISR, device cfg and notify in BAR4", async () => {
    const t = stepResult(await report(), "transport");
    assert.equal(t.deviceId, 23);
    assert.equal(t.numQueues, 2);
    const layout = t.layout as Record<string, { bar: number; offset: number } | number>;
    assert.deepEqual(
      ["common", "isr", "device", "notify"].map((k) => [
        (layout[k] as { bar: number }).bar,
        (layout[k] as { offset: number }).offset,
      ]),
      [[4, 0x0], [4, 0x1000], [4, 0x2000], [4, 0x3000]],
    );
    assert.equal(layout.notifyOffMultiplier, 4);
  });

  Deno.test("real device: VirtioIommu.create() initialises QEMU's device and reads its config", async () => {
    const r = await report();
    assert.equal(r.offeredFeatures, "0x10130000077");
    const info = stepResult(r, "init");
    const names = info.featureNames as string[];
    for (
      const name of ["VERSION_1", "MAP_UNMAP", "PROBE", "INPUT_RANGE", "DOMAIN_RANGE", "RING_RESET"]
    ) {
      assert.ok(names.includes(name), `negotiated ${name}`);
    }
    assert.equal(info.ring, "split", "QEMU's default: packed=off");
    assert.equal(info.queueReset, true);
    assert.deepEqual(info.config, {
      pageSizeMask: "0xfffffffffffff000",
      inputStart: "0x0",
      inputEnd: "0xffffffffffffffff",
      domainStart: 0,
      domainEnd: 0xffffffff,
      probeSize: 512,
      bypass: 1,
    });
    assert.equal(info.requestQueueSize, 256);
  });

  Deno.test("real device: the guest's VIOT resolves every PCI device but the IOMMU to endpoint = BDF", async () => {
    const viot = stepResult(await report(), "viot");
    const endpoints = viot.endpoints as Record<string, number | null>;
    assert.equal(endpoints["0000:00:02.0"], null, "the IOMMU does not translate itself");
    assert.equal(endpoints["0000:00:03.0"], 0x18);
    assert.equal(endpoints["0000:00:1f.3"], 0xfb);
    assert.ok(Object.keys(endpoints).length >= 5);
  });

  Deno.test("real device: PROBE of edu reports the MSI reserved region", async () => {
    const probe = stepResult(await report(), "probeEdu");
    assert.deepEqual(probe.regions, [{ kind: "msi", start: "0xfee00000", end: "0xfeefffff" }]);
  });

  Deno.test("real device: PROBE of a BDF with no device fails with NOENT", async () => {
    assert.deepEqual(stepResult(await report(), "probeMissing"), { status: "NOENT", code: 6 });
  });

  Deno.test("real device: edu DMAs through mapped IOVAs and the bytes arrive", async () => {
    const proof = stepResult(await report(), "eduProof");
    assert.equal(proof.alive, true);
    assert.equal(proof.bytesArrived, 256);
    assert.deepEqual(proof.faultsWhileMapped, []);
  });

  Deno.test("real device: edu's write through a read-only mapping is blocked with a fault", async () => {
    const proof = stepResult(await report(), "eduProof");
    assert.equal(proof.bytesChangedInReadOnly, 0);
    assertFaultBurst(proof.readOnlyFaults, "0x100000");
  });

  Deno.test("real device: after UNMAP edu's DMA is blocked and a MAPPING fault names the IOVA", async () => {
    const proof = stepResult(await report(), "eduProof");
    assert.equal(proof.bytesAfterUnmap, 0);
    assertFaultBurst(proof.unmapFaults, "0x200000");
  });

  Deno.test("real device: DETACH leaves the domain with no endpoints and no mappings", async () => {
    const proof = stepResult(await report(), "eduProof");
    assert.deepEqual(proof.domainsAfterDetach, [
      { id: 1, bypass: false, endpoints: [], mappings: 0 },
    ]);
  });

  /** edu DMAs through a mapping made before both queue resets; after them the unmap's fault arrives. */
  const assertQueueResetKeptDomains = (r: Report): void => {
    const q = stepResult(r, "queueReset");
    assert.deepEqual(q.resets, { request: 1, event: 1 });
    assert.equal(q.bytesAfterReset, 256, "the device kept the domain and its mapping");
    assertFaultBurst(q.faultsAfterReset, "0x200000");
  };

  Deno.test("real device: each queue reset alone (RING_RESET) keeps QEMU's domains; requests and faults work after", async () => {
    assertQueueResetKeptDomains(await report());
  });

  Deno.test("real device (packed=on): the driver negotiates RING_PACKED and runs the packed ring", async () => {
    const r = await report(true);
    assert.equal(r.packedBoot, true);
    assert.equal(r.offeredFeatures, "0x10530000077", "QEMU offers bit 34 with packed=on");
    const info = stepResult(r, "init");
    assert.ok((info.featureNames as string[]).includes("RING_PACKED"));
    assert.equal(info.ring, "packed");
    assert.equal(info.requestQueueSize, 256);
    assert.deepEqual(stepResult(r, "probeEdu").regions, [
      { kind: "msi", start: "0xfee00000", end: "0xfeefffff" },
    ]);
    assert.deepEqual(stepResult(r, "probeMissing"), { status: "NOENT", code: 6 });
  });

  Deno.test("real device (packed=on): edu's DMA arrives through a mapping and is blocked after UNMAP", async () => {
    const proof = stepResult(await report(true), "eduProof");
    assert.equal(proof.bytesArrived, 256);
    assert.deepEqual(proof.faultsWhileMapped, []);
    assert.equal(proof.bytesChangedInReadOnly, 0);
    assertFaultBurst(proof.readOnlyFaults, "0x100000");
    assert.equal(proof.bytesAfterUnmap, 0);
    assertFaultBurst(proof.unmapFaults, "0x200000");
  });

  Deno.test("real device (packed=on): queue resets keep the domains; MAP+UNMAP round trips; close()", async () => {
    const r = await report(true);
    assertQueueResetKeptDomains(r);
    assert.equal(stepResult(r, "queueReset").ring, "packed");
    const timing = stepResult(r, "mapUnmapTiming");
    note(`real device: MAP+UNMAP pair under TCG, packed ring ${timing.usPerPair} µs`);
    assert.ok((timing.usPerPair as number) > 0);
    stepResult(r, "close");
  });

  Deno.test("real device: MAP+UNMAP round trips complete and close() succeeds", async () => {
    const r = await report();
    const timing = stepResult(r, "mapUnmapTiming");
    const polled = stepResult(r, "pollingTiming");
    note(
      `real device: MAP+UNMAP pair under TCG ${timing.usPerPair} µs with interrupts, then ` +
        `${polled.usPerPair} µs polling (${timing.rounds} rounds each; JIT warm-up under TCG ` +
        "decides which is faster: compare with deno task bench:interrupts)",
    );
    assert.ok((timing.usPerPair as number) > 0);
    assert.equal(timing.interruptsTaken, 0, "the request queue raised no interrupt");
    stepResult(r, "close");
    stepResult(r, "pollingClose");
  });

  Deno.test("real device: uio_pci_generic hands the virtio-iommu's INTx to the driver", async () => {
    const r = await report();
    const uio = stepResult(r, "uio");
    assert.match(uio.path as string, /^\/dev\/uio\d+$/);
    assert.ok((uio.irq as number) > 0, "the function has an IRQ");
    assert.equal(stepResult(r, "open").interrupts, "line");
    assert.deepEqual(stepResult(r, "init").interrupts, { mode: "line", reason: null });
  });

  Deno.test("real device: faults from edu's DMA arrive by interrupt, with no polling", async () => {
    const f = stepResult(await report(), "interruptFaults") as {
      mode: string;
      trips: { toListenerMs: number; timers: number; address: string }[];
      usedBufferInterrupts: number;
      medianAfterEduDelayMs: number;
    };
    assert.equal(f.mode, "line");
    assert.ok(f.usedBufferInterrupts >= f.trips.length, `${f.usedBufferInterrupts} interrupts`);
    for (const trip of f.trips) {
      assert.equal(trip.address, "0x300000");
      assert.ok(trip.toListenerMs > 0, "the listener heard it");
      // The one timer is nextFault()'s own deadline; polling makes one per millisecond.
      assert.ok(trip.timers <= 1, `${trip.timers} timers while waiting`);
    }
    note(
      `real device: fault from edu's DMA to the listener: ${f.medianAfterEduDelayMs} ms after edu's 100 ms ` +
        `timer, by interrupt (median of ${f.trips.length}: ` +
        f.trips.map((t) => (t.toListenerMs - 100).toFixed(1)).join(", ") + ")",
    );
  });

  Deno.test("real device: waiting idle costs no timer wake-ups with interrupts, ~1/ms polling", async () => {
    const r = await report();
    const irq = stepResult(r, "interruptFaults") as {
      idle: { cpuMs: number; contextSwitches: number; timers: number };
    };
    const poll = stepResult(r, "pollingFaults") as {
      mode: string;
      medianAfterEduDelayMs: number;
      trips: { address: string }[];
      idle: { cpuMs: number; contextSwitches: number; timers: number };
    };
    assert.deepEqual(stepResult(r, "pollingInit"), {
      mode: "off",
      reason: 'interrupts: "off" was chosen',
    });
    assert.equal(poll.mode, "off");
    for (const trip of poll.trips) assert.equal(trip.address, "0x300000");
    assert.ok(irq.idle.timers <= 1, `${irq.idle.timers} timers idle with interrupts`);
    assert.ok(poll.idle.timers >= 100, `${poll.idle.timers} timers idle polling`);
    assert.ok(irq.idle.contextSwitches < poll.idle.contextSwitches);
    note(
      `real device: idle 1 s waiting for a fault: interrupts ${irq.idle.cpuMs} ms CPU, ` +
        `${irq.idle.contextSwitches} context switches, ${irq.idle.timers} timers; polling ` +
        `${poll.idle.cpuMs} ms CPU, ${poll.idle.contextSwitches} context switches, ` +
        `${poll.idle.timers} timers; fault to listener by polling ${poll.medianAfterEduDelayMs} ms`,
    );
  });
}
