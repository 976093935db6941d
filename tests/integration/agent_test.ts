// The built agent (bin/mycni-init) in a namespace of its own, exactly as the DaemonSet or the
// simulated cluster runs it: --once, watching a nodes file, and watching the fake API server.
// Everything kernel-side happens inside the namespace the test creates.
import { join } from "node:path";
import { run, runOutput } from "../../lib/process/run.ts";
import {
  agentArgv,
  curl,
  fakeApiServer,
  makeAgentNode,
  ourRoutes,
  ROOT,
  spawnIn,
  STAND_IN_PLUGIN,
  uninstallArgv,
  waitFor,
  writeNodes,
} from "../harness/agent_node.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns } from "../harness/netns.ts";

const NODES = [
  {
    name: "n1",
    ip: "192.0.2.11",
    ips: ["2001:db8::11"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  },
  {
    name: "n2",
    ip: "192.0.2.12",
    ips: ["2001:db8::12"],
    podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
  },
  { name: "n3", ip: "192.0.2.13", podCIDRs: ["10.244.3.0/24"] },
];

/** Node n1 as a dual-stack node: MTU 1450, a static route that is not ours, a stand-in portmap. */
const NODE = {
  nodes: NODES,
  prefix: "mca",
  mtu: 1450,
  ipv6: true,
  foreignRoute: true,
  portmapStub: true,
};

async function saved(ns: TempNetns): Promise<string> {
  return (await run(ns.exec(["iptables-save"]))) + (await run(ns.exec(["ip6tables-save"])));
}

/** The agent's nftables table as `nft list` prints it, "" when there is none. */
async function nftTable(ns: TempNetns): Promise<string> {
  const out = await runOutput(ns.exec(["nft", "list", "table", "inet", "mycni"]));
  return out.code === 0 ? out.stdout : "";
}

const V4_V6_ROUTES = [
  "10.244.2.0/24 via 192.0.2.12",
  "10.244.3.0/24 via 192.0.2.13",
  "fd00:10:244:2::/64 via 2001:db8::12",
];

Deno.test({
  name: "mycni-init --once installs and syncs, twice leaves one copy, --uninstall leaves nothing",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode(NODE);
  const { ns, dir } = node;
  const once = agentArgv(dir, ["--nodes-file", join(dir, "nodes.json"), "--once"]);
  // An upgrade: the masquerade chain an older agent left in iptables goes once nft masquerades.
  await run(ns.exec(["iptables-restore", "--noflush"]), {
    stdin: "*nat\n:MYCNI-POSTRTG - [0:0]\n" +
      '-A POSTROUTING -m comment --comment "mycni masquerade" -j MYCNI-POSTRTG\n' +
      "-A MYCNI-POSTRTG -s 10.244.1.0/24 -j MASQUERADE\nCOMMIT\n",
  });
  await run(ns.exec(once));
  const first = { rules: await saved(ns), table: await nftTable(ns) };
  await run(ns.exec(once));

  assertEquals(await ourRoutes(ns), V4_V6_ROUTES);
  const rules = await saved(ns);
  const table = await nftTable(ns);
  const strip = (s: string) => s.split("\n").filter((l) => !l.startsWith("#")).join("\n");
  assertEquals(strip(rules), strip(first.rules));
  assertEquals(table, first.table);
  assert(!rules.includes("MYCNI-POSTRTG"), "the legacy iptables masquerade chain is gone");
  for (const family of [rules.split("*filter")[1], rules.split("*filter")[2]]) {
    assertEquals(family.split("\n").filter((l) => l.includes("-j MYCNI-FWD")).length, 1);
  }
  assertMatch(rules, /-A MYCNI-FWD -s 10\.244\.1\.0\/24 -j ACCEPT/);
  assertMatch(
    table,
    /ip saddr @podnets4 ip daddr != @nomasq4 ip daddr != 224\.0\.0\.0\/4 masquerade fully-random/,
  );
  assertMatch(
    table,
    /ip6 saddr @podnets6 ip6 daddr != @nomasq6 ip6 daddr != ff00::\/8 masquerade fully-random/,
  );
  assertMatch(table, /set nomasq4 \{[^}]*elements = \{ 10\.244\.1\.0\/24, 10\.244\.2\.0\/23 \}/s);
  assertMatch(table, /hook postrouting priority srcnat/);
  assertEquals((await run(ns.exec(["cat", "/proc/sys/net/ipv4/ip_forward"]))).trim(), "1");
  assertEquals((await run(ns.exec(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]))).trim(), "1");

  const conf = JSON.parse(await Deno.readTextFile(join(dir, "conf", "10-mycni.conflist")));
  assertEquals(conf.plugins[0].podCIDRs, ["10.244.1.0/24", "fd00:10:244:1::/64"]);
  assertEquals(conf.plugins[0].mtu, 1400, "underlay 1450 less VXLAN over IPv4 (--backend auto)");
  assertEquals(conf.plugins[0].dataDir, join(dir, "data"));
  assertEquals(conf.plugins[1].type, "portmap");
  assertEquals((Deno.statSync(join(dir, "bin", "mycni")).mode ?? 0) & 0o777, 0o755);

  await run(ns.exec(uninstallArgv(dir)));
  assertEquals(await ourRoutes(ns), []);
  assert(!(await saved(ns)).includes("MYCNI"));
  assertEquals(await nftTable(ns), "");
  assertEquals([...Deno.readDirSync(join(dir, "conf"))], []);
  assertEquals([...Deno.readDirSync(join(dir, "bin"))].map((e) => e.name), ["portmap"]);
  assertMatch(await run(ns.exec(["ip", "route", "show", "10.99.0.0/24"])), /via 192\.0\.2\.99/);
});

Deno.test({
  name: "mycni-init follows the nodes file and answers /healthz and /metrics",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode(NODE);
  const { ns, dir } = node;
  await using agent = spawnIn(ns, agentArgv(dir, ["--nodes-file", join(dir, "nodes.json")]));
  await waitFor(
    "healthz 200",
    async () => (await curl(ns, "http://127.0.0.1:9749/healthz")).code === 200,
  );
  assertEquals(await ourRoutes(ns), V4_V6_ROUTES);
  const metrics = (await curl(ns, "http://127.0.0.1:9749/metrics")).text;
  assertMatch(metrics, /^mycni_nodes_known 3$/m);
  assertMatch(metrics, /^mycni_routes_programmed 3$/m);
  assertMatch(metrics, /^mycni_errors_total 0$/m);

  await writeNodes(dir, [...NODES, { name: "n4", ip: "192.0.2.14", podCIDRs: ["10.244.4.0/24"] }]);
  await waitFor(
    "n4's route",
    async () => (await ourRoutes(ns)).includes("10.244.4.0/24 via 192.0.2.14"),
  );
  await writeNodes(dir, NODES.filter((n) => n.name !== "n2"));
  await waitFor("n2's routes gone", async () => (await ourRoutes(ns)).length === 1);
  assertEquals(await ourRoutes(ns), ["10.244.3.0/24 via 192.0.2.13"]);

  // A broken file keeps the last good routes and shows in /healthz.
  await Deno.writeTextFile(join(dir, "nodes.json"), "[{");
  await waitFor(
    "healthz 503",
    async () => (await curl(ns, "http://127.0.0.1:9749/healthz")).code === 503,
  );
  assertEquals(await ourRoutes(ns), ["10.244.3.0/24 via 192.0.2.13"]);

  assertEquals(await agent.stop(), 0);
  assert(agent.logs.some((l) => l.includes('"route deleted"') && l.includes("10.244.2.0/24")));
  for (const line of agent.logs) JSON.parse(line);
  assertMatch(await run(ns.exec(["ip", "route", "show", "10.99.0.0/24"])), /via 192\.0\.2\.99/);
});

Deno.test({
  name:
    "mycni-init follows the API's watch through drops and 410 Gone, keeping routes while it is down",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode(NODE);
  const { ns, dir } = node;
  const api = "http://127.0.0.1:6443";
  await using server = fakeApiServer(ns, { nodesFile: join(dir, "nodes.json") });
  await waitFor(
    "fake API server",
    async () => (await curl(ns, `${api}/api/v1/nodes`)).code === 200,
    { ms: 15000 },
  );
  await using agent = spawnIn(ns, agentArgv(dir, ["--kube-api", api]));
  await waitFor(
    "healthz 200",
    async () => (await curl(ns, "http://127.0.0.1:9749/healthz")).code === 200,
  );
  assertEquals(await ourRoutes(ns), V4_V6_ROUTES);

  const put = (name: string, i: number) =>
    curl(ns, `${api}/_test/nodes/${name}`, {
      method: "PUT",
      body: JSON.stringify({ ip: `192.0.2.${10 + i}`, podCIDRs: [`10.244.${i}.0/24`] }),
    });
  const has = (dst: string) => async () => (await ourRoutes(ns)).some((r) => r.startsWith(dst));
  await put("n4", 4);
  await waitFor("n4 (ADDED)", has("10.244.4.0/24"));
  await put("n4", 7); // MODIFIED: new podCIDR and address
  await waitFor("n4 moved", has("10.244.7.0/24"));
  assert(!(await has("10.244.4.0/24")()));
  await curl(ns, `${api}/_test/nodes/n2`, { method: "DELETE" });
  await waitFor("n2 gone (DELETED)", async () => !(await has("10.244.2.0/24")()));

  await curl(ns, `${api}/_test/drop`, { method: "POST" });
  await put("n5", 5);
  await waitFor("n5 after a dropped watch", has("10.244.5.0/24"));
  await curl(ns, `${api}/_test/expire`, { method: "POST" });
  await curl(ns, `${api}/_test/drop`, { method: "POST" });
  await put("n6", 6);
  await waitFor("n6 after 410 Gone", has("10.244.6.0/24"));
  await curl(ns, `${api}/_test/garbage`, { method: "POST" });
  await curl(ns, `${api}/_test/bookmark`, { method: "POST" });
  await put("n8", 8);
  await waitFor("n8 after a garbage line", has("10.244.8.0/24"));

  const before = await ourRoutes(ns);
  assertEquals(await server.stop(), 0);
  await waitFor(
    "healthz 503 with the API down",
    async () => (await curl(ns, "http://127.0.0.1:9749/healthz")).code === 503,
  );
  assertMatch((await curl(ns, "http://127.0.0.1:9749/metrics")).text, /^mycni_watching 0$/m);
  assertEquals(await ourRoutes(ns), before);
  assertEquals(await agent.stop(), 0);
  assert(agent.logs.some((l) => l.includes("expired, listing again")));
});

Deno.test({
  name:
    "mycni-init installs a bundled plugin with its runtime: it runs after the build's deno is gone",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode(NODE);
  const { ns, dir } = node;
  const built = await Deno.readTextFile(join(ROOT, "bin/mycni"));
  const shebang = /^#!\/usr\/bin\/env -S (\S+) (.*)$/m.exec(built.split("\n")[0]);
  if (!shebang) return; // a compiled plugin carries its runtime inside: nothing to install
  // A checkout that will move: its own deno, and the plugin built against it.
  const checkout = join(dir, "checkout");
  await Deno.mkdir(checkout);
  await Deno.copyFile(shebang[1], join(checkout, "deno"));
  const src = join(checkout, "mycni");
  await Deno.writeTextFile(
    src,
    built.replace(/^.*\n/, `#!/usr/bin/env -S ${join(checkout, "deno")} ${shebang[2]}\n`),
    { mode: 0o755 },
  );
  const once = agentArgv(dir, ["--nodes-file", join(dir, "nodes.json"), "--once"], {
    pluginSrc: src,
  });
  const out = await runOutput(ns.exec(once));
  assertEquals(out.code, 0, out.stderr);
  assertMatch(out.stderr, /"plugin runtime installed"/);
  assertMatch(out.stderr, /"installed plugin runs"/);
  await Deno.remove(checkout, { recursive: true });
  const version = await runOutput([join(dir, "bin", "mycni")], {
    env: { CNI_COMMAND: "VERSION" },
    clearEnv: true,
    stdin: '{"cniVersion":"1.0.0"}',
  });
  assertEquals(version.code, 0, version.stderr);
  assert(JSON.parse(version.stdout).supportedVersions.includes("1.1.0"));
});

Deno.test({
  name:
    "mycni-init reports an installed plugin that does not run in /healthz, /metrics and the log",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode(NODE);
  const { ns, dir } = node;
  const broken = join(dir, "broken-plugin");
  await Deno.writeTextFile(broken, "#!/bin/sh\necho 'cannot load libc' >&2\nexit 1\n");
  await using agent = spawnIn(
    ns,
    agentArgv(dir, ["--nodes-file", join(dir, "nodes.json")], { pluginSrc: broken }),
  );
  await waitFor(
    "the plugin problem logged",
    () => agent.logs.some((l) => l.includes("installed plugin does not run")),
    { proc: agent },
  );
  const health = await curl(ns, "http://127.0.0.1:9749/healthz");
  assertEquals(health.code, 503);
  assertMatch(JSON.parse(health.text).lastError, /VERSION exited 1: cannot load libc/);
  assertMatch((await curl(ns, "http://127.0.0.1:9749/metrics")).text, /^mycni_plugin_runs 0$/m);
  // Fixed at the source: the next install runs it again and the node turns healthy.
  await Deno.writeTextFile(broken, STAND_IN_PLUGIN);
  await waitFor(
    "healthz 200 once the plugin runs",
    async () => (await curl(ns, "http://127.0.0.1:9749/healthz")).code === 200,
    { ms: 20000, proc: agent },
  );
});
