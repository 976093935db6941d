// Benchmark of the policy compile + render of one event at scale, in process and without the
// kernel: what the agent's table step spends before it hands the table to nft (DESIGN.md
// "Performance targets": a pod on another node enforced under 50 ms, a label or policy change
// under 200 ms, at the 90th percentile). 1000 nodes, 10,000 dual-stack pods (100 on this node),
// 1,000 namespaces and 500 NetworkPolicies of the shapes bench/policy_scale.ts uses, plus 100
// ClusterNetworkPolicies (both tiers, every peer form, egress named ports to every pod, nodes
// peers). Events, EVENTS of each kind, each applied on top of the last as the informers would
// (unchanged objects keep their identity): a pod added on another node, a pod on another node
// relabelled, a namespace relabelled, a policy added. Prints median, 90th percentile and maximum
// of compile + render per kind, and of compile and render apart; and, for reference, of the
// table difference that follows (lib/nft/ruleset.ts renderTableChange), which is not policy's.
// The agent runs V8 in lite mode (scripts/build.sh); for its figures, run with its flags:
//   deno run -A --no-lock [--v8-flags=--max-semi-space-size=1,--lite-mode] \
//     bench/policy_compile.ts [--mode incremental|scratch] [--events 40]
import { parseArgs } from "node:util";
import { parseClusterNetworkPolicy } from "../lib/kube/cluster_network_policy.ts";
import { parseNamespace } from "../lib/kube/namespace.ts";
import { parseNetworkPolicy } from "../lib/kube/network_policy.ts";
import { parsePod } from "../lib/kube/pod.ts";
import { type NftTable, renderTableChange } from "../lib/nft/ruleset.ts";
import { desiredTable } from "../lib/node/desired_table.ts";
import {
  type NamespaceInfo,
  objectKey,
  type PodInfo,
  type PolicyEntry,
} from "../lib/kube/policy_objects.ts";
import type { ClusterPolicyEntry } from "../lib/kube/cluster_network_policy.ts";
import { compilePolicies, createPolicyCompiler, type PolicyState } from "../lib/policy/compile.ts";
import {
  createPolicyRenderer,
  type PolicyObjects,
  policyObjects,
} from "../lib/policy/nft_rules.ts";
import type { PolicyPlan } from "../lib/policy/plan.ts";
import { spread, spreadText } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mode: { type: "string", default: "incremental" },
    nodes: { type: "string", default: "1000" },
    pods: { type: "string", default: "10000" },
    namespaces: { type: "string", default: "1000" },
    policies: { type: "string", default: "500" },
    cluster: { type: "string", default: "100" },
    local: { type: "string", default: "100" },
    events: { type: "string", default: "40" },
  },
});
const NODES = Number(values.nodes), PODS = Number(values.pods);
const NAMESPACES = Number(values.namespaces), POLICIES = Number(values.policies);
const CLUSTER = Number(values.cluster), LOCAL = Number(values.local);
const EVENTS = Number(values.events);
const HERE = "n1";

/** Node i (1-based): its addresses and its bridge's, as the table step gives explain. */
function nodeAddresses(i: number): string[] {
  return [
    `10.250.${i >> 8}.${i & 255}`,
    `fd00:250::${i.toString(16)}`,
    `10.${64 + (i >> 8)}.${i & 255}.1`,
    `fd00:10:244:${i.toString(16)}::1`,
  ];
}

/** Pod j as bench/policy_scale.ts writes it: the first LOCAL on n1, the others spread. */
function podObject(j: number, labels?: Record<string, string>) {
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

/** Policy m, in an even namespace, of one of bench/policy_scale.ts's five shapes. */
function policyObject(m: number) {
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

/**
 * ClusterNetworkPolicy c, of four shapes: an Admin deny from some pods of dev namespaces, an
 * Admin accept of egress to every pod's named port and to the worker nodes, an Admin pass from
 * a team's namespaces to prod web pods, a Baseline deny from dev and to 10/8.
 */
function clusterObject(c: number) {
  const shapes = [
    {
      tier: "Admin",
      subject: { namespaces: { matchLabels: { team: `t${c % 25}` } } },
      ingress: [{
        name: "deny-dev-app",
        action: "Deny",
        from: [{
          pods: {
            namespaceSelector: { matchLabels: { env: "dev" } },
            podSelector: { matchLabels: { app: `a${c % 20}` } },
          },
        }],
      }],
    },
    {
      tier: "Admin",
      subject: { namespaces: { matchLabels: { team: `t${c % 25}` } } },
      egress: [
        {
          name: "to-http",
          action: "Accept",
          to: [{ namespaces: {} }],
          protocols: [{ destinationNamedPort: "http" }],
        },
        {
          name: "to-workers",
          action: "Accept",
          to: [{ nodes: { matchLabels: { role: "worker" } } }],
        },
      ],
    },
    {
      tier: "Admin",
      subject: {
        pods: {
          namespaceSelector: { matchLabels: { env: "prod" } },
          podSelector: { matchLabels: { tier: "web" } },
        },
      },
      ingress: [{
        name: "pass-team",
        action: "Pass",
        from: [{ namespaces: { matchLabels: { team: `t${c % 25}` } } }],
        protocols: [{ tcp: { destinationPort: { number: 8080 } } }],
      }],
    },
    {
      tier: "Baseline",
      subject: { namespaces: {} },
      ingress: [{
        name: "deny-dev",
        action: "Deny",
        from: [{ namespaces: { matchLabels: { env: "dev" } } }],
      }],
      egress: [{ name: "deny-10", action: "Deny", to: [{ networks: ["10.0.0.0/8"] }] }],
    },
  ];
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name: `cnp-${c}` },
    spec: { priority: c % 50, ...shapes[c % shapes.length] },
  };
}

function namespaceObject(k: number, env = k % 2 ? "prod" : "dev") {
  return { metadata: { name: `ns-${k}`, labels: { team: `t${k % 25}`, env } } };
}

function pod(obj: unknown): [string, PodInfo] {
  const parsed = parsePod(obj);
  if (!parsed.ok) throw new Error(parsed.reason);
  return [objectKey(parsed.pod.namespace, parsed.pod.name), parsed.pod];
}

function namespace(obj: unknown): [string, NamespaceInfo] {
  const parsed = parseNamespace(obj);
  if (!parsed.ok) throw new Error(parsed.reason);
  return [parsed.namespace.name, parsed.namespace];
}

function policy(obj: unknown): [string, PolicyEntry] {
  const parsed = parseNetworkPolicy(obj);
  if (!parsed.ok) throw new Error(parsed.reason);
  return [objectKey(parsed.entry.policy.namespace, parsed.entry.policy.name), parsed.entry];
}

function clusterPolicy(obj: unknown): [string, ClusterPolicyEntry] {
  const parsed = parseClusterNetworkPolicy(obj);
  if (!parsed.ok || parsed.entry.error) throw new Error(parsed.ok ? parsed.entry.error : "?");
  return [parsed.entry.policy.name, parsed.entry];
}

/** The informers' maps: events change them, each compile gets copies (the agent's snapshot). */
const live = {
  pods: new Map(Array.from({ length: PODS }, (_, j) => pod(podObject(j)))),
  namespaces: new Map(Array.from({ length: NAMESPACES }, (_, k) => namespace(namespaceObject(k)))),
  policies: new Map(Array.from({ length: POLICIES }, (_, m) => policy(policyObject(m)))),
  clusterPolicies: new Map(
    Array.from({ length: CLUSTER }, (_, c) => clusterPolicy(clusterObject(c))),
  ),
};
const nodes = new Map(Array.from({ length: NODES }, (_, i) => [`n${i + 1}`, nodeAddresses(i + 1)]));
const nodeLabels = new Map(
  Array.from({ length: NODES }, (_, i) => [`n${i + 1}`, { role: i % 10 ? "worker" : "infra" }]),
);

function snapshot(): PolicyState {
  return {
    pods: new Map(live.pods),
    namespaces: new Map(live.namespaces),
    policies: new Map(live.policies),
    clusterPolicies: new Map(live.clusterPolicies),
    nodes,
    nodeLabels,
  };
}

type Compile = (state: PolicyState) => { plan: PolicyPlan; objects: PolicyObjects; mid: number };

function compiler(mode: string): Compile {
  if (mode === "scratch") {
    return (state) => {
      const plan = compilePolicies(state, { node: HERE });
      const mid = performance.now();
      return { plan, objects: policyObjects(plan), mid };
    };
  }
  if (mode !== "incremental") throw new Error(`--mode: want incremental or scratch, got ${mode}`);
  const compiler = createPolicyCompiler({ node: HERE });
  const renderer = createPolicyRenderer();
  return (state) => {
    const plan = compiler.compile(state);
    const mid = performance.now();
    return { plan, objects: renderer.render(plan), mid };
  };
}

interface Sample {
  total: number;
  compile: number;
  render: number;
  /** The table difference after it (lib/nft/ruleset.ts), for reference: not compile + render. */
  diff: number;
}

let lastTable: NftTable | undefined;

function timed(compile: Compile, into: Sample[]): PolicyObjects {
  const state = snapshot();
  const t0 = performance.now();
  const { objects, mid } = compile(state);
  const t1 = performance.now();
  const table = desiredTable({
    clusterCidrs: ["10.64.0.0/10", "fd00:10:244::/48"],
    podCIDRs: ["10.64.1.0/24", "fd00:10:244:1::/64"],
    policy: objects,
  });
  const t2 = performance.now();
  if (lastTable !== undefined) renderTableChange(lastTable, table);
  lastTable = table;
  into.push({ total: t1 - t0, compile: mid - t0, render: t1 - mid, diff: performance.now() - t2 });
  return objects;
}

const compile = compiler(values.mode);
console.log(
  `policy_compile (${values.mode}): ${NODES} nodes, ${PODS} dual-stack pods (${LOCAL} here), ` +
    `${NAMESPACES} namespaces, ${POLICIES} policies, ${CLUSTER} ClusterNetworkPolicies`,
);
const first: Sample[] = [];
const objects = timed(compile, first);
console.log(
  `first compile + render: ${first[0].total.toFixed(0)} ms (compile ` +
    `${first[0].compile.toFixed(0)}, render ${first[0].render.toFixed(0)}); ` +
    `${objects.sets.size} sets, ${objects.chains.size} chains, ${objects.ruleCount} rules`,
);
for (let i = 0; i < 3; i++) timed(compile, []); // warm up: nothing changed

const kinds: Record<string, Sample[]> = {
  "pod added on another node": [],
  "pod relabelled (another node)": [],
  "namespace relabelled": [],
  "policy added": [],
};
for (let k = 0; k < EVENTS; k++) {
  // A new pod on another node, in ns-0 (dev, as bench/policy_scale.ts) or ns-1 (prod).
  const [key, added] = pod(podObject(PODS + 500 + k, { app: "a0", tier: "web", role: "client" }));
  const moved = { ...added, namespace: `ns-${k % 2}` };
  live.pods.set(objectKey(moved.namespace, moved.name), moved);
  void key;
  timed(compile, kinds["pod added on another node"]);
  // A pod on another node flips tier web <-> db.
  const j = LOCAL + ((k * 37) % (PODS - LOCAL));
  const old = live.pods.get(`ns-${j % NAMESPACES}/p${j}`)!;
  const tier = old.labels.tier === "web" ? "db" : "web";
  live.pods.set(`ns-${j % NAMESPACES}/p${j}`, { ...old, labels: { ...old.labels, tier } });
  timed(compile, kinds["pod relabelled (another node)"]);
  // A namespace flips env prod <-> dev.
  const ns = (k * 13) % NAMESPACES;
  const was = live.namespaces.get(`ns-${ns}`)!;
  live.namespaces.set(
    `ns-${ns}`,
    namespace(namespaceObject(ns, was.labels.env === "prod" ? "dev" : "prod"))[1],
  );
  timed(compile, kinds["namespace relabelled"]);
  // A policy in ns-2k for its web pods, from prod namespaces (as bench/policy_scale.ts).
  const [pkey, entry] = policy({
    metadata: { namespace: `ns-${(2 * k) % NAMESPACES}`, name: `extra-${k}` },
    spec: {
      podSelector: { matchLabels: { tier: "web" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "prod" } } }] }],
    },
  });
  live.policies.set(pkey, entry);
  timed(compile, kinds["policy added"]);
}
const f = (xs: number[]) => spreadText(spread(xs), "ms", 1);
for (const [what, samples] of Object.entries(kinds)) {
  console.log(`${what}: compile + render ${f(samples.map((s) => s.total))}`);
  console.log(`  compile ${f(samples.map((s) => s.compile))}`);
  console.log(`  render  ${f(samples.map((s) => s.render))}`);
  console.log(`  (then the table diff, renderTableChange: ${f(samples.map((s) => s.diff))})`);
}
