import assert from "node:assert/strict";
import { readSysfsTopology, readSysfsViot } from "../host/sysfs_topology.ts";
import { TopologyError } from "../driver/topology/errors.ts";
import { qemuQ35Viot } from "../tools/topology/viot.ts";

function config(
  classCode: number,
  headerType = 0,
  secondary = 0,
  portType: number | null = null,
): Uint8Array {
  const c = new Uint8Array(256);
  const v = new DataView(c.buffer);
  v.setUint16(0, 0x1af4, true);
  v.setUint16(0x0a, classCode, true);
  c[0x0e] = headerType;
  c[0x19] = secondary;
  if (portType !== null) {
    c[0x06] = 0x10;
    c[0x34] = 0x40;
    c[0x40] = 0x10;
    c[0x42] = portType << 4;
  }
  return c;
}

/** A fake /sys with a q35 layout: host bridge, IOMMU at 00:02.0, a root port with one device. */
async function fakeSysfs(viot: Uint8Array | null): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "viommu-sysfs-" });
  const devices: [string, Uint8Array][] = [
    ["0000:00:00.0", config(0x0600)],
    ["0000:00:02.0", config(0x0806)],
    ["0000:00:03.0", config(0x0604, 1, 1, 4)],
    ["0000:01:00.0", config(0x00ff, 0, 0, 0)],
  ];
  for (const [name, bytes] of devices) {
    await Deno.mkdir(`${root}/bus/pci/devices/${name}`, { recursive: true });
    await Deno.writeFile(`${root}/bus/pci/devices/${name}/config`, bytes);
  }
  await Deno.mkdir(`${root}/bus/pci/devices/not-a-device`);
  if (viot !== null) {
    await Deno.mkdir(`${root}/firmware/acpi/tables`, { recursive: true });
    await Deno.writeFile(`${root}/firmware/acpi/tables/VIOT`, viot);
  }
  return root;
}

Deno.test("readSysfsTopology() resolves a fake q35 sysfs through its VIOT", async () => {
  const sysfs = await fakeSysfs(qemuQ35Viot());
  try {
    const { tree, viot, table } = await readSysfsTopology({ sysfs });
    assert.equal(tree.devices.length, 4);
    assert.equal(tree.get("0000:00:03.0")!.type, "root-port");
    assert.equal(viot!.iommus.length, 1);
    const byDevice = new Map(table.rows.map((r) => [r.device, r.endpointId]));
    assert.equal(byDevice.get("0000:00:02.0"), null);
    assert.equal(byDevice.get("0000:00:03.0"), 0x18);
    // Bus 1 is outside QEMU's bus-0 range (0x00-0xff): not translated by this VIOT.
    assert.equal(byDevice.get("0000:01:00.0"), null);
  } finally {
    await Deno.remove(sysfs, { recursive: true });
  }
});

Deno.test("readSysfsViot() returns null without a VIOT and a TopologyError for a corrupt one", async () => {
  const none = await fakeSysfs(null);
  const bad = qemuQ35Viot();
  bad[50] ^= 0xff;
  const corrupt = await fakeSysfs(bad);
  try {
    assert.equal(await readSysfsViot({ sysfs: none }), null);
    await assert.rejects(() => readSysfsViot({ sysfs: corrupt }), TopologyError);
  } finally {
    await Deno.remove(none, { recursive: true });
    await Deno.remove(corrupt, { recursive: true });
  }
});

Deno.test("readSysfsTopology() without a Deno permission throws HostPermissionError naming --allow-all", async () => {
  // A child with no permissions at all: Deno refuses the read with NotCapable, which the reader
  // must turn into the host's typed error (before, the raw NotCapable escaped).
  const root = await fakeSysfs(qemuQ35Viot());
  const script = `
    import { readSysfsTopology } from ${
    JSON.stringify(new URL("../host/sysfs_topology.ts", import.meta.url).href)
  };
    try {
      await readSysfsTopology({ sysfs: ${JSON.stringify(root)} });
      console.log("no error");
    } catch (e) {
      console.log(e.name + ": " + e.message);
    }`;
  const file = await Deno.makeTempFile({ prefix: "viommu-noperm-", suffix: ".ts" });
  await Deno.writeTextFile(file, script);
  // `deno run` with no --allow flag (`deno eval` would grant everything).
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--no-prompt", file],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(root, { recursive: true });
  await Deno.remove(file);
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.match(text, /^HostPermissionError: Cannot read .*bus\/pci\/devices.*--allow-all/);
});
