import assert from "node:assert/strict";
import {
  enableForDma,
  isBdf,
  openSysfsPci,
  parseResourceFile,
  PCI_COMMAND,
} from "../host/sysfs_pci.ts";
import { MemoryRegisters } from "../transport/registers.ts";
import { HostError } from "../host/ffi.ts";

Deno.test("parseResourceFile() reads start, end and flags of each BAR line", () => {
  const text = "0x00000000fe000000 0x00000000fe003fff 0x000000000014220c\n" +
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
  assert.deepEqual(parseResourceFile(text), [
    { start: 0xfe000000n, end: 0xfe003fffn, flags: 0x14220cn },
    { start: 0n, end: 0n, flags: 0n },
  ]);
});

Deno.test("isBdf() accepts dddd:bb:dd.f and rejects other spellings", () => {
  assert.equal(isBdf("0000:00:02.0"), true);
  assert.equal(isBdf("0000:3a:1f.7"), true);
  assert.equal(isBdf("00:02.0"), false);
  assert.equal(isBdf("0000:00:20.0"), false);
  assert.equal(isBdf("0000:00:02.8"), false);
});

Deno.test("openSysfsPci() rejects a malformed address with RangeError", () => {
  assert.throws(() => openSysfsPci("nonsense"), RangeError);
});

Deno.test("openSysfsPci() says the device does not exist", async () => {
  const root = await Deno.makeTempDir();
  try {
    assert.throws(
      () => openSysfsPci("0000:00:02.0", { sysfsRoot: root }),
      (err: unknown) => err instanceof HostError && /No PCI device 0000:00:02.0/.test(err.message),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("openSysfsPci() refuses a device a kernel driver is bound to, naming the driver", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = `${root}/0000:00:02.0`;
    await Deno.mkdir(`${root}/drivers/virtio-pci`, { recursive: true });
    await Deno.mkdir(dir);
    await Deno.symlink(`${root}/drivers/virtio-pci`, `${dir}/driver`);
    await Deno.writeFile(`${dir}/config`, new Uint8Array(256));
    assert.throws(
      () => openSysfsPci("0000:00:02.0", { sysfsRoot: root }),
      (err: unknown) =>
        err instanceof HostError && /kernel driver "virtio-pci" is bound/.test(err.message) &&
        /unbind/.test(err.message),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("openSysfsPci() over a fake sysfs folder reads config and sets bus mastering", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = `${root}/0000:00:03.0`;
    await Deno.mkdir(dir);
    const config = new Uint8Array(256);
    config.set([0x34, 0x12, 0xe8, 0x11, 0x00, 0x00]); // vendor 0x1234, device 0x11e8, command 0
    await Deno.writeFile(`${dir}/config`, config);
    await Deno.writeTextFile(`${dir}/enable`, "0");
    await Deno.writeTextFile(`${dir}/resource`, "0x0 0x0 0x0\n");
    const dev = openSysfsPci("0000:00:03.0", {
      sysfsRoot: root,
      identity: { vendor: 0x1234, device: 0x11e8 },
    });
    try {
      assert.equal(dev.config.read16(0), 0x1234);
      assert.equal(dev.config.read16(2), 0x11e8);
      assert.equal(dev.config.read16(4) & 0x6, 0x6);
      assert.equal(dev.bar(0), null, "an empty resource is no BAR");
      assert.equal((await Deno.readTextFile(`${dir}/enable`)).trim(), "1");
    } finally {
      dev.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** A fake sysfs folder for `bdf`: config with `vendor`/`device` and command 0, enable 0. */
async function fakeDevice(
  root: string,
  bdf: string,
  vendor: number,
  device: number,
): Promise<string> {
  const dir = `${root}/${bdf}`;
  await Deno.mkdir(dir);
  const config = new Uint8Array(256);
  new DataView(config.buffer).setUint16(0, vendor, true);
  new DataView(config.buffer).setUint16(2, device, true);
  await Deno.writeFile(`${dir}/config`, config);
  await Deno.writeTextFile(`${dir}/enable`, "0");
  await Deno.writeTextFile(`${dir}/resource`, "0x0 0x0 0x0\n");
  return dir;
}

Deno.test("openSysfsPci() checks the vendor/device ID before enabling anything", async () => {
  const root = await Deno.makeTempDir();
  try {
    // Some other device where the virtio-iommu was expected (the default identity).
    const dir = await fakeDevice(root, "0000:00:02.0", 0x8086, 0x100e);
    assert.throws(
      () => openSysfsPci("0000:00:02.0", { sysfsRoot: root }),
      (err: unknown) =>
        err instanceof HostError &&
        /0000:00:02.0 is 8086:100e, expected 1af4:1057; nothing was enabled/.test(err.message),
    );
    const config = await Deno.readFile(`${dir}/config`);
    assert.equal(new DataView(config.buffer).getUint16(PCI_COMMAND, true), 0, "command untouched");
    assert.equal((await Deno.readTextFile(`${dir}/enable`)).trim(), "0", "not enabled");
    // The virtio-iommu itself opens with the default identity; identity null accepts anything.
    await fakeDevice(root, "0000:00:03.0", 0x1af4, 0x1057);
    openSysfsPci("0000:00:03.0", { sysfsRoot: root }).close();
    openSysfsPci("0000:00:02.0", { sysfsRoot: root, identity: null }).close();
    assert.equal((await Deno.readTextFile(`${dir}/enable`)).trim(), "1");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("openSysfsPci() reads the resource file before enabling: a missing one leaves the device off", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = await fakeDevice(root, "0000:00:02.0", 0x1af4, 0x1057);
    await Deno.remove(`${dir}/resource`);
    assert.throws(() => openSysfsPci("0000:00:02.0", { sysfsRoot: root }));
    const config = await Deno.readFile(`${dir}/config`);
    assert.equal(new DataView(config.buffer).getUint16(PCI_COMMAND, true), 0);
    assert.equal((await Deno.readTextFile(`${dir}/enable`)).trim(), "0");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** A config space whose command register ignores writes of the bus master bit, once or always. */
class StuckCommand extends MemoryRegisters {
  writes: number[] = [];
  constructor(initial: number) {
    super(256);
    this.view.setUint16(PCI_COMMAND, initial, true);
  }
  override write16(offset: number, value: number): void {
    if (offset === PCI_COMMAND) this.writes.push(value);
    super.write16(offset, offset === PCI_COMMAND ? value & ~0x4 : value);
  }
}

Deno.test("enableForDma() restores the command register and the enable file when enabling fails", () => {
  const config = new StuckCommand(0x0400); // INTx disabled, as a kernel might leave it
  let enable = "0";
  const file = { read: () => enable + "\n", write: (v: "0" | "1") => void (enable = v) };
  assert.throws(
    () => enableForDma(config, file, { enable: true, busMaster: true }),
    (err: unknown) => err instanceof HostError && /command register reads 0x0402/.test(err.message),
  );
  assert.deepEqual(config.writes, [0x0406, 0x0400], "set, then put back as it was");
  assert.equal(config.read16(PCI_COMMAND), 0x0400);
  assert.equal(enable, "0", "the enable file is put back too");
  // Without bus mastering the same register takes memory decoding, and the device stays enabled.
  enableForDma(config, file, { enable: true, busMaster: false });
  assert.equal(config.read16(PCI_COMMAND), 0x0402);
  assert.equal(enable, "1");
});

Deno.test("enableForDma() leaves an already enabled device's enable file alone on failure", () => {
  const config = new StuckCommand(0);
  let enable = "1";
  let writes = 0;
  const file = { read: () => enable, write: (v: "0" | "1") => void (writes++, enable = v) };
  assert.throws(() => enableForDma(config, file, { enable: true, busMaster: true }), HostError);
  assert.equal(writes, 0, "it was enabled before: not written, not disabled");
  assert.equal(config.read16(PCI_COMMAND), 0);
});
