// mycni CNI plugin entry: gather env and stdin, run the verb, exit with its code.
// Keep this file's imports to lib/cni, lib/ipam, lib/net and lib/plugin: it starts once per pod.
import { runPlugin } from "./lib/plugin/plugin.ts";

const code = await runPlugin({
  env: Deno.env.toObject(),
  readStdin: () => Promise.resolve(Deno.stdin.isTerminal() ? "" : readStdinSync()),
  out: (text) => console.log(text),
  err: (text) => console.error(text),
});
Deno.exit(code);

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
