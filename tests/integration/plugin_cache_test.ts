// The built plugin's V8 code cache: Deno writes it only from its event loop, which the plugin
// turns on the agent's VERSION after an install (STORE_CODE_CACHE) and on a random one run in 16
// otherwise (mycni.ts says why). A fresh install must get its cache at the agent's VERSION, or
// within a few runs of anything else; without it every ADD compiles the plugin from source. A
// runtime's VERSION must not wait for it: podman sends one before each ADD and DEL. No root
// needed: DEL without a netns, of a veth that is not there, touches only its temp IPAM directory.
import { DatabaseSync } from "node:sqlite";
import { STORE_CODE_CACHE } from "../../lib/cni/env.ts";
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { PLUGIN } from "../harness/plugin.ts";

const isBundle = new TextDecoder().decode(Deno.readFileSync(PLUGIN).subarray(0, 2)) === "#!";

/** A scratch directory, removed with everything in it when the test's scope ends. */
async function scratchDir(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** A copy of the built plugin at a path, and with a DENO_DIR, that no run has seen. */
async function freshInstall(dir: string, name: string) {
  const plugin = `${dir}/${name}`;
  await Deno.copyFile(PLUGIN, plugin);
  const denoDir = `${dir}/deno-${name}`;
  return {
    /** Whether the cache holds the plugin; throws when the cache cannot be read. */
    cached() {
      const file = `${denoDir}/v8_code_cache_v2`;
      try {
        Deno.statSync(file);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return false; // no run has written one yet
        throw err;
      }
      try {
        using db = new DatabaseSync(file, { readOnly: true });
        const row = db.prepare("SELECT count(*) AS n FROM codecache WHERE specifier = ?")
          .get(`file://${plugin}`) as { n: number };
        return row.n > 0;
      } catch (err) {
        throw new Error(`Cannot read the code cache ${file}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    },
    async run(env: Record<string, string>, stdin: string) {
      const out = await runOutput([plugin], {
        stdin,
        env: { DENO_DIR: denoDir, PATH: "/usr/bin:/bin", ...env },
      });
      assertEquals(out.code, 0, `${out.stdout} ${out.stderr}`);
      return out.stdout;
    },
  };
}

/** A DEL needing no root: no netns, of a veth that is not there; IPAM state under `dir`. */
function rootlessDel(dir: string, name: string) {
  return {
    conf: JSON.stringify({
      cniVersion: "1.0.0",
      name,
      type: "mycni",
      podcidr: "10.250.9.0/24",
      dataDir: `${dir}/ipam`,
      logFile: `${dir}/mycni.log`,
    }),
    env: {
      CNI_COMMAND: "DEL",
      CNI_CONTAINERID: name,
      CNI_IFNAME: "eth0",
      CNI_NETNS: "",
      CNI_PATH: "/usr/lib/cni",
    },
  };
}

Deno.test({
  name: "the built plugin's code cache is written at the agent's VERSION, or within a few DELs",
  // A `deno compile` executable keeps no cache in DENO_DIR; this build machine makes bundles.
  ignore: !isBundle,
}, async () => {
  await using scratch = await scratchDir("mycni-cache-");
  const dir = scratch.path;
  const first = await freshInstall(dir, "mycni-a");
  const version = await first.run(
    { CNI_COMMAND: "VERSION", [STORE_CODE_CACHE]: "1" },
    '{"cniVersion":"1.0.0"}',
  );
  assertEquals(JSON.parse(version).cniVersion, "1.0.0");
  assert(first.cached(), "no code cache after the agent's VERSION");

  const other = await freshInstall(dir, "mycni-b");
  const del = rootlessDel(dir, "cachetest");
  // 1 in 16 per run: the chance of 200 runs without one is (15/16)^200, about 2e-6.
  let runs = 0;
  while (!other.cached() && runs < 200) {
    runs++;
    assertEquals(await other.run(del.env, del.conf), "");
  }
  assert(other.cached(), `no code cache after ${runs} DELs`);
});

Deno.test({
  name: "a runtime's VERSION does not wait for the code cache to be stored",
  ignore: !isBundle,
}, async () => {
  await using scratch = await scratchDir("mycni-cache-");
  const dir = scratch.path;
  // A VERSION that waited would leave a cache behind every time; one that does not leaves it
  // only when it is the random 1 run in 16 that turns the loop: all 6 cached by chance is
  // (1/16)^6, about 6e-8.
  const cached: boolean[] = [];
  for (let i = 0; i < 6; i++) {
    const fresh = await freshInstall(dir, `mycni-${i}`);
    await fresh.run({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    cached.push(fresh.cached());
  }
  assert(cached.includes(false), `each of 6 fresh VERSIONs stored a cache: ${cached}`);
});

Deno.test({
  name: "VERSION and DEL load no module but the plugin's own (setTimeout would load ~20 more)",
  ignore: !isBundle,
}, async () => {
  await using scratch = await scratchDir("mycni-modules-");
  const dir = scratch.path;
  // The same bundle, with V8 asked to report each code cache it deserializes: one per module
  // loaded with a cache, so a run that pulls in Deno's Node timers reports ~20 more.
  const plugin = `${dir}/mycni`;
  const [shebang, ...rest] = (await Deno.readTextFile(PLUGIN)).split("\n");
  assert(shebang.includes("--v8-flags="), shebang);
  const traced = shebang.replace("--v8-flags=", "--v8-flags=--profile-deserialization,");
  await Deno.writeTextFile(plugin, [traced, ...rest].join("\n"), { mode: 0o755 });
  const env = { DENO_DIR: `${dir}/deno`, PATH: "/usr/bin:/bin" };
  const run = async (extra: Record<string, string>, stdin: string) => {
    const out = await runOutput([plugin], { stdin, env: { ...env, ...extra } });
    assertEquals(out.code, 0, `${out.stdout} ${out.stderr}`);
    // V8 prints these on stdout.
    const lines = `${out.stdout}\n${out.stderr}`.split("\n");
    return lines.filter((l) => l.startsWith("[Deserializing from")).length;
  };
  const version = { CNI_COMMAND: "VERSION" };
  const agentVersion = { ...version, [STORE_CODE_CACHE]: "1" };
  await run(agentVersion, "{}"); // writes the cache
  assertEquals(await run(version, "{}"), 1, "modules deserialized by a cached VERSION");
  assertEquals(await run(agentVersion, "{}"), 1, "modules deserialized by the agent's VERSION");
  const del = rootlessDel(dir, "modtest");
  assertEquals(await run(del.env, del.conf), 1, "modules deserialized by a DEL");
});
