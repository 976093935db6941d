// The agent's nftables table read back from the kernel (lib/nft/cli.ts readTable) and repaired
// (lib/nft/sync.ts): nft's listing of every kind of object the agent loads compares equal to the
// model it was loaded from, a removed element or chain is a difference, and a running agent puts
// back within one resync period what someone removed from its table (DESIGN.md "NetworkPolicy",
// datapath). In namespaces of the test's own.
import { join } from "node:path";
import { parseTableJson } from "../../lib/nft/cli.ts";
import type { NftSet, NftTable } from "../../lib/nft/ruleset.ts";
import { createTableSync, type NftRunner } from "../../lib/nft/sync.ts";
import { desiredTable } from "../../lib/node/desired_table.ts";
import { RESYNC_MS } from "../../lib/node/scheduler.ts";
import { compilePolicies } from "../../lib/policy/compile.ts";
import { policyObjects } from "../../lib/policy/nft_rules.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import {
  agentArgv,
  curl,
  fakeApiServer,
  makeAgentNode,
  spawnIn,
  waitFor,
} from "../harness/agent_node.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";
import { namespace, pod, policy, stateOf } from "../unit/policy/fixtures.ts";

/** `inet mycni` in `ns` through the real nft, as the agent's runner is in its own namespace. */
function runnerIn(ns: TempNetns): NftRunner {
  const list = () => runOutput(ns.exec(["nft", "-j", "list", "table", "inet", "mycni"]));
  return {
    apply: async (text) => void await run(ns.exec(["nft", "-f", "-"]), { stdin: text }),
    async read() {
      const out = await list();
      return out.code === 0 ? parseTableJson("inet mycni", JSON.parse(out.stdout)) : undefined;
    },
    async counters() {
      return (await this.read())?.counters as Map<string, number> ?? new Map();
    },
  };
}

/** A node's table with policies of every shape: pods, ipBlocks with except, named ports, v6. */
function realisticTable(): NftTable {
  const ports = [{ name: "http", port: 8080, protocol: "TCP" as const }];
  const state = stateOf({
    pods: [
      pod("x/a", { node: "n1", ips: ["10.244.1.5", "fd00:10:244:1::5"], ports }),
      pod("x/b", { node: "n1", ips: ["10.244.1.6", "fd00:10:244:1::6"], ports }),
      pod("y/c", { node: "n2", ips: ["10.244.2.7", "fd00:10:244:2::7"], ports }),
    ],
    namespaces: [namespace("x"), namespace("y", { team: "y" })],
    policies: [
      policy("x/from-y", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
      }),
      policy("x/blocks", {
        podSelector: { matchLabels: { pod: "a" } },
        policyTypes: ["Ingress", "Egress"],
        ingress: [{
          from: [
            { ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.7.0/24"] } },
            { ipBlock: { cidr: "2001:db8::/32", except: ["2001:db8:7::/48"] } },
          ],
          ports: [{ port: 80, endPort: 90 }, { port: "http" }],
        }],
        egress: [{ to: [{ podSelector: {} }], ports: [{ port: "http" }] }],
      }),
    ],
    nodes: { n1: ["192.0.2.11"], n2: ["192.0.2.12"] },
  });
  return desiredTable({
    clusterCidrs: ["10.244.0.0/16", "fd00:10:244::/48"],
    noMasqueradeCidrs: ["10.96.0.0/12", "172.16.0.1/32"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
    policy: policyObjects(compilePolicies(state, { node: "n1" })),
  });
}

Deno.test({
  name:
    "createTableSync() reads a real table back as equal, and repairs an element and a chain removed",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcnr");
  const table = realisticTable();
  assert([...table.sets.values()].some((s) => s.interval && s.elements.size > 1), "no ranges");
  const tables = createTableSync(runnerIn(ns));
  assertEquals((await tables.apply(table, { verify: false })).whole, true);
  // nft's own words for everything loaded: no difference, no transaction.
  assertEquals(await tables.apply(table, { verify: true }), {
    changed: false,
    whole: false,
    differences: [],
  });
  const [mapName, map] = [...table.sets].find(([n]) => n === "ingress4")!;
  const victim = [...map.elements.keys()][0];
  await run(ns.exec(["nft", "delete", "element", "inet", "mycni", mapName, `{ ${victim} }`]));
  await run(ns.exec(["nft", "delete", "chain", "inet", "mycni", "postrouting"]));
  const repair = await tables.apply(table, { verify: true });
  assertEquals(repair.whole, true);
  assertEquals(repair.differences.length, 2, repair.differences.join("\n"));
  assertMatch(repair.differences[0], new RegExp(`map ingress4: 1 element missing \\(${victim} :`));
  assertEquals(repair.differences[1], "chain postrouting is missing");
  assertEquals((await tables.apply(table, { verify: true })).changed, false, "not repaired");
});

/** A table of `n` elements shaped like the agent's at scale: pods in the maps, peers in sets. */
function tableOf(n: number): NftTable {
  const ip = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  const set = (kind: "set" | "map", type: string, els: [string, string][]): NftSet => ({
    kind,
    type,
    interval: false,
    elements: new Map(els),
  });
  const pods = Array.from({ length: n / 5 }, (_, i) => ip(i + 1));
  const sets = new Map<string, NftSet>([
    [
      "ingress4",
      set("map", "ipv4_addr : verdict", pods.map((p, i) => [p, `${p} : jump c${i % 20}`])),
    ],
    ["self4", set("set", "ipv4_addr . ipv4_addr", pods.map((p) => [`${p} . ${p}`, `${p} . ${p}`]))],
  ]);
  const chains = new Map<string, { decl?: string; rules: string[] }>();
  for (let c = 0; c < 20; c++) {
    const peers = Array.from({ length: (3 * n) / 5 / 20 }, (_, i) => ip(100_000 + c * 1000 + i));
    sets.set(`p${c}`, set("set", "ipv4_addr", peers.map((p) => [p, p])));
    chains.set(`c${c}`, { rules: [`ip saddr @p${c} tcp dport 80 accept`, "drop"] });
  }
  chains.set("forward", {
    decl: "type filter hook forward priority filter; policy accept;",
    rules: ["ct state established,related accept", "ip daddr vmap @ingress4"],
  });
  return { name: "inet mycni", counters: [], sets, chains };
}

Deno.test({
  name: "reading the table back costs what a periodic resync can pay at 10,000 elements",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcnr");
  const table = tableOf(10_000);
  const tables = createTableSync(runnerIn(ns));
  await tables.apply(table, { verify: false });
  const runner = runnerIn(ns);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const kernel = await runner.read();
    times.push(performance.now() - t0);
    assertEquals([...kernel!.table.sets.values()].reduce((n, s) => n + s.elements.size, 0), 10_000);
  }
  const verify: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    assertEquals((await tables.apply(table, { verify: true })).changed, false);
    verify.push(performance.now() - t0);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
  console.log(
    `nft read-back at 10,000 elements: nft -j list + parse median ${
      median(times).toFixed(0)
    } ms, ` +
      `whole verify (read + compare) median ${median(verify).toFixed(0)} ms`,
  );
  assert(median(verify) < RESYNC_MS / 10, "the check costs a tenth of the resync period or more");
});

const NODES = [
  { name: "n1", ip: "192.0.2.11", podCIDRs: ["10.244.1.0/24"] },
  { name: "n2", ip: "192.0.2.12", podCIDRs: ["10.244.2.0/24"] },
];
const API = "http://127.0.0.1:6443";
const HEALTH = "http://127.0.0.1:9749";

async function metric(ns: TempNetns, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec((await curl(ns, `${HEALTH}/metrics`)).text);
  return m ? Number(m[1]) : NaN;
}

Deno.test({
  name: "mycni-init puts back a map element and a chain someone removed within one resync period",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode({ nodes: NODES, prefix: "mcnr" });
  const { ns, dir } = node;
  await using _server = fakeApiServer(ns, { nodesFile: join(dir, "nodes.json") });
  await waitFor(
    "fake API server",
    async () => (await curl(ns, `${API}/api/v1/nodes`)).code === 200,
    {
      ms: 15000,
    },
  );
  const put = (path: string, obj: unknown) =>
    curl(ns, `${API}/_test/${path}`, { method: "PUT", body: JSON.stringify(obj) });
  await put("namespaces/x", { labels: { ns: "x" } });
  await put("pods/x/a", {
    metadata: { name: "a", namespace: "x", labels: { pod: "a" } },
    spec: { nodeName: "n1", containers: [{ name: "c", image: "probe" }] },
    status: { phase: "Running", podIP: "10.244.1.5", podIPs: [{ ip: "10.244.1.5" }] },
  });
  await put("networkpolicies/x/deny", {
    metadata: { name: "deny", namespace: "x" },
    spec: { podSelector: {}, policyTypes: ["Ingress"] },
  });
  await using agent = spawnIn(ns, agentArgv(dir, ["--kube-api", API]));
  const nft = (...args: string[]) => runOutput(ns.exec(["nft", ...args]));
  const isolated = async () =>
    (await nft("list", "map", "inet", "mycni", "ingress4")).stdout.includes("10.244.1.5 : jump");
  const masquerading = async () =>
    (await nft("list", "chain", "inet", "mycni", "postrouting")).stdout.includes("masquerade");
  await waitFor("healthz 200", async () => (await curl(ns, `${HEALTH}/healthz`)).code === 200, {
    ms: 20000,
    proc: agent,
  });
  assert(await isolated(), "x/a is not in the ingress map");
  const synced = () => agent.logs.filter((l) => l.includes('"nftables table synced"')).length;
  const loaded = synced();

  // A periodic resync with nothing changed reads the table back and loads nothing.
  const reconciles = await metric(ns, "mycni_reconciles_total");
  await waitFor(
    "a periodic resync",
    async () => await metric(ns, "mycni_reconciles_total") > reconciles,
    { ms: RESYNC_MS + 5000, proc: agent },
  );
  assertEquals(synced(), loaded, "a resync that found nothing to repair reloaded the table");

  // Someone opens x/a and drops our masquerade.
  await nft("delete", "element", "inet", "mycni", "ingress4", "{ 10.244.1.5 }");
  await nft("delete", "chain", "inet", "mycni", "postrouting");
  const removed = performance.now();
  assert(!(await isolated()) && !(await masquerading()), "the removals did not happen");
  await waitFor(
    "the element and the chain back",
    async () => await isolated() && await masquerading(),
    { ms: RESYNC_MS + 5000, proc: agent },
  );
  const took = performance.now() - removed;
  const repaired = agent.logs.map((l) => JSON.parse(l)).filter((l) =>
    l.msg === "nftables table differs from the one applied: loading it whole"
  );
  assertEquals(repaired.length, 1);
  assertEquals(repaired[0].differences, [
    "map ingress4: 1 element missing (10.244.1.5 : jump " +
    repaired[0].differences[0].split(" : jump ")[1],
    "chain postrouting is missing",
  ]);
  assertEquals(synced(), loaded + 1, "the repair is one transaction");
  assertEquals((await curl(ns, `${HEALTH}/healthz`)).code, 200);
  assert(took <= RESYNC_MS + 2000, `repaired after ${Math.round(took)} ms`);
  console.log(`nft repair: element and chain back ${Math.round(took)} ms after their removal`);
  assertEquals(await agent.stop(), 0);
});
