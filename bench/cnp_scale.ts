// Benchmark of ClusterNetworkPolicy at scale (issue 19, "Performance"): 100 ClusterNetworkPolicies
// (Admin and Baseline; namespace and pod subjects; namespace, pod, networks and nodes peers) next
// to 500 NetworkPolicies, 10,000 dual-stack pods, 1,000 namespaces and 1,000 nodes in the fake
// API server; the real agent on a busy node (100 of the pods). Prints: the compile + apply time
// of the first policy table holding every CNP (target < 1 s) and, sampled --events times each,
// a CNP change from the API write to the agent's "nftables table synced" (target p90 < 200 ms):
// a priority change that moves an Admin policy over every pod from first to last of its tier and
// back, and a rule added to it (removed again after each sample, untimed). The world is
// bench/policy_scale.ts's (that script exports nothing and runs on import, so its pod and policy
// shapes are copied here, trimmed).
// Runs in a namespace it creates (re-executing itself inside it); nothing changes outside it.
//   deno run -A --no-lock bench/cnp_scale.ts [--pods 10000] [--policies 500] [--cnps 100]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { run } from "../lib/process/run.ts";
import { AGENT, agentArgv, ROOT, spawnLogged, uninstallArgv } from "../tests/harness/agent_node.ts";
import { startFakeApiServer } from "../tests/harness/fake_apiserver.ts";
import { line, runAsNode } from "./bench_node.ts";
import { spread, spreadText } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "1000" },
    pods: { type: "string", default: "10000" },
    namespaces: { type: "string", default: "1000" },
    policies: { type: "string", default: "500" },
    cnps: { type: "string", default: "100" },
    local: { type: "string", default: "100" },
    events: { type: "string", default: "20" },
    inside: { type: "string" },
  },
});
const NODES = Number(values.nodes), PODS = Number(values.pods);
const NAMESPACES = Number(values.namespaces), POLICIES = Number(values.policies);
const CNPS = Number(values.cnps), LOCAL = Number(values.local), EVENTS = Number(values.events);

if (values.inside) await inside(values.inside);
else await outside();

async function outside() {
  const args = Object.entries(values).filter(([k]) => k !== "inside")
    .flatMap(([k, v]) => [`--${k}`, String(v)]);
  await runAsNode("mcc", import.meta.url, args);
}

/** Node i (1-based): the agent runs as n1, 10.250.0.1; labelled with one of ten zones. */
function node(i: number) {
  return {
    name: `n${i}`,
    ip: `10.250.${i >> 8}.${i & 255}`,
    ips: [`fd00:250::${i.toString(16)}`],
    podCIDRs: [`10.${64 + (i >> 8)}.${i & 255}.0/24`, `fd00:10:244:${i.toString(16)}::/64`],
    labels: { zone: `z${i % 10}` },
  };
}

/** Pod j: the first LOCAL on n1, the others spread over the other nodes. */
function pod(j: number) {
  const n = j < LOCAL ? 1 : 2 + ((j - LOCAL) % (NODES - 1));
  const slot = j < LOCAL ? j : Math.floor((j - LOCAL) / (NODES - 1));
  const v4 = `10.${64 + (n >> 8)}.${n & 255}.${2 + slot}`;
  const v6 = `fd00:10:244:${n.toString(16)}::${(2 + slot).toString(16)}`;
  return {
    metadata: {
      namespace: `ns-${j % NAMESPACES}`,
      name: `p${j}`,
      labels: { app: `a${j % 20}`, tier: j % 3 ? "web" : "db" },
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

/** NetworkPolicy m, in an even namespace: three of bench/policy_scale.ts's shapes. */
function policy(m: number) {
  const shapes = [
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
        from: [{ namespaceSelector: { matchLabels: { team: `t${m % 25}` } } }],
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
  ];
  return {
    metadata: { namespace: `ns-${(m * 2) % NAMESPACES}`, name: `pol-${m}` },
    spec: shapes[m % shapes.length],
  };
}

type Obj = Record<string, unknown>;
/** `protocols`: TCP to one port. */
function TCP(port: number) {
  return [{ tcp: { destinationPort: { number: port } } }];
}

/**
 * ClusterNetworkPolicy i: every fourth Baseline, the others Admin; subjects alternate between
 * a team of namespaces and the pods of one app in the prod or dev namespaces; ingress from a
 * team's namespaces or an app's pods, egress to networks (every third) or a zone's nodes (every
 * fifth) or an app's pods.
 */
function cnp(i: number, priority = (i * 7) % 1000): Obj {
  const tier = i % 4 === 3 ? "Baseline" : "Admin";
  const actions = tier === "Admin" ? ["Deny", "Accept", "Pass"] : ["Deny", "Accept"];
  const action = actions[i % actions.length];
  const subject = i % 2 ? { namespaces: { matchLabels: { team: `t${i % 25}` } } } : {
    pods: {
      namespaceSelector: { matchLabels: { env: i % 4 ? "prod" : "dev" } },
      podSelector: { matchLabels: { app: `a${i % 20}` } },
    },
  };
  const ingressPeer = i % 2 ? { namespaces: { matchLabels: { team: `t${(i + 3) % 25}` } } } : {
    pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: `a${(i + 1) % 20}` } } },
  };
  const egressPeer = i % 3 === 0
    ? { networks: [`192.0.${i % 256}.0/24`, `2001:db8:${i.toString(16)}::/48`] }
    : i % 5 === 0
    ? { nodes: { matchLabels: { zone: `z${i % 10}` } } }
    : {
      pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: `a${(i + 2) % 20}` } } },
    };
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name: `cnp-${i}` },
    spec: {
      tier,
      priority,
      subject,
      ingress: [{ name: "in", action, from: [ingressPeer], protocols: TCP(8080) }],
      egress: [{ name: "out", action: "Deny", to: [egressPeer], protocols: TCP(443) }],
    },
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
  let lastRv = "";
  for (let i = 0; i < CNPS; i++) {
    const put = api.put("clusternetworkpolicies", cnp(i));
    lastRv = (put.metadata as { resourceVersion: string }).resourceVersion;
  }
  const kind = (await Deno.readTextFile(AGENT)).startsWith("#!") ? "bundled script" : "compiled";
  console.log(
    `cnp_scale: ${NODES} nodes, ${PODS} dual-stack pods (${LOCAL} on this node), ` +
      `${NAMESPACES} namespaces, ${POLICIES} NetworkPolicies, ${CNPS} ClusterNetworkPolicies; ` +
      `bin/mycni-init is a ${kind}`,
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
      `${(first.at - t0).toFixed(0)} ms (${first.targets} pods isolated, ${first.ms} ms ` +
        `compile + apply)`,
    );
    // The first table need not hold the ClusterNetworkPolicies (their informer may list after
    // the others'): the table that does is the one synced before the agent reported enforcing
    // the last one's resourceVersion (nothing was written since).
    const health = await waitForAsync(async () => {
      const h = await healthz();
      return Number(h.policy.resourceVersion) >= Number(lastRv) ? h : undefined;
    }, 60_000);
    const seen = performance.now();
    const whole = syncs.filter((s) => s.at <= seen).at(-1)!;
    const cnps = health.policy.clusterNetworkPolicies;
    line(
      "start -> first table with every CNP",
      `${(whole.at - t0).toFixed(0)} ms (table ${syncs.indexOf(whole) + 1} synced)`,
    );
    line("  of which compile + apply", `${whole.ms} ms`, "< 1000 ms", whole.ms < 1000);
    const rules = Number(/^mycni_policy_rules (\d+)/m.exec(await metrics())?.[1] ?? 0);
    console.log(
      `  (${rules} rules in per-pod chains; the agent holds ${cnps.Admin} Admin and ` +
        `${cnps.Baseline} Baseline ClusterNetworkPolicies, ${cnps.errors} with errors)`,
    );
    // With no other CNP, moving "moving" changes no rule's order: nothing to time.
    if (CNPS > 0) await changes(api, syncs);
  } finally {
    await agent.stop();
    await run(uninstallArgv(dir));
  }
}

/**
 * CNP changes, EVENTS of each kind, each timed from the API write to the agent's "nftables table
 * synced" (the transaction has returned: the kernel enforces it), checked at the 90th percentile.
 * The policy changed is "moving", an Admin policy over every pod, written first (not timed):
 * moving it between priority 0 and 1000 moves its rules before or after every other Admin
 * policy's in the chains of this node's pods; its second rule is added and removed in turn.
 */
async function changes(api: { put(kind: string, obj: Obj): void }, syncs: Synced[]) {
  const moving = (priority: number, extra: boolean): Obj => {
    const ingress: Obj[] = [{
      name: "deny-t7",
      action: "Deny",
      from: [{ namespaces: { matchLabels: { team: "t7" } } }],
      protocols: TCP(8081),
    }];
    if (extra) {
      ingress.push({
        name: "metrics",
        action: "Accept",
        from: [{ namespaces: { matchLabels: { env: "prod" } } }],
        protocols: TCP(9090),
      });
    }
    return {
      apiVersion: "policy.networking.k8s.io/v1alpha2",
      kind: "ClusterNetworkPolicy",
      metadata: { name: "moving" },
      spec: { tier: "Admin", priority, subject: { namespaces: {} }, ingress },
    };
  };
  const put = (o: Obj) => () => api.put("clusternetworkpolicies", o);
  await timed(syncs, [], put(moving(0, false)));
  await new Promise((r) => setTimeout(r, 2000));
  const kinds = {
    "CNP priority changed": [] as number[],
    "CNP rule added": [] as number[],
  };
  const applyMs: number[] = [];
  const pause = () => new Promise((r) => setTimeout(r, 100));
  let priority = 0;
  for (let k = 0; k < EVENTS; k++) {
    priority = k % 2 ? 0 : 1000;
    kinds["CNP priority changed"].push(await timed(syncs, applyMs, put(moving(priority, false))));
    await pause();
    kinds["CNP rule added"].push(
      await timed(syncs, applyMs, put(moving(priority, true))),
    );
    await pause();
    await timed(syncs, [], put(moving(priority, false))); // removed again: not counted twice
    await pause();
  }
  for (const [what, ms] of Object.entries(kinds)) {
    const s = spread(ms);
    line(`event -> enforced: ${what}`, spreadText(s, "ms"), "p90 < 200 ms", s.p90 < 200);
  }
  const apply = spread(applyMs);
  console.log(`  (the agent's own compile + apply of those changes: ${spreadText(apply, "ms")})`);
}

/** Milliseconds from `change` to the next table sync that isolates something. */
async function timed(syncs: Synced[], applyMs: number[], change: () => void): Promise<number> {
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

async function waitForAsync<T>(get: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`Gave up after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function metrics(): Promise<string> {
  return await (await fetch("http://127.0.0.1:9749/metrics")).text();
}

interface Health {
  policy: {
    resourceVersion: string;
    clusterNetworkPolicies: { Admin: number; Baseline: number; errors: number };
  };
}

async function healthz(): Promise<Health> {
  return await (await fetch("http://127.0.0.1:9749/healthz")).json() as Health;
}
