import assert from "node:assert/strict";
import {
  closeFile,
  FileRegisters,
  HostError,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MappedRegisters,
  mmap,
  O_RDWR,
  openFile,
  PROT_READ,
  PROT_WRITE,
} from "../host/ffi.ts";
import { RegisterAccessError } from "../transport/registers.ts";

Deno.test("MappedRegisters reads back exact-width little-endian writes over mmapped memory", () => {
  const ptr = mmap("test", 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const regs = new MappedRegisters(ptr, 4096, true);
  regs.write32(0x10, 0x11223344);
  assert.equal(regs.read8(0x10), 0x44);
  assert.equal(regs.read16(0x12), 0x1122);
  regs.write16(0x20, 0xbeef);
  assert.equal(regs.read32(0x20), 0xbeef);
  regs.write8(0x21, 0x00);
  assert.equal(regs.read16(0x20), 0x00ef);
  assert.equal(regs.read32(0x10), 0x11223344);
  regs.close();
});

Deno.test("MappedRegisters rejects unaligned and out-of-window accesses", () => {
  const ptr = mmap("test", 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const regs = new MappedRegisters(ptr, 4096, true);
  assert.throws(() => regs.read32(2), RegisterAccessError);
  assert.throws(() => regs.write16(4095, 1), RegisterAccessError);
  assert.throws(() => regs.read8(4096), RegisterAccessError);
  regs.close();
});

Deno.test("FileRegisters reads and writes a file at exact widths through pread/pwrite", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array(64));
  const fd = openFile(path, O_RDWR);
  try {
    const regs = new FileRegisters(fd, 64, "test file");
    regs.write16(4, 0x0507);
    regs.write32(8, 0xdeadbeef);
    regs.write8(1, 0x1a);
    assert.equal(regs.read16(4), 0x0507);
    assert.equal(regs.read32(8), 0xdeadbeef);
    const bytes = await Deno.readFile(path);
    assert.deepEqual([...bytes.subarray(0, 12)], [
      0,
      0x1a,
      0,
      0,
      7,
      5,
      0,
      0,
      0xef,
      0xbe,
      0xad,
      0xde,
    ]);
  } finally {
    closeFile(fd);
    await Deno.remove(path);
  }
});

Deno.test("FileRegisters reports a short read past the end of the file", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array(8));
  const fd = openFile(path, O_RDWR);
  try {
    const regs = new FileRegisters(fd, 64, "short file");
    assert.throws(() => regs.read32(16), HostError);
  } finally {
    closeFile(fd);
    await Deno.remove(path);
  }
});

Deno.test("openFile() throws HostError with the errno for a missing file", () => {
  assert.throws(
    () => openFile("/nonexistent/viommu-test", O_RDWR),
    (err: unknown) => err instanceof HostError && err.errno === 2,
  );
});

Deno.test("libc() without --allow-ffi throws HostPermissionError naming the flag", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  const ffi = new URL("../host/ffi.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { libc } from "${ffi}";\n` +
      `try { libc(); console.log("no error"); } ` +
      `catch (e) { console.log(e.name + ": " + e.message); }\n`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-read", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(script);
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /HostPermissionError: .*--allow-ffi/);
});
