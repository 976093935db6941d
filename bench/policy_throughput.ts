// Pod↔pod TCP throughput (iperf3) across two nodes of the simulated cluster with 100
// NetworkPolicies selecting the pair (50 ingress on the server, 50 egress on the client, only
// one of each allowing the flow), beside an identical pair in a namespace with no policy, in the
// same cluster. Runs are interleaved; the figure is the ratio (DESIGN.md target ≥ 0.95).
//
//   deno run -A --no-lock bench/policy_throughput.ts [--runs 5] [--seconds 3]
import { parseArgs } from "node:util";
import { inNetns, runOutput } from "../lib/process/run.ts";
import { type Cluster, type Pod, startCluster, waitFor } from "../tests/harness/cluster.ts";
import { canRunPrivileged } from "../tests/harness/netns.ts";
import { iperf, IPERF_PORT, iperfServer } from "./iperf.ts";
import { median } from "./stats.ts";

const TARGET_RATIO = 0.95;
const POLICIES = 100;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { runs: { type: "string", default: "5" }, seconds: { type: "string", default: "3" } },
  });
  const runs = Number(values.runs), seconds = Number(values.seconds);
  if (!canRunPrivileged) {
    console.error("policy_throughput: needs root (it creates network namespaces)");
    return 1;
  }
  await using cluster = await startCluster({
    nodes: 2,
    podsPerNode: 0,
    dualStack: false,
    mode: "api",
  });
  const pair = async (ns: string) => {
    await cluster.apiPut("namespaces", { metadata: { name: ns } });
    const client = await cluster.addPod(cluster.nodes[0], {
      namespace: ns,
      name: "client",
      labels: { app: "client" },
    });
    const server = await cluster.addPod(cluster.nodes[1], {
      namespace: ns,
      name: "server",
      labels: { app: "server" },
      ports: [{ name: "iperf", port: IPERF_PORT }],
    });
    return { client, server };
  };
  const plain = await pair("plain");
  const policed = await pair("policed");
  await applyPolicies(cluster, "policed");
  await waitFor("the policies in both nodes' tables", 20000, async () => {
    const m = await Promise.all(cluster.nodes.map((n) => metric(n, "mycni_policy_targets")));
    return m.every((v) => v === 1);
  });
  const rules = await Promise.all(cluster.nodes.map((n) => metric(n, "mycni_policy_rules")));

  const servers = await Promise.all(
    [plain.server, policed.server].map((s: Pod) => iperfServer(s, s.ips[0])),
  );
  const gbps = { plain: [] as number[], policed: [] as number[] };
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < runs; i++) {
      gbps.plain.push((await iperf(plain.client, plain.server.ips[0], seconds)) / 1e9);
      gbps.policed.push((await iperf(policed.client, policed.server.ips[0], seconds)) / 1e9);
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop("SIGTERM", 1000)));
  }
  const ratio = median(gbps.policed) / median(gbps.plain);
  console.log(
    `TCP throughput with ${POLICIES} policies selecting the pair, iperf3, ${runs} × ${seconds} s, ` +
      `interleaved (median, Gbit/s); per-pod chain rules on the nodes: ${rules.join(", ")}`,
  );
  for (const [name, xs] of Object.entries(gbps)) {
    const all = xs.map((g) => g.toFixed(1)).join(" ");
    console.log(`  ${name.padEnd(10)} ${median(xs).toFixed(2).padStart(7)}   (${all})`);
  }
  console.log(
    `  ratio policed / plain ${ratio.toFixed(3).padStart(7)}   target ≥ ${TARGET_RATIO}: ${
      ratio >= TARGET_RATIO ? "met" : "NOT met"
    }`,
  );
  return 0;
}

/**
 * 50 ingress policies on the server, each allowing the client on another port (the 50th on
 * iperf's), and 50 egress policies on the client likewise: a new connection walks all of them.
 */
async function applyPolicies(cluster: Cluster, ns: string): Promise<void> {
  const client = { matchLabels: { app: "client" } }, server = { matchLabels: { app: "server" } };
  for (let i = 0; i < POLICIES / 2; i++) {
    const port = i === POLICIES / 2 - 1 ? IPERF_PORT : 10000 + i;
    await cluster.apiPut("networkpolicies", {
      metadata: { namespace: ns, name: `in-${i}` },
      spec: {
        podSelector: server,
        ingress: [{ from: [{ podSelector: client }], ports: [{ protocol: "TCP", port }] }],
      },
    });
    await cluster.apiPut("networkpolicies", {
      metadata: { namespace: ns, name: `out-${i}` },
      spec: {
        podSelector: client,
        policyTypes: ["Egress"],
        egress: [{ to: [{ podSelector: server }], ports: [{ protocol: "TCP", port }] }],
      },
    });
  }
}

async function metric(node: Cluster["nodes"][number], name: string): Promise<number> {
  const out = await runOutput(
    inNetns(node.netns, ["curl", "-s", "-m", "2", "http://127.0.0.1:9749/metrics"]),
  );
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(out.stdout)?.[1] ?? NaN);
}

if (import.meta.main) Deno.exit(await main());
