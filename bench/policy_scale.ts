// Benchmark of the agent's NetworkPolicy at scale (DESIGN.md "Performance targets"): 1000 nodes,
// 10,000 dual-stack pods, 1,000 namespaces and 500 policies in the fake API server; the agent on
// a busy node (100 of the pods). Prints: start -> first policy table in the kernel, the compile +
// apply time of that first table, event -> enforced for a pod, a relabel and a policy, and RSS.
// Runs in a namespace it creates (re-executing itself inside it); nothing changes outside it.
//   deno run -A --no-lock bench/policy_scale.ts [--pods 10000] [--policies 500]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { run } from "../lib/process/run.ts";
import { AGENT, agentArgv, ROOT, spawnLogged, uninstallArgv } from "../tests/harness/agent_node.ts";
import { startFakeApiServer } from "../tests/harness/fake_apiserver.ts";
import { line, memoryMiB, runAsNode } from "./bench_node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "1000" },
    pods: { type: "string", default: "10000" },
    namespaces: { type: "string", default: "1000" },
    policies: { type: "string", default: "500" },
    local: { type: "string", default: "100" },
    inside: { type: "string" },
  },
});
const NODES = Number(values.nodes), PODS = Number(values.pods);
const NAMESPACES = Number(values.namespaces), POLICIES = Number(values.policies);
const LOCAL = Number(values.local);
/** Compile + apply times (the agent's own figure) of the syncs `timed` waited for. */
const applyMs: number[] = [];

if (values.inside) await inside(values.inside);
else await outside();

async function outside() {
  const args = Object.entries(values).filter(([k]) => k !== "inside")
    .flatMap(([k, v]) => [`--${k}`, String(v)]);
  await runAsNode("mcp", import.meta.url, args);
}

/** Node i (1-based): the agent runs as n1, 10.250.0.1. */
function node(i: number) {
  return {
    name: `n${i}`,
    ip: `10.250.${i >> 8}.${i & 255}`,
    ips: [`fd00:250::${i.toString(16)}`],
    podCIDRs: [`10.${64 + (i >> 8)}.${i & 255}.0/24`, `fd00:10:244:${i.toString(16)}::/64`],
  };
}

/** Pod j: the first LOCAL on n1, the others spread over the other nodes. */
function pod(j: number, labels?: Record<string, string>) {
  const n = j < LOCAL ? 1 : 2 + ((j - LOCAL) % (NODES - 1));
  const slot = j < LOCAL ? j : Math.floor((j - LOCAL) / (NODES - 1));
  const v4 = `10.${64 + (n >> 8)}.${n & 255}.${2 + slot}`;
  const v6 = `fd00:10:244:${n.toString(16)}::${(2 + slot).toString(16)}`;
  return {
    metadata: {
      namespace: `ns-${j % NAMESPACES}`,
      name: `p${j}`,
      labels: labels ?? { app: `a${j % 20}`, tier: j % 3 ? "web" : "db" },
    },
    spec: {
      nodeName: `n${n}`,
      containers: [{
        name: "app",
        ports: [
          { name: "http", containerPort: 8080, protocol: "TCP" },
          { name: "metrics", containerPort: 9090, protocol: "TCP" },
        ],
      }],
    },
    status: { phase: "Running", podIP: v4, podIPs: [{ ip: v4 }, { ip: v6 }] },
  };
}

/** Policy m, in an even namespace, of one of five common shapes. */
function policy(m: number) {
  const shapes = [
    { podSelector: {}, policyTypes: ["Ingress"] },
    {
      podSelector: {},
      ingress: [{
        from: [{ podSelector: { matchLabels: { app: `a${m % 20}` } } }],
        ports: [{ port: "http" }],
      }],
    },
    {
      podSelector: { matchLabels: { tier: "web" } },
      ingress: [{
        from: [{
          namespaceSelector: { matchLabels: { team: `t${m % 25}` } },
          podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }] },
        }],
        ports: [{ protocol: "TCP", port: 8080, endPort: 8090 }],
      }],
    },
    {
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [{
        to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.64.0.0/16"] } }],
        ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }],
      }],
    },
    {
      podSelector: { matchLabels: { app: `a${m % 20}` } },
      egress: [{
        to: [{ namespaceSelector: { matchLabels: { env: "prod" } } }],
        ports: [{ port: "metrics" }],
      }],
    },
  ];
  return {
    metadata: { namespace: `ns-${(m * 2) % NAMESPACES}`, name: `pol-${m}` },
    spec: shapes[m % shapes.length],
  };
}

interface Synced {
  readonly at: number;
  readonly ms: number;
  readonly targets: number;
}

async function inside(dir: string) {
  await using api = startFakeApiServer({
    nodes: Array.from({ length: NODES }, (_, i) => node(i + 1)),
  });
  for (let k = 0; k < NAMESPACES; k++) {
    api.put("namespaces", {
      metadata: { name: `ns-${k}`, labels: { team: `t${k % 25}`, env: k % 2 ? "prod" : "dev" } },
    });
  }
  for (let j = 0; j < PODS; j++) api.put("pods", pod(j));
  for (let m = 0; m < POLICIES; m++) api.put("networkpolicies", policy(m));
  const kind = (await Deno.readTextFile(AGENT)).startsWith("#!") ? "bundled script" : "compiled";
  console.log(
    `policy_scale: ${NODES} nodes, ${PODS} dual-stack pods (${LOCAL} on this node), ` +
      `${NAMESPACES} namespaces, ${POLICIES} policies; bin/mycni-init is a ${kind}`,
  );

  const syncs: Synced[] = [];
  const t0 = performance.now();
  const agent = spawnLogged(
    agentArgv(dir, ["--kube-api", api.url], { pluginSrc: join(ROOT, "bin/mycni") }),
    {
      onLine: (l) => {
        if (Deno.env.get("BENCH_VERBOSE")) console.log(l);
        if (!l.includes('"nftables table synced"')) return;
        const j = JSON.parse(l) as { ms: number; policyTargets?: number };
        syncs.push({ at: performance.now(), ms: j.ms, targets: j.policyTargets ?? 0 });
      },
    },
  );
  try {
    const first = await waitFor(() => syncs.find((s) => s.targets > 0), 60_000);
    line(
      "start -> first policy table in the kernel",
      `${(first.at - t0).toFixed(0)} ms (${first.targets} pods isolated)`,
      "",
      true,
    );
    line("  of which compile + apply", `${first.ms} ms`, "< 1000 ms", first.ms < 1000);
    const rules = Number(/^mycni_policy_rules (\d+)/m.exec(await metrics())?.[1] ?? 0);
    const elements = await tableElements();
    console.log(`  (${rules} rules in per-pod chains, ${elements} set and map elements)`);

    // Events that change this node's table, each timed from the API write to the agent's
    // "nftables table synced" (the transaction has returned: the kernel enforces it).
    await new Promise((r) => setTimeout(r, 2000));
    const timings: Record<string, number[]> = {
      "pod started here": [],
      "peer relabelled": [],
      "policy added": [],
    };
    // Peers for the relabel events: pods of ns-0 (which has pods here) labelled role=client.
    // No pod has the label yet, so this policy alone changes no rule here: not timed.
    api.put("networkpolicies", {
      metadata: { namespace: "ns-0", name: "clients" },
      spec: {
        podSelector: {},
        ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }] }],
      },
    });
    await new Promise((r) => setTimeout(r, 500));
    for (let k = 0; k < 10; k++) {
      // A pod started on this node, in ns-2k, which pol-k (and extra-k below) select.
      const local = pod(PODS + k, { app: `a${k % 20}`, tier: "web" });
      local.metadata.namespace = `ns-${2 * k}`;
      local.spec.nodeName = "n1";
      const host = 2 + LOCAL + k;
      local.status.podIP = `10.64.1.${host}`;
      local.status.podIPs = [{ ip: local.status.podIP }, {
        ip: `fd00:10:244:1::${host.toString(16)}`,
      }];
      timings["pod started here"].push(await timed(syncs, () => api.put("pods", local)));
      // A pod of ns-0 on another node becomes a client: one more element in a peer set.
      const peer = pod(NAMESPACES * (k + 1));
      peer.metadata.labels = { ...peer.metadata.labels, role: "client" };
      timings["peer relabelled"].push(await timed(syncs, () => api.put("pods", peer)));
      timings["policy added"].push(
        await timed(syncs, () =>
          api.put("networkpolicies", {
            metadata: { namespace: `ns-${2 * k}`, name: `extra-${k}` },
            spec: {
              podSelector: { matchLabels: { tier: "web" } },
              ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "prod" } } }] }],
            },
          })),
      );
    }
    for (const [what, list] of Object.entries(timings)) {
      list.sort((a, b) => a - b);
      const median = list[list.length >> 1], max = list.at(-1)!;
      line(
        `event -> enforced: ${what}`,
        `median ${median.toFixed(0)} ms, max ${max.toFixed(0)} ms`,
        "< 200 ms",
        median < 200,
      );
    }
    applyMs.sort((a, b) => a - b);
    console.log(
      `  (the agent's compile + apply of those changes: median ${
        applyMs[applyMs.length >> 1]
      } ms, ` +
        `max ${applyMs.at(-1)} ms)`,
    );
    await new Promise((r) => setTimeout(r, 4000)); // let V8's memory reducer run
    const mem = memoryMiB(agent.pid);
    line(
      "agent memory",
      `RSS ${mem.rss.toFixed(1)} MiB, peak ${mem.peak.toFixed(1)} MiB`,
      "< 128 MiB",
      mem.rss < 128,
    );
  } finally {
    await agent.stop();
    await run(uninstallArgv(dir));
  }
}

/** Milliseconds from `change` to the next table sync that isolates something. */
async function timed(syncs: Synced[], change: () => void): Promise<number> {
  const n = syncs.length;
  const t = performance.now();
  change();
  const s = await waitFor(() => syncs.slice(n).find((x) => x.targets > 0), 10_000);
  applyMs.push(s.ms);
  return s.at - t;
}

async function waitFor<T>(get: () => T | undefined, ms: number): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`Gave up after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function metrics(): Promise<string> {
  return await (await fetch("http://127.0.0.1:9749/metrics")).text();
}

async function tableElements(): Promise<number> {
  const out = JSON.parse(await run(["nft", "-j", "list", "table", "inet", "mycni"]));
  let n = 0;
  for (const item of out.nftables) {
    const s = item.set ?? item.map;
    if (s?.elem) n += s.elem.length;
  }
  return n;
}
