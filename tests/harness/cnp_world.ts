// The upstream ClusterNetworkPolicy conformance suite's world on the simulated cluster: the base
// manifests' namespaces and pods (tests/unit/policy/cnp_conformance_cases.ts, BASE) on three
// nodes, host-network pods as their node (its addresses, its probe serving their ports), and the
// suite's subtests grouped by the policy state they share, each group written to the API as the
// difference from the one before. The model (explain over the same objects) says what every
// probe gave before a group's change, so a group whose expectation the old state already meets
// is known as such (tests/integration/cnp_conformance_test.ts marks those unchanged).
import { parseClusterNetworkPolicy } from "../../lib/kube/cluster_network_policy.ts";
import { parseNetworkPolicy } from "../../lib/kube/network_policy.ts";
import { objectKey, type PodInfo } from "../../lib/kube/policy_objects.ts";
import type { PolicyState } from "../../lib/policy/compile.ts";
import { explainFlow } from "../../lib/policy/explain.ts";
import {
  BASE,
  type ConformanceCase,
  type PolicySet,
  type Probe,
  type Subtest,
} from "../unit/policy/cnp_conformance_cases.ts";
import { type Cluster, type ClusterNode, type Pod, startCluster, waitFor } from "./cluster.ts";

/** The families a probe can be sent in. */
export type Family = 4 | 6;

/** Subtests of one upstream test that run in the same policy state, in upstream's order. */
export interface ConformanceGroup {
  readonly test: string;
  /** 1-based within its test, for people. */
  readonly index: number;
  readonly subtests: readonly Subtest[];
  /** What is in force (the subtests' shared objects). */
  readonly set: PolicySet;
}

/** "CNPAdminTierIngressTCP #2": how a group is named in the test and its marks. */
export function groupName(g: ConformanceGroup): string {
  return `${g.test} #${g.index}`;
}

/**
 * Upstream's subtests grouped: consecutive subtests of one test with the same objects in force
 * (upstream often probes one state in two subtests) are one group.
 *
 * @example
 * conformanceGroups(CONFORMANCE_CASES)[0].subtests.length; // 2
 */
export function conformanceGroups(cases: readonly ConformanceCase[]): ConformanceGroup[] {
  const out: ConformanceGroup[] = [];
  for (const c of cases) {
    let index = 0;
    let last: { key: string; subtests: Subtest[] } | undefined;
    for (const s of c.subtests) {
      const key = setKey(s);
      if (last?.key === key) {
        last.subtests.push(s);
        continue;
      }
      last = { key, subtests: [s] };
      out.push({ test: c.test, index: ++index, subtests: last.subtests, set: pickSet(s) });
    }
  }
  return out;
}

function pickSet(s: PolicySet): PolicySet {
  return {
    clusterNetworkPolicies: s.clusterNetworkPolicies,
    networkPolicies: s.networkPolicies,
    ...(s.namespaceLabels ? { namespaceLabels: s.namespaceLabels } : {}),
  };
}

function setKey(s: PolicySet): string {
  return JSON.stringify(pickSet(s));
}

/**
 * The objects with every `networks` placeholder ({@linkcode podIpCidr} in the cases) replaced by
 * the pod's host CIDR in each family it has: upstream writes its `status.podIP`, one family; a
 * dual-stack cluster needs both for the suite's expectation to hold in each family.
 */
export function instantiateDualStack(
  objects: readonly unknown[],
  ipsOf: (podKey: string) => readonly string[],
): Record<string, unknown>[] {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) {
      return v.flatMap((item) => {
        const m = typeof item === "string" ? /^\{podIP (\S+)\}$/.exec(item) : null;
        if (m === null) return [walk(item)];
        return ipsOf(m[1]).map((ip) => `${ip}/${ip.includes(":") ? 128 : 32}`);
      });
    }
    if (typeof v === "object" && v !== null) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return objects.map((o) => walk(o) as Record<string, unknown>);
}

/** Where every base pod is: its addresses (a host-network pod's are its node's). */
export interface WorldAddresses {
  /** `namespace/name` -> addresses, IPv4 first. */
  readonly pods: ReadonlyMap<string, readonly string[]>;
  /** Node name -> addresses. */
  readonly nodes: ReadonlyMap<string, readonly string[]>;
}

/** The address of `podKey` in `family`. */
export function addressOf(addrs: WorldAddresses, podKey: string, family: Family): string {
  const ip = addrs.pods.get(podKey)?.find((a) => a.includes(":") === (family === 6));
  if (ip === undefined) throw new Error(`${podKey} has no IPv${family} address`);
  return ip;
}

/** The policy model's state for `set` over the world's addresses (what explain reads). */
export function modelState(set: PolicySet, addrs: WorldAddresses): PolicyState {
  const pods = new Map<string, PodInfo>(BASE.pods.map((p) => {
    const key = objectKey(p.namespace, p.name);
    return [key, {
      namespace: p.namespace,
      name: p.name,
      labels: p.labels,
      node: p.node,
      ips: [...addrs.pods.get(key)!],
      hostNetwork: p.hostNetwork,
      ports: p.ports,
    }];
  }));
  const namespaces = new Map(BASE.namespaces.map((n) => [n.name, {
    name: n.name,
    labels: set.namespaceLabels?.[n.name] ?? n.labels,
  }]));
  const policies = new Map(set.networkPolicies.map((obj) => {
    const parsed = parseNetworkPolicy(obj);
    if (!parsed.ok) throw new Error(`Conformance NetworkPolicy does not parse: ${parsed.reason}`);
    return [objectKey(parsed.entry.policy.namespace, parsed.entry.policy.name), parsed.entry];
  }));
  const cnps = instantiateDualStack(set.clusterNetworkPolicies, (k) => addrs.pods.get(k)!);
  const clusterPolicies = new Map(cnps.map((obj) => {
    const parsed = parseClusterNetworkPolicy(obj);
    if (!parsed.ok) throw new Error(`Conformance ClusterNetworkPolicy: ${parsed.reason}`);
    return [parsed.entry.policy.name, parsed.entry];
  }));
  return {
    pods,
    namespaces,
    policies,
    clusterPolicies,
    nodes: addrs.nodes,
    nodeLabels: new Map(BASE.nodes.map((n) => [n.name, n.labels])),
  };
}

/** What the model says of `probe` in `family` under `state`. */
export function modelAllows(
  state: PolicyState,
  addrs: WorldAddresses,
  probe: Probe,
  family: Family,
): boolean {
  return explainFlow(state, {
    from: probe.from,
    to: addressOf(addrs, probe.to, family),
    protocol: probe.protocol,
    port: probe.port,
  }).allowed;
}

/** The base manifests on a simulated cluster. */
export interface ConformanceWorld extends AsyncDisposable {
  readonly cluster: Cluster;
  /** The regular (not host-network) pods by `namespace/name`. */
  readonly pods: ReadonlyMap<string, Pod>;
  readonly addresses: WorldAddresses;
}

/**
 * Starts 3 dual-stack API-mode nodes, creates BASE's namespaces, its regular pods where BASE
 * places them (each serving what it serves but SCTP), and its host-network pods as Pod objects
 * on their nodes (their servers are the nodes' probes), and waits until every agent is healthy.
 */
export async function startConformanceWorld(
  opts: { log?: (line: string) => void } = {},
): Promise<ConformanceWorld> {
  const serves = (host: boolean, protocol: "TCP" | "UDP") => [
    ...new Set(
      BASE.pods.filter((p) => p.hostNetwork === host).flatMap((p) =>
        p.serves.filter((s) => s.protocol === protocol).map((s) => s.port)
      ),
    ),
  ];
  const cluster = await startCluster({
    nodes: BASE.nodes.length,
    podsPerNode: 0,
    dualStack: true,
    mode: "api",
    probePorts: { tcp: serves(false, "TCP"), udp: serves(false, "UDP") },
    nodeProbePorts: { tcp: serves(true, "TCP"), udp: serves(true, "UDP") },
    log: opts.log,
  });
  try {
    const byName = new Map(cluster.nodes.map((n) => [n.name, n]));
    for (const n of BASE.nodes) {
      if (!byName.has(n.name)) throw new Error(`The cluster has no node ${n.name}`);
    }
    for (const ns of BASE.namespaces) {
      await cluster.apiPut("namespaces", { metadata: { name: ns.name, labels: ns.labels } });
    }
    const pods = new Map<string, Pod>();
    const podAddrs = new Map<string, readonly string[]>();
    await Promise.all(BASE.nodes.map(async (n) => {
      // A node's pods one at a time, as kubelet; the nodes in parallel.
      for (const p of BASE.pods.filter((p) => p.node === n.name)) {
        const key = objectKey(p.namespace, p.name);
        const node = byName.get(n.name)!;
        if (p.hostNetwork) {
          await cluster.apiPut("pods", hostNetworkPod(p, node));
          podAddrs.set(key, node.ips);
          continue;
        }
        const pod = await cluster.addPod(node, {
          namespace: p.namespace,
          name: p.name,
          labels: { ...p.labels },
          ports: p.ports.map((c) => ({ name: c.name, port: c.port, protocol: c.protocol })),
        });
        pods.set(key, pod);
        podAddrs.set(key, pod.ips);
      }
    }));
    await waitFor("every agent healthy with policy synced", 20000, async () => {
      for (const n of cluster.nodes) if (!(await cluster.agentHealthy(n))) return false;
      return true;
    });
    return {
      cluster,
      pods,
      addresses: {
        pods: podAddrs,
        nodes: new Map(cluster.nodes.map((n) => [n.name, n.ips])),
      },
      [Symbol.asyncDispose]: () => cluster[Symbol.asyncDispose](),
    };
  } catch (err) {
    await cluster[Symbol.asyncDispose]();
    throw err;
  }
}

/** The Pod object of a host-network base pod: its node's addresses, as the kubelet reports. */
function hostNetworkPod(p: (typeof BASE.pods)[number], node: ClusterNode): Record<string, unknown> {
  return {
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
    spec: {
      nodeName: node.name,
      hostNetwork: true,
      containers: [{
        name: "c",
        image: "probe",
        ports: p.ports.map((c) => ({ name: c.name, containerPort: c.port, protocol: c.protocol })),
      }],
    },
    status: {
      phase: "Running",
      podIP: node.ips[0],
      podIPs: node.ips.map((ip) => ({ ip })),
      hostIP: node.ips[0],
    },
  };
}

/**
 * Writes the difference from `from` to `to` to the API: ClusterNetworkPolicies and
 * NetworkPolicies created, replaced or deleted by name, namespaces relabelled (back to BASE's
 * labels where `to` no longer changes them). Returns how many writes it made.
 */
export async function applyDelta(
  world: ConformanceWorld,
  from: PolicySet,
  to: PolicySet,
): Promise<number> {
  const { cluster } = world;
  let writes = 0;
  const cnps = (s: PolicySet) =>
    byKey(instantiateDualStack(s.clusterNetworkPolicies, (k) => world.addresses.pods.get(k)!));
  const nps = (s: PolicySet) => byKey(s.networkPolicies as Record<string, unknown>[]);
  for (
    const [resource, was, now] of [
      ["clusternetworkpolicies", cnps(from), cnps(to)],
      ["networkpolicies", nps(from), nps(to)],
    ] as const
  ) {
    for (const [key, obj] of now) {
      if (JSON.stringify(was.get(key)) === JSON.stringify(obj)) continue;
      await cluster.apiPut(resource, obj);
      writes++;
    }
    for (const key of was.keys()) {
      if (now.has(key)) continue;
      await cluster.apiDelete(resource, key);
      writes++;
    }
  }
  for (const ns of BASE.namespaces) {
    const before = from.namespaceLabels?.[ns.name] ?? ns.labels;
    const after = to.namespaceLabels?.[ns.name] ?? ns.labels;
    if (JSON.stringify(before) === JSON.stringify(after)) continue;
    await cluster.apiPut("namespaces", { metadata: { name: ns.name, labels: after } });
    writes++;
  }
  return writes;
}

function byKey(objects: readonly Record<string, unknown>[]): Map<string, Record<string, unknown>> {
  return new Map(objects.map((o) => {
    const m = o.metadata as { name: string; namespace?: string };
    return [m.namespace ? `${m.namespace}/${m.name}` : m.name, o];
  }));
}

/** One connection attempt of `probe` in `family` (a new socket): whether it was answered. */
export async function sendProbe(
  world: ConformanceWorld,
  probe: Probe,
  family: Family,
  timeoutMs: number,
): Promise<boolean> {
  const client = world.pods.get(probe.from)?.probe;
  if (!client) throw new Error(`${probe.from} is not a pod the world can send from`);
  const host = addressOf(world.addresses, probe.to, family);
  const o = { port: probe.port, timeoutMs };
  switch (probe.protocol) {
    case "TCP":
      return (await client.tcp(host, o)).ok;
    case "UDP":
      return (await client.udp(host, o)).ok;
    case "SCTP":
      throw new Error("SCTP probes cannot be sent: this kernel has no SCTP sockets");
  }
}
