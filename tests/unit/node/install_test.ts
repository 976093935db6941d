import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { ensureFileContent, installPlugin } from "../../../lib/node/install.ts";

Deno.test("ensureFileContent() writes only when the content changes and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "net.d", "10-mycni.conflist");
    assertEquals(await ensureFileContent(path, "a\n"), true);
    assertEquals(await ensureFileContent(path, "a\n"), false);
    assertEquals(await ensureFileContent(path, "b\n"), true);
    assertEquals(await Deno.readTextFile(path), "b\n");
    assertEquals([...Deno.readDirSync(join(dir, "net.d"))].map((e) => e.name), [
      "10-mycni.conflist",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("installPlugin() copies the binary executable and skips an identical one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = join(dir, "src");
    await Deno.writeTextFile(src, "#!/bin/true\n", { mode: 0o644 });
    assertEquals(await installPlugin(src, join(dir, "bin")), true);
    const st = await Deno.stat(join(dir, "bin", "mycni"));
    assert(((st.mode ?? 0) & 0o777) === 0o755);
    assertEquals(await installPlugin(src, join(dir, "bin")), false);
    await Deno.writeTextFile(src, "#!/bin/false\n");
    assertEquals(await installPlugin(src, join(dir, "bin")), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
