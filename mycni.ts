// mycni CNI plugin entry: gather env and stdin, run the verb, exit with its code.
// Keep this file's imports to lib/cni, lib/ipam, lib/net, lib/plugin and lib/time: it starts once
// per pod.
import { PLUGIN_ENV, STORE_CODE_CACHE } from "./lib/cni/env.ts";
import { runPlugin } from "./lib/plugin/plugin.ts";
import { delay } from "./lib/time/sleep.ts";

const stdout: string[] = [];
// Only the variables the plugin reads: Deno.env.toObject() copies a runtime's whole environment
// (~0.2 ms of every ADD with 40 variables).
const env: Record<string, string> = {};
for (const name of PLUGIN_ENV) {
  const value = Deno.env.get(name);
  if (value !== undefined) env[name] = value;
}
const code = await runPlugin({
  env,
  readStdin: () => Promise.resolve(Deno.stdin.isTerminal() ? "" : readStdinSync()),
  out: (text) => stdout.push(text + "\n"),
  err: (text) => console.error(text),
});
// Deno stores the module's V8 code cache (written after a run that had none) only from its
// event loop, which a script that ends in Deno.exit() never reaches by itself; a run without
// the cache compiles the plugin from source (~8 ms). Turning the loop, with an asynchronous
// write of the answer, costs ~1 ms, and only the first run after an install needs it. So the
// agent's VERSION right after installing the plugin (STORE_CODE_CACHE set) turns it and waits,
// and any run at random one time in CACHE_TURN_EVERY turns it, so that a plugin installed by
// hand, or whose cache was lost, gets it back within a few calls; the rest write
// synchronously. (At random, not by pid: each Deno process uses several pids for its threads,
// so pids of successive runs step by a near-constant stride and could miss a residue forever.)
// A runtime's VERSION does not wait: podman sends one before each ADD and DEL, and the wait was
// ~3 ms of each. Deno.exit() then skips the runtime teardown of a natural exit (~3 ms).
const CACHE_TURN_EVERY = 16;
const answer = new TextEncoder().encode(stdout.join(""));
if (env.CNI_COMMAND === "VERSION" && Deno.env.get(STORE_CODE_CACHE) === "1") {
  await writeStdoutTurningLoop(answer);
  // One turn was not always enough for the cache to be stored (2 fresh installs in 20 kept none):
  // a timer lets the loop run until nothing else is pending (40 in 40, and 30 in 30 under load).
  // delay(), not setTimeout, which would load ~20 more modules (lib/time/sleep.ts says why).
  await delay(1);
} else if (Math.random() * CACHE_TURN_EVERY < 1) await writeStdoutTurningLoop(answer);
else writeStdout(answer);
Deno.exit(code);

function writeStdout(bytes: Uint8Array): void {
  try {
    for (let rest = bytes; rest.length > 0;) rest = rest.subarray(Deno.stdout.writeSync(rest));
  } catch { /* the runtime stopped listening: the exit code still tells it */ }
}

async function writeStdoutTurningLoop(bytes: Uint8Array): Promise<void> {
  try {
    // Awaited even when empty (DEL prints nothing): the await is what turns the loop.
    let rest = bytes;
    do rest = rest.subarray(await Deno.stdout.write(rest)); while (rest.length > 0);
  } catch { /* as above */ }
}

// A plain read loop: `new Response(Deno.stdin.readable).text()` costs ~8 ms of stream set-up,
// paid on every ADD and DEL.
function readStdinSync(): string {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) {
    chunks.push(buf.slice(0, n));
  }
  const all = new Uint8Array(chunks.reduce((len, c) => len + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}
