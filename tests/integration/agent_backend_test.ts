// The built agent's backends in one node namespace (no cluster): a peer on-link and one behind
// the default gateway, under --backend auto, vxlan and host-gw; and the agent's rtnetlink code
// against a kernel holding thousands of entries. Kernel state is read back with ip and bridge.
import { join } from "node:path";
import { listFdb, listNeighbours } from "../../lib/net/neigh.ts";
import { Rtnl } from "../../lib/net/netlink.ts";
import { flushOwnedRoutes, listOwnedRoutes } from "../../lib/net/route.ts";
import { ensureVxlan, VXLAN_DEVICE } from "../../lib/net/vxlan.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import {
  agentArgv,
  curl,
  makeAgentNode,
  ourRoutes,
  spawnIn,
  uninstallArgv,
  waitFor,
} from "../harness/agent_node.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";

/** n1 is the agent's node; n2 is on its link; n3 is only reachable via the default gateway. */
const NODES = [
  { name: "n1", ip: "192.0.2.11", podCIDRs: ["10.244.1.0/24"] },
  { name: "n2", ip: "192.0.2.12", podCIDRs: ["10.244.2.0/24"] },
  { name: "n3", ip: "198.51.100.13", podCIDRs: ["10.244.3.0/24"] },
];
const HEALTH = "http://127.0.0.1:9749";

async function vxlanLink(ns: TempNetns) {
  const out = await runOutput(ns.exec(["ip", "-d", "-j", "link", "show", "dev", VXLAN_DEVICE]));
  return out.code === 0 ? JSON.parse(out.stdout)[0] : undefined;
}

async function entries(ns: TempNetns): Promise<string[]> {
  const neigh = await runOutput(ns.exec(["ip", "neigh", "show", "dev", VXLAN_DEVICE]));
  const fdb = await runOutput(ns.exec(["bridge", "fdb", "show", "dev", VXLAN_DEVICE]));
  return [...neigh.stdout.split("\n"), ...fdb.stdout.split("\n")]
    .map((l) => l.trim()).filter((l) => /permanent/i.test(l)).sort();
}

async function metric(ns: TempNetns, line: RegExp): Promise<string | undefined> {
  const text = (await curl(ns, `${HEALTH}/metrics`)).text;
  return text.split("\n").find((l) => line.test(l));
}

Deno.test({
  name:
    "mycni-init --backend host-gw reports a peer that is not on-link and configures nothing for it",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode({ nodes: NODES, prefix: "mcb" });
  const { ns, dir } = node;
  await using agent = spawnIn(
    ns,
    agentArgv(dir, ["--nodes-file", join(dir, "nodes.json"), "--backend", "host-gw"]),
  );
  const healthz = async () => {
    const r = await curl(ns, `${HEALTH}/healthz`);
    return { code: r.code, body: r.code ? JSON.parse(r.text) : {} };
  };
  await waitFor("n2's route", async () => (await ourRoutes(ns)).length === 1, { proc: agent });
  await waitFor("healthz to answer", async () => (await healthz()).code !== 0);
  const h = await healthz();
  assertEquals(h.code, 503);
  assertEquals(h.body.unreachable, [
    "node n3 podCIDR 10.244.3.0/24: --backend host-gw cannot reach it: " +
    "198.51.100.13 is not on-link: via 192.0.2.1",
  ]);
  assertMatch(h.body.lastError, /1 peer podCIDR\(s\) unreachable, first: node n3/);
  // n2 is configured; for n3 there is nothing at all: no route of anyone's, no tunnel.
  assertEquals(await ourRoutes(ns), ["10.244.2.0/24 via 192.0.2.12"]);
  assertEquals((await run(ns.exec(["ip", "route", "show", "10.244.3.0/24"]))).trim(), "");
  assertEquals(await vxlanLink(ns), undefined);
  assertEquals(
    await metric(ns, /^mycni_unreachable_peer_cidrs /),
    "mycni_unreachable_peer_cidrs 1",
  );
  assertEquals(
    await metric(ns, /^mycni_backend_routes\{backend="host-gw"\}/),
    'mycni_backend_routes{backend="host-gw"} 1',
  );
  const conf = JSON.parse(await Deno.readTextFile(join(dir, "conf", "10-mycni.conflist")));
  assertEquals(conf.plugins[0].mtu, 1500, "host-gw keeps the underlay's full MTU");

  // Retries (0.5 s, 1 s, 2 s...) do not repeat the warning: once per peer and reason.
  await new Promise((r) => setTimeout(r, 3000));
  const warned = () => agent.logs.filter((l) => l.includes('"peer unreachable"'));
  assertEquals(warned().length, 1, warned().join("\n"));
  assertMatch(warned()[0], /"node":"n3".*"reason":"--backend host-gw cannot reach it: /);

  // The network changes under the agent: n3's segment becomes on-link. The agent's own retry
  // routes it, and /healthz recovers.
  await run(ns.exec(["ip", "addr", "add", "198.51.100.11/24", "dev", "u0"]));
  await waitFor(
    "n3's host-gw route",
    async () => (await ourRoutes(ns)).includes("10.244.3.0/24 via 198.51.100.13"),
    { ms: 12000 },
  );
  await waitFor("healthz 200", async () => (await healthz()).code === 200);
  assertEquals(
    await metric(ns, /^mycni_unreachable_peer_cidrs /),
    "mycni_unreachable_peer_cidrs 0",
  );
  assertEquals(await agent.stop(), 0);
});

Deno.test({
  name:
    "mycni-init --once: auto tunnels only the off-link peer, vxlan all, host-gw none; --uninstall",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode({ nodes: NODES, prefix: "mcb" });
  const { ns, dir } = node;
  const once = (...flags: string[]) =>
    runOutput(
      ns.exec(agentArgv(dir, ["--nodes-file", join(dir, "nodes.json"), "--once", ...flags])),
    );

  assertEquals((await once()).code, 0);
  let link = await vxlanLink(ns);
  assertEquals(
    [link.linkinfo.info_data.id, link.linkinfo.info_data.port, link.linkinfo.info_data.local],
    [1, 8472, "192.0.2.11"],
  );
  assertEquals(link.linkinfo.info_data.learning, false);
  assertEquals(await ourRoutes(ns), [
    "10.244.2.0/24 via 192.0.2.12",
    "10.244.3.0/24 via 10.244.3.0",
  ]);
  assertMatch(
    await run(ns.exec(["ip", "route", "show", "10.244.3.0/24"])),
    /via 10\.244\.3\.0 dev mycni\.vxlan proto 77 onlink/,
  );
  assertEquals(await entries(ns), [
    "0e:4d:c6:33:64:0d dst 198.51.100.13 self permanent",
    "10.244.3.0 lladdr 0e:4d:c6:33:64:0d PERMANENT",
  ]);
  assertMatch(
    await run(ns.exec(["ip", "addr", "show", "dev", VXLAN_DEVICE])),
    /inet 10\.244\.1\.0\/32 /,
  );

  // Forced VXLAN with another VNI and port: the device is made anew, every peer tunnelled.
  const forced = await once("--backend", "vxlan", "--vxlan-vni", "7", "--vxlan-port", "4789");
  assertEquals(forced.code, 0, forced.stderr);
  link = await vxlanLink(ns);
  assertEquals([link.linkinfo.info_data.id, link.linkinfo.info_data.port], [7, 4789]);
  assertMatch(
    forced.stderr,
    /"vxlan device changed".*recreated \(vni 1 -> 7, dstport 8472 -> 4789\)/,
  );
  assertEquals(await ourRoutes(ns), [
    "10.244.2.0/24 via 10.244.2.0",
    "10.244.3.0/24 via 10.244.3.0",
  ]);
  assertEquals(await entries(ns), [
    "0e:4d:c0:00:02:0c dst 192.0.2.12 self permanent",
    "0e:4d:c6:33:64:0d dst 198.51.100.13 self permanent",
    "10.244.2.0 lladdr 0e:4d:c0:00:02:0c PERMANENT",
    "10.244.3.0 lladdr 0e:4d:c6:33:64:0d PERMANENT",
  ]);

  // host-gw: the tunnel goes, n3 cannot be reached, and --once says so with its exit code.
  const hostGw = await once("--backend", "host-gw");
  assertEquals(hostGw.code, 1, "an unreachable peer is a failed sync");
  assertMatch(hostGw.stderr, /"peer unreachable".*"node":"n3"/);
  assertEquals(await vxlanLink(ns), undefined);
  assertEquals(await ourRoutes(ns), ["10.244.2.0/24 via 192.0.2.12"]);

  assertEquals((await once()).code, 0);
  await run(ns.exec(uninstallArgv(dir)));
  assertEquals(await vxlanLink(ns), undefined);
  assertEquals(await ourRoutes(ns), []);
});

Deno.test({
  name:
    "the agent's rtnetlink dumps read thousands of routes, neighbours and FDB entries (> 64 KiB)",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcn");
  const x = (argv: string[]) => run(ns.exec(argv));
  await x(["ip", "link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
  await x(["ip", "link", "set", "u0", "up"]);
  await x(["ip", "addr", "add", "192.0.2.11/24", "dev", "u0"]);
  // 3000 IPv4 routes of ours: each RTM_NEWROUTE is ~60 bytes, so the dump is ~180 KB, several
  // recvfrom()s of a multi-part reply into the socket's 64 KiB buffer.
  const COUNT = 3000;
  const lines = Array.from(
    { length: COUNT },
    (_, i) => `route add 10.${100 + (i >> 8)}.${i & 255}.0/24 via 192.0.2.12 proto 77`,
  );
  lines.push("route add 10.99.0.0/24 via 192.0.2.99 proto static");
  await run(ns.exec(["ip", "-batch", "-"]), { stdin: lines.join("\n") + "\n" });
  using nl = Rtnl.open(ns.path);
  const dev = ensureVxlan(nl, {
    vni: 1,
    port: 8472,
    local: "192.0.2.11",
    mac: "0e:4d:c0:00:02:0b",
    mtu: 1450,
  }).dev;
  const neigh = [], fdb = [];
  for (let i = 0; i < 1500; i++) {
    const mac = `0e:4d:c6:33:${(i >> 8).toString(16).padStart(2, "0")}:${
      (i & 255).toString(16).padStart(2, "0")
    }`;
    neigh.push(`neigh add 10.${100 + (i >> 8)}.${i & 255}.0 lladdr ${mac} dev ${VXLAN_DEVICE}`);
    fdb.push(`fdb add ${mac} dev ${VXLAN_DEVICE} dst 198.51.${100 + (i >> 8)}.${i & 255} self`);
  }
  await run(ns.exec(["ip", "-batch", "-"]), { stdin: neigh.join("\n") + "\n" });
  await run(ns.exec(["bridge", "-batch", "-"]), { stdin: fdb.join("\n") + "\n" });

  const mine = listOwnedRoutes(nl);
  assertEquals(mine.length, COUNT);
  const shown = JSON.parse(await x(["ip", "-j", "route", "show", "proto", "77"])) as {
    dst: string;
    gateway: string;
  }[];
  assertEquals(
    mine.map((r) => `${r.dst} ${r.via}`).sort(),
    shown.map((r) => `${r.dst} ${r.gateway}`).sort(),
  );
  const n = listNeighbours(nl, dev);
  assertEquals(n.filter((e) => e.permanent).length, 1500);
  assert(n.some((e) => e.ip === "10.105.219.0" && e.mac === "0e:4d:c6:33:05:db"));
  const f = listFdb(nl, dev);
  assertEquals(f.length, 1500);
  assert(f.some((e) => e.mac === "0e:4d:c6:33:05:db" && e.dst === "198.51.105.219"));

  assertEquals(flushOwnedRoutes(nl), COUNT);
  assertEquals(listOwnedRoutes(nl), []);
  assertMatch(await x(["ip", "route", "show", "10.99.0.0/24"]), /via 192\.0\.2\.99/);
});
