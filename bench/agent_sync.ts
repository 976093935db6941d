// Benchmark of the node agent at 1000 nodes (dual-stack, podCIDRs allocated in order as the
// node IPAM controller does), half of them on the agent's link (host-gw) and half behind a
// router (VXLAN: a route, a neighbour per family and an FDB entry each): start -> first full
// sync from a nodes file, a no-change resync, the agent's periodic resyncs (every 10 s, and the
// re-check every 60 s that also runs the plugin, reads iptables and reloads the nftables table),
// node event -> route present over the API watch, and resident memory.
// Runs in a namespace it creates (re-executing itself inside it), so it can talk to the agent's
// 127.0.0.1 health port directly; nothing is changed outside that namespace.
//   deno run -A --no-lock bench/agent_sync.ts [--nodes 1000]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { listOwnedRoutes, ROUTE_PROTO } from "../lib/net/route.ts";
import { VXLAN_DEVICE } from "../lib/net/vxlan.ts";
import { run } from "../lib/process/run.ts";
import { AGENT, agentArgv, ROOT, spawnLogged, uninstallArgv } from "../tests/harness/agent_node.ts";
import { startFakeApiServer } from "../tests/harness/fake_apiserver.ts";
import { agentMetrics, line, memoryMiB, runAsNode, watchReconciles } from "./bench_node.ts";
import { spread, spreadText } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { nodes: { type: "string", default: "1000" }, inside: { type: "string" } },
});
const COUNT = Number(values.nodes);

if (values.inside) await inside(values.inside);
else await outside();

async function outside() {
  // Half the nodes' address range is on the underlay link (10.250/16, fd00:250::/64), the other
  // half (10.251/16, fd00:251::/64) behind a router on it (.254 / ::fe): nothing answers there,
  // but the agent only asks the kernel how each peer is reached.
  await runAsNode("mca", import.meta.url, ["--nodes", String(COUNT)], [
    ["ip", "route", "add", "10.251.0.0/16", "via", "10.250.0.254"],
    ["ip", "route", "add", "fd00:251::/64", "via", "fd00:250::fe"],
  ]);
}

/** Node i: even ones behind the router (VXLAN), odd ones (n1, the agent's, too) on-link. */
function node(i: number) {
  const behind = i % 2 === 0;
  const v4 = `10.${behind ? 251 : 250}.${i >> 8}.${i & 255}`;
  return {
    name: `n${i}`,
    ip: v4,
    ips: [`fd00:${behind ? 251 : 250}::${i.toString(16)}`],
    podCIDRs: [`10.${64 + (i >> 8)}.${i & 255}.0/24`, `fd00:10:244:${i.toString(16)}::/64`],
  };
}

/** The agent in this namespace; `synced` resolves with the ms to its "initial sync done". */
function startAgent(dir: string, source: string[]) {
  const t0 = performance.now();
  let resolveSynced!: (ms: number) => void;
  const synced = new Promise<number>((r) => resolveSynced = r);
  const agent = spawnLogged(agentArgv(dir, source, { pluginSrc: join(ROOT, "bin/mycni") }), {
    onLine: (line) => {
      if (line.includes('"initial sync done"')) resolveSynced(performance.now() - t0);
    },
  });
  return { synced, pid: agent.pid, stop: () => agent.stop() };
}

function routeCount(): number {
  return listOwnedRoutes().length;
}

/** Routes through the tunnel, and the tunnel's permanent neighbour and FDB entries. */
async function vxlanCounts(): Promise<{ routes: number; neighbours: number; fdb: number }> {
  const lines = async (argv: string[]) =>
    (await run(argv)).split("\n").filter((l) => /permanent/i.test(l)).length;
  const routes = listOwnedRoutes().filter((r) => r.onlink).length;
  return {
    routes,
    neighbours: await lines(["ip", "neigh", "show", "dev", VXLAN_DEVICE]),
    fdb: await lines(["bridge", "fdb", "show", "dev", VXLAN_DEVICE]),
  };
}

async function inside(dir: string) {
  const nodes = Array.from({ length: COUNT }, (_, i) => node(i + 1));
  const nodesFile = join(dir, "nodes.json");
  await Deno.writeTextFile(nodesFile, JSON.stringify(nodes));
  const want = (COUNT - 1) * 2;
  const kind = (await Deno.readTextFile(AGENT)).startsWith("#!") ? "bundled script" : "compiled";
  console.log(
    `agent_sync: ${COUNT} nodes, dual-stack (${want} routes), half behind a router, ` +
      `bin/mycni-init is a ${kind}`,
  );

  // 1. Nodes file: cold start to first full sync, memory, then a resync that changes nothing.
  const a = startAgent(dir, ["--nodes-file", nodesFile]);
  const syncMs = await a.synced;
  const got = routeCount();
  line(
    "start -> first full sync (nodes file)",
    `${syncMs.toFixed(0)} ms (${got} routes)`,
    "< 2000 ms",
    syncMs < 2000 && got === want,
  );
  const behind = Math.floor(COUNT / 2);
  const vx = await vxlanCounts();
  line(
    "  of which through VXLAN (routes, neigh, fdb)",
    `${vx.routes}, ${vx.neighbours}, ${vx.fdb}`,
    `${behind * 2}, ${behind * 2}, ${behind}`,
    vx.routes === behind * 2 && vx.neighbours === behind * 2 && vx.fdb === behind,
  );
  await new Promise((r) => setTimeout(r, 1000));
  const before = await agentMetrics();
  await Deno.writeTextFile(nodesFile, JSON.stringify(nodes)); // same content, new mtime
  const t0 = performance.now();
  let after = before;
  while (after.mycni_reconciles_total === before.mycni_reconciles_total) {
    await new Promise((r) => setTimeout(r, 5));
    after = await agentMetrics();
  }
  const seen = performance.now() - t0;
  const resyncMs = after.mycni_last_reconcile_duration_seconds * 1000;
  const changes = after.mycni_route_changes_total - before.mycni_route_changes_total;
  line(
    `no-change resync (reconcile of ${COUNT} nodes)`,
    `${resyncMs.toFixed(0)} ms, ${changes} route changes`,
    "< 300 ms, 0",
    resyncMs < 300 && changes === 0,
  );
  console.log(
    `  (file edit -> reconcile finished: ${seen.toFixed(0)} ms, includes the 250 ms mtime poll)`,
  );
  await periodicResyncs();
  const mem = memoryMiB(a.pid);
  line(
    `agent memory with ${COUNT} nodes`,
    `RSS ${mem.rss.toFixed(1)} MiB, peak ${mem.peak.toFixed(1)} MiB`,
    "< 64 MiB",
    mem.rss < 64,
  );
  await a.stop();
  await run(uninstallArgv(dir));

  // 2. API mode: list + watch; a node event until its route is in the kernel.
  await using api = startFakeApiServer({ nodes });
  const b = startAgent(dir, ["--kube-api", api.url]);
  const apiSyncMs = await b.synced;
  line(
    "start -> first full sync (API list)",
    `${apiSyncMs.toFixed(0)} ms`,
    "< 2000 ms",
    apiSyncMs < 2000,
  );
  while (api.watchers === 0) await new Promise((r) => setTimeout(r, 5));
  const lat: number[] = [];
  for (let k = 0; k < 10; k++) {
    const n = node(COUNT + 1 + k);
    const t = performance.now();
    api.upsert(n);
    const dst = n.podCIDRs[0];
    while (
      (await run(["ip", "-j", "route", "show", dst, "proto", String(ROUTE_PROTO)])).trim() === "[]"
    ) {
      await new Promise((r) => setTimeout(r, 2));
    }
    lat.push(performance.now() - t);
  }
  const events = spread(lat);
  line(
    "node event -> route present (API watch)",
    spreadText(events, "ms"),
    "max < 1000 ms",
    events.max < 1000,
  );
  await new Promise((r) => setTimeout(r, 4000));
  const memB = memoryMiB(b.pid);
  line(
    "agent memory, API mode",
    `RSS ${memB.rss.toFixed(1)} MiB, peak ${memB.peak.toFixed(1)} MiB`,
    "< 64 MiB",
    memB.rss < 64,
  );
  await b.stop();
  await run(uninstallArgv(dir));
}

/**
 * The agent's own periodic resyncs, nothing having changed: every 10 s a full reconcile (routes
 * re-read from the kernel), and once 60 s have passed since the last one the re-check, which
 * also runs the installed plugin, reads iptables and reloads the whole nftables table (the one
 * reconcile that applies a transaction here). Watched until the re-check has run.
 */
async function periodicResyncs(): Promise<void> {
  const seen = await watchReconciles((s) => s.some((r) => r.nftChanges > 0), 90_000);
  const plain = seen.filter((r) => r.nftChanges === 0), recheck = seen.find((r) => r.nftChanges);
  const changes = seen.reduce((n, r) => n + r.routeChanges, 0);
  if (plain.length > 0) {
    const s = spread(plain.map((r) => r.ms));
    line("periodic resync (every 10 s)", spreadText(s, "ms"), "< 300 ms", s.max < 300);
  }
  line(
    "  the 60 s re-check (plugin, iptables, nft)",
    recheck ? `${recheck.ms.toFixed(0)} ms` : "not seen within 90 s",
    "< 300 ms",
    recheck !== undefined && recheck.ms < 300,
  );
  line("  route changes in them", String(changes), "0", changes === 0);
}
