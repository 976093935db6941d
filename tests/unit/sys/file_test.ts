import {
  fileId,
  linkFile,
  lockFile,
  makeDirs,
  pathExists,
  readTextIfExists,
  removeFile,
  renameFile,
  writeTextFile,
} from "../../../lib/sys/file.ts";
import { Errno, SyscallError } from "../../../lib/sys/syscall.ts";
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

Deno.test("writeTextFile() replaces, appends, or only creates; modes and missing parents", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-sys-" });
  try {
    const f = `${dir}/f`;
    assert(writeTextFile(f, "first", { mode: 0o600 }));
    assertEquals((await Deno.stat(f)).mode! & 0o777, 0o600);
    assert(writeTextFile(f, "2nd"));
    assertEquals(await Deno.readTextFile(f), "2nd");
    writeTextFile(f, "+more", { append: true });
    assertEquals(await Deno.readTextFile(f), "2nd+more");
    assertEquals(writeTextFile(f, "new", { exclusive: true }), false);
    assertEquals(await Deno.readTextFile(f), "2nd+more");
    const err = assertThrows(() => writeTextFile(`${dir}/no/such/f`, "x"));
    assert(err instanceof SyscallError && err.errno === Errno.ENOENT, err.message);
    assertEquals(err.message, `open ${dir}/no/such/f: No such file or directory`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("linkFile(), renameFile(), removeFile() and makeDirs() answer what happened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-sys-" });
  try {
    makeDirs(`${dir}/a/b/c`, 0o750);
    makeDirs(`${dir}/a/b/c`); // already there: fine
    assertEquals((await Deno.stat(`${dir}/a/b`)).mode! & 0o777, 0o750);
    await Deno.writeTextFile(`${dir}/t`, "record");
    assert(linkFile(`${dir}/t`, `${dir}/a/ip`));
    assertEquals(linkFile(`${dir}/t`, `${dir}/a/ip`), false); // taken
    renameFile(`${dir}/t`, `${dir}/a/b/c/moved`);
    assertEquals(await Deno.readTextFile(`${dir}/a/b/c/moved`), "record");
    assert(removeFile(`${dir}/a/ip`));
    assertEquals(removeFile(`${dir}/a/ip`), false);
    const err = assertThrows(() => renameFile(`${dir}/gone`, `${dir}/x`));
    assertEquals(err.message, `rename ${dir}/gone to ${dir}/x: No such file or directory`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockFile() holds flock(2) until disposed; another process sees it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-sys-" });
  const tryLock = async () =>
    (await new Deno.Command("flock", { args: ["-n", `${dir}/lock`, "true"] }).output()).code;
  try {
    assertEquals(lockFile(`${dir}/missing/lock`), undefined);
    {
      using _lock = lockFile(`${dir}/lock`);
      assertEquals((await Deno.stat(`${dir}/lock`)).mode! & 0o777, 0o600);
      assertEquals(await tryLock(), 1);
    }
    assertEquals(await tryLock(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
