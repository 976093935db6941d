// mycni CNI plugin entry: gather env and stdin, run the verb, exit with its code.
// Keep this file's imports to lib/cni, lib/ipam, lib/net and lib/plugin: it starts once per pod.
import { runPlugin } from "./lib/plugin/plugin.ts";

const stdout: string[] = [];
const code = await runPlugin({
  env: Deno.env.toObject(),
  readStdin: () => Promise.resolve(Deno.stdin.isTerminal() ? "" : readStdinSync()),
  out: (text) => stdout.push(text + "\n"),
  err: (text) => console.error(text),
});
// The answer leaves through an asynchronous write, so Deno's event loop turns once before the
// exit: that turn is where Deno stores the module's V8 code cache after a first run (from
// purely synchronous code, Deno.exit() never reaches it and every run compiled the plugin from
// source, ~3.5 ms per ADD). Deno.exit() then skips the runtime teardown of a natural exit (~3 ms).
await writeStdout(stdout.join(""));
Deno.exit(code);

async function writeStdout(text: string): Promise<void> {
  let rest = new TextEncoder().encode(text);
  try {
    while (rest.length > 0) rest = rest.subarray(await Deno.stdout.write(rest));
  } catch { /* the runtime stopped listening: the exit code still tells it */ }
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
