import assert from "node:assert/strict";
import { isBdf, openSysfsPci, parseResourceFile } from "../host/sysfs_pci.ts";
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
    const dev = openSysfsPci("0000:00:03.0", { sysfsRoot: root });
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
