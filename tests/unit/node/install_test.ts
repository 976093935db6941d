import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import {
  ensureFileContent,
  installPlugin,
  parseBundleShebang,
  pluginProblem,
} from "../../../lib/node/install.ts";

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
    assertEquals(await installPlugin(src, join(dir, "bin")), { copied: true, runtime: undefined });
    const st = await Deno.stat(join(dir, "bin", "mycni"));
    assert(((st.mode ?? 0) & 0o777) === 0o755);
    assertEquals((await installPlugin(src, join(dir, "bin"))).copied, false);
    await Deno.writeTextFile(src, "#!/bin/false\n");
    assertEquals((await installPlugin(src, join(dir, "bin"))).copied, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseBundleShebang() finds the runtime of a bundled plugin, nothing in other files", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assertEquals(
    parseBundleShebang(enc("#!/usr/bin/env -S /opt/x/deno run --allow-all --ext=js\nvar a;\n")),
    { runtime: "/opt/x/deno", flags: "run --allow-all --ext=js" },
  );
  assertEquals(parseBundleShebang(enc("#!/bin/sh\necho\n")), undefined);
  assertEquals(parseBundleShebang(enc("\x7fELF...")), undefined);
  assertEquals(parseBundleShebang(enc("#!/usr/bin/env -S deno run x\n")), undefined);
});

Deno.test("installPlugin() puts a bundle's runtime next to it and points the shebang there", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A stand-in "deno": a script, so the test needs no 100 MB copy.
    const runtime = join(dir, "tools", "deno");
    await Deno.mkdir(join(dir, "tools"));
    await Deno.writeTextFile(runtime, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const src = join(dir, "mycni");
    await Deno.writeTextFile(src, `#!/usr/bin/env -S ${runtime} run -A --ext=js\nbody();\n`);
    const bin = join(dir, "bin");
    const first = await installPlugin(src, bin);
    assertEquals(first, { copied: true, runtime: { path: join(bin, "mycni-deno"), copied: true } });
    assertEquals(
      await Deno.readTextFile(join(bin, "mycni")),
      `#!/usr/bin/env -S ${join(bin, "mycni-deno")} run -A --ext=js\nbody();\n`,
    );
    assertEquals(await Deno.readTextFile(join(bin, "mycni-deno")), "#!/bin/sh\nexit 0\n");
    assertEquals(await installPlugin(src, bin), {
      copied: false,
      runtime: { path: join(bin, "mycni-deno"), copied: false },
    });
    // The build's runtime goes away: the installed copy stays whole.
    await Deno.remove(runtime);
    assertEquals(await Deno.readTextFile(join(bin, "mycni-deno")), "#!/bin/sh\nexit 0\n");
    assertEquals([...Deno.readDirSync(bin)].map((e) => e.name).sort(), ["mycni", "mycni-deno"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pluginProblem() runs the plugin as a runtime does and says why it does not answer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = join(dir, "mycni");
    await Deno.writeTextFile(
      p,
      '#!/bin/sh\n[ "$CNI_COMMAND" = VERSION ] && [ -z "$HOME" ] && echo \'{"supportedVersions":["1.0.0"]}\'\n',
      { mode: 0o755 },
    );
    assertEquals(await pluginProblem(p), undefined);
    await Deno.writeTextFile(p, "#!/usr/bin/env -S /nowhere/deno run\n", { mode: 0o755 });
    assert((await pluginProblem(p))?.includes("VERSION exited 127"));
    await Deno.writeTextFile(p, "#!/bin/sh\necho hello\n", { mode: 0o755 });
    assert((await pluginProblem(p))?.includes("did not print supportedVersions: hello"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
