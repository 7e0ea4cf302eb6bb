/**
 * `viommu conform` against QEMU 7.2's virtio-iommu-pci: boots ONE guest (q35, TCG, with edu as
 * the DMA oracle, event_idx=off and indirect_desc=off) running tests/guest/conform.ts, and checks rule by rule that QEMU's device
 * has the outcomes tests/_conform_qemu.ts lists and that the mock's QEMU personality agrees;
 * the same for the ring rules without EVENT_IDX and INDIRECT_DESC; that QEMU aborts on
 * probe.small-buffer; and (without a boot) that q35 refuses reserved-regions properties.
 * Without QEMU or the kernel the tests are skipped with the reason, except under CI=true.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CATALOGUE, selectRules } from "../conform/catalogue.ts";
import { runConformance } from "../conform/runner.ts";
import { SUITE_FEATURES } from "../conform/session.ts";
import { featureBit, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from "../spec/features.ts";
import { type GuestResult, runGuest } from "../tools/qemu.ts";
import { defaultProjectRoot, findOnPath, locateTools } from "../tools/guest_tools.ts";
import { mutantTarget } from "./_conform_mutants.ts";
import { qemuOutcome, RING_RULES } from "./_conform_qemu.ts";

const root = defaultProjectRoot();
const tools = locateTools(root);
const missing = Array.isArray(tools) ? tools : [];
const inCi = Deno.env.get("CI") === "true";

/**
 * The device properties the issue asks to cover. QEMU 7.2's virtio-iommu ignores both (its
 * get_features ORs EVENT_IDX and INDIRECT_DESC back in), which the first test shows; its other
 * ring paths are reached by not negotiating the features (the plainRings step).
 */
const PROPERTIES_OFF = [
  "-global",
  "virtio-iommu-pci.event_idx=off",
  "-global",
  "virtio-iommu-pci.indirect_desc=off",
];

/** One rule's result as the guest reported it. */
interface Line {
  id: string;
  outcome: string;
  detail: string;
}

/** What the guest run produced. */
interface ConformRun {
  result: GuestResult;
  report: Record<string, { ok: boolean; result?: unknown; error?: string }>;
}

let pending: Promise<ConformRun> | null = null;

/** Boots the guest once for every test below. */
function guest(): Promise<ConformRun> {
  pending ??= (async () => {
    const start = performance.now();
    const result = await runGuest(["deno", "run", "-A", "tests/guest/conform.ts"], {
      qemuArgs: ["-device", "edu", ...PROPERTIES_OFF],
      timeoutSeconds: 170,
      projectRoot: root,
    });
    console.log(
      `conform guest: boot ${(result.bootMs / 1000).toFixed(1)} s, whole run ` +
        `${((performance.now() - start) / 1000).toFixed(1)} s`,
    );
    const line = result.lines.find((l) => l.startsWith("REPORT "));
    if (line === undefined) {
      throw new Error(
        `The guest printed no report (exit code ${result.code}):\n${result.lines.join("\n")}\n` +
          `--- guest console ---\n${result.noise.slice(-40).join("\n")}`,
      );
    }
    return { result, report: JSON.parse(line.slice("REPORT ".length)) };
  })();
  return pending;
}

/** The results of guest step `name`, failing with its error when it failed. */
async function step(name: string): Promise<unknown> {
  const s = (await guest()).report[name];
  assert.ok(s?.ok, `guest step ${name} failed: ${s?.error}`);
  return s.result;
}

/** Outcome by rule id. */
function outcomes(lines: readonly Line[]): Record<string, string> {
  return Object.fromEntries(lines.map((l) => [l.id, l.outcome]));
}

/** Why an outcome differs from the expected one, with the device's detail. */
function differences(lines: readonly Line[], expected: Record<string, string>): string[] {
  return lines.filter((l) => l.outcome !== expected[l.id]).map((l) =>
    `${l.id}: ${l.outcome}, expected ${expected[l.id]} (${l.detail})`
  );
}

if (missing.length > 0) {
  const why = missing.join("; ");
  if (inCi) {
    Deno.test("conform on QEMU: QEMU and the guest kernel are installed in CI", () => {
      assert.fail(`Real-device conformance cannot run in CI: ${why} (run .ci/install-guest-deps)`);
    });
  } else {
    console.log(`%cconform on QEMU SKIPPED: ${why}.`, "color: yellow");
    Deno.test({ name: `conform on QEMU: skipped (${why})`, ignore: true, fn(): void {} });
  }
} else {
  Deno.test("conform on QEMU 7.2: every rule has the outcome the deviation table lists", async () => {
    const cli = await step("cli") as { code: number; lines: (Line & { cmd: string })[] };
    const lines = cli.lines.filter((l) => "outcome" in l);
    assert.equal(lines.length, CATALOGUE.length);
    const expected = Object.fromEntries(CATALOGUE.map((r) => [r.id, qemuOutcome(r.id)]));
    assert.deepEqual(differences(lines, expected), []);
    assert.equal(cli.code, 1, "a failed MUST exits 1");
  });

  Deno.test("conform on QEMU 7.2: event_idx=off and indirect_desc=off leave both features offered", async () => {
    const cli = await step("cli") as { lines: Record<string, unknown>[] };
    const totals = cli.lines.at(-1) ?? {};
    assert.equal(
      totals.offered,
      "0x10130000077",
      "EVENT_IDX (29) and INDIRECT_DESC (28) still offered",
    );
  });

  Deno.test("conform on QEMU 7.2 and on the mock's QEMU personality agree rule by rule", async () => {
    const cli = await step("cli") as { lines: Line[] };
    const device = outcomes(cli.lines.filter((l) => "outcome" in l));
    const mock = await runConformance(mutantTarget({ options: { qemuCompat: true } }).target);
    assert.deepEqual(
      differences(mock.results, device).map((d) => `mock ${d}`),
      [],
    );
  });

  Deno.test("conform on QEMU 7.2 without EVENT_IDX and INDIRECT_DESC: the ring rules agree too", async () => {
    const lines = await step("plainRings") as Line[];
    const ids = selectRules(RING_RULES).map((r) => r.id);
    assert.deepEqual(lines.map((l) => l.id), ids);
    const expected = Object.fromEntries(ids.map((id) => [id, qemuOutcome(id)]));
    assert.deepEqual(differences(lines, expected), []);
    const features = SUITE_FEATURES & ~featureBit(VIRTIO_F_EVENT_IDX) &
      ~featureBit(VIRTIO_F_INDIRECT_DESC);
    const mock = await runConformance(mutantTarget({ options: { qemuCompat: true } }).target, {
      only: RING_RULES,
      features,
    });
    assert.deepEqual(differences(mock.results, outcomes(lines)), []);
  });

  Deno.test("conform on QEMU 7.2: PROBE with a short properties area makes QEMU abort (the hazard)", async () => {
    const { result } = await guest();
    assert.ok(result.lines.includes("HAZARD probe.small-buffer"));
    assert.ok(!result.lines.includes("HAZARD survived"), "QEMU survived the short PROBE");
    assert.equal(result.code, -1, "the guest never finished");
    assert.ok(
      result.noise.some((l) =>
        l.includes("virtio_iommu_handle_command: Assertion `sz == output_size' failed")
      ),
      result.noise.slice(-10).join("\n"),
    );
  });
}

const qemu = findOnPath("qemu-system-x86_64");
Deno.test({
  name: "QEMU 7.2's q35 refuses reserved-regions on virtio-iommu-pci (its pre-plug sets them)",
  ignore: qemu === null && !inCi,
  async fn(): Promise<void> {
    assert.ok(qemu !== null, "qemu-system-x86_64 is installed");
    const out = await new Deno.Command(qemu, {
      args: [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-S",
        "-display",
        "none",
        "-nic",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-device",
        "virtio-iommu-pci,len-reserved-regions=1,reserved-regions[0]=0xa0000:0xaffff:0",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    assert.match(stderr, /array size property len-reserved-regions may not be set more than once/);
  },
});
