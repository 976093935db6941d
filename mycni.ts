// mycni CNI plugin entry: gather env and stdin, run the verb, exit with its code.
// Keep this file's imports to lib/cni, lib/ipam, lib/net and lib/plugin: it starts once per pod.
import { runPlugin } from "./lib/plugin/plugin.ts";

const code = await runPlugin({
  env: Deno.env.toObject(),
  readStdin: () =>
    Deno.stdin.isTerminal() ? Promise.resolve("") : new Response(Deno.stdin.readable).text(),
  out: (text) => console.log(text),
  err: (text) => console.error(text),
});
Deno.exit(code);
