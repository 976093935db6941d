// The built plugin's V8 code cache: Deno writes it only from its event loop, which the plugin
// turns on a random one run in 16 (mycni.ts says why). A fresh install must still get its
// cache within a few runs, or every ADD compiles the plugin from source. No root needed.
import { DatabaseSync } from "node:sqlite";
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { PLUGIN } from "../harness/plugin.ts";

const isBundle = new TextDecoder().decode(Deno.readFileSync(PLUGIN).subarray(0, 2)) === "#!";

Deno.test({
  name: "the built plugin's code cache is written within a few runs of a fresh install",
  // A `deno compile` executable keeps no cache in DENO_DIR; this build machine makes bundles.
  ignore: !isBundle,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-cache-" });
  try {
    // A path and a DENO_DIR no run has seen: no cache to start with.
    const plugin = `${dir}/mycni`;
    await Deno.copyFile(PLUGIN, plugin);
    const denoDir = `${dir}/deno`;
    const cached = () => {
      try {
        using db = new DatabaseSync(`${denoDir}/v8_code_cache_v2`, { readOnly: true });
        const row = db.prepare("SELECT count(*) AS n FROM codecache WHERE specifier = ?")
          .get(`file://${plugin}`) as { n: number };
        return row.n > 0;
      } catch {
        return false; // no database yet
      }
    };
    // 1 in 16 per run: the chance of 200 runs without one is (15/16)^200, about 2e-6.
    let runs = 0;
    while (!cached() && runs < 200) {
      runs++;
      const out = await runOutput([plugin], {
        stdin: '{"cniVersion":"1.0.0"}',
        env: { CNI_COMMAND: "VERSION", DENO_DIR: denoDir, PATH: "/usr/bin:/bin" },
      });
      assertEquals(out.code, 0, out.stderr);
      assertEquals(JSON.parse(out.stdout).cniVersion, "1.0.0");
    }
    assert(cached(), `no code cache for ${plugin} after ${runs} runs`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
