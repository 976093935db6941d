import { fileId, pathExists, readTextIfExists } from "../../../lib/net/syscall.ts";
import { assert, assertEquals, assertThrows } from "../../harness/assert.ts";

Deno.test("readTextIfExists() reads a whole file, of any size, and undefined when it is missing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-sys-" });
  try {
    const big = "0123456789abcdé\n".repeat(1000); // 17 kB: several reads, a multi-byte character
    await Deno.writeTextFile(`${dir}/big`, big);
    await Deno.writeTextFile(`${dir}/empty`, "");
    assertEquals(readTextIfExists(`${dir}/big`), big);
    assertEquals(readTextIfExists(`${dir}/empty`), "");
    assertEquals(readTextIfExists(`${dir}/missing`), undefined);
    // Anything but "no such file" is an error, named.
    const err = assertThrows(() => readTextIfExists(`${dir}/big/below`));
    assertEquals(err.message, `open ${dir}/big/below: Not a directory`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fileId() is stat's device and inode; pathExists() sees a dangling symlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-sys-" });
  try {
    await Deno.writeTextFile(`${dir}/f`, "x");
    const info = await Deno.stat(`${dir}/f`);
    assertEquals(fileId(`${dir}/f`), { dev: BigInt(info.dev), ino: BigInt(info.ino!) });
    assertEquals(fileId(`${dir}/missing`), undefined);
    // /proc/self/ns/net is a symlink to the netns inode: followed by default, as stat does.
    const ns = await Deno.stat("/proc/self/ns/net");
    assertEquals(fileId("/proc/self/ns/net")?.ino, BigInt(ns.ino!));
    await Deno.symlink(`${dir}/nowhere`, `${dir}/dangling`);
    assert(pathExists(`${dir}/dangling`));
    assertEquals(fileId(`${dir}/dangling`), undefined);
    assert(!pathExists(`${dir}/missing`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
