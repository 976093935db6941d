// The plugin starts once per pod: its module graph must stay free of the agent's modules, npm
// packages and node: built-ins (each node: import costs tens of ms of start-up). DESIGN.md.
import { fileURLToPath } from "node:url";
import { assertEquals } from "../harness/assert.ts";

Deno.test("mycni.ts imports nothing from lib/kube, lib/node, npm: or node:", async () => {
  const entry = fileURLToPath(new URL("../../mycni.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--no-config", entry],
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  const specifiers = graph.modules.map((m) => m.specifier);
  const bad = specifiers.filter((s) => /\/lib\/(kube|node)\/|^npm:|^node:/.test(s));
  assertEquals(bad, []);
  assertEquals(specifiers.some((s) => s.endsWith("/lib/plugin/plugin.ts")), true);
});
