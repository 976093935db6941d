// Shared set-up for the policy model's tests: the upstream e2e suite's cluster shape (namespaces
// x, y, z with pods a, b, c each, test/e2e/network/netpol), policies written as their JSON, and
// a truth table of every pod pair read off a compiled plan the way the kernel would.
import { parseIp } from "../../../lib/ip/cidr.ts";
import { parseNetworkPolicy } from "../../../lib/kube/network_policy.ts";
import {
  type ContainerPort,
  type NamespaceInfo,
  objectKey,
  type PodInfo,
  type PolicyEntry,
  type Protocol,
} from "../../../lib/kube/policy_objects.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { allowRuleMatches } from "../../../lib/policy/match.ts";
import type { PolicyPlan, TargetPlan } from "../../../lib/policy/plan.ts";

export const NAMESPACES = ["x", "y", "z"];
export const POD_NAMES = ["a", "b", "c"];

/** The e2e servers' container ports: 80 and 81 on TCP, UDP and SCTP, named like upstream's. */
export const SERVER_PORTS: ContainerPort[] = [80, 81].flatMap((port) =>
  (["TCP", "UDP", "SCTP"] as Protocol[]).map((protocol) => ({
    name: `serve-${port}-${protocol.toLowerCase()}`,
    port,
    protocol,
  }))
);

/** A pod with the given parts; namespace/name from `key`. */
export function pod(
  key: string,
  parts: Partial<Omit<PodInfo, "namespace" | "name">> = {},
): PodInfo {
  const [namespace, name] = key.split("/");
  return {
    namespace,
    name,
    labels: parts.labels ?? { pod: name },
    node: parts.node ?? "n1",
    ips: parts.ips ?? [],
    hostNetwork: parts.hostNetwork ?? false,
    ports: parts.ports ?? [],
  };
}

/** A namespace labelled as the API server does (kubernetes.io/metadata.name) plus `labels`. */
export function namespace(name: string, labels: Record<string, string> = {}): NamespaceInfo {
  return { name, labels: { "kubernetes.io/metadata.name": name, ...labels } };
}

/** A policy entry from its NetworkPolicy JSON spec, through the real parser. */
export function policy(key: string, spec: unknown): PolicyEntry {
  const [ns, name] = key.split("/");
  const parsed = parseNetworkPolicy({ metadata: { namespace: ns, name }, spec });
  if (!parsed.ok) throw new Error(`fixture policy ${key}: ${parsed.reason}`);
  return parsed.entry;
}

/** A state from lists (keys derived as the agent derives them). */
export function stateOf(parts: {
  pods: PodInfo[];
  namespaces?: NamespaceInfo[];
  policies?: PolicyEntry[];
  nodes?: Record<string, string[]>;
}): PolicyState {
  return {
    pods: new Map(parts.pods.map((p) => [objectKey(p.namespace, p.name), p])),
    namespaces: new Map((parts.namespaces ?? []).map((n) => [n.name, n])),
    policies: new Map(
      (parts.policies ?? []).map((e) => [objectKey(e.policy.namespace, e.policy.name), e]),
    ),
    nodes: parts.nodes === undefined ? undefined : new Map(Object.entries(parts.nodes)),
  };
}

/**
 * The e2e cluster: x, y, z with a, b, c each (labels pod=<name>, namespaces labelled ns=<name>),
 * pod a on n1, b on n2, c on n3, dual-stack: x/a is 10.0.1.1 and fd00::1:1, z/c 10.0.3.3.
 */
export function e2eCluster(policies: PolicyEntry[] = []): PolicyState {
  const pods = NAMESPACES.flatMap((ns, i) =>
    POD_NAMES.map((name, j) =>
      pod(`${ns}/${name}`, {
        node: `n${j + 1}`,
        ips: [`10.0.${i + 1}.${j + 1}`, `fd00::${i + 1}:${j + 1}`],
        ports: SERVER_PORTS,
      })
    )
  );
  return stateOf({
    pods,
    namespaces: NAMESPACES.map((ns) => namespace(ns, { ns })),
    policies,
    nodes: { n1: ["192.0.2.11"], n2: ["192.0.2.12"], n3: ["192.0.2.13"] },
  });
}

export const ALL_PODS = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));

/** The address of `key` in `family` (the first of that family). */
export function addressOf(state: PolicyState, key: string, family: 4 | 6 = 4): string {
  const found = state.pods.get(key)?.ips.find((ip) => parseIp(ip).family === family);
  if (found === undefined) throw new Error(`fixture: ${key} has no IPv${family} address`);
  return found;
}

/**
 * Every ordered pod pair (self excluded, as upstream's ignoreLoopback) whose verdict, read off
 * the plan as the kernel does (egress on the source, ingress on the destination), differs from
 * `expected`: "x/a -> y/b: want true" lines, so a failing test names the pairs.
 */
export function truthTableDiff(
  state: PolicyState,
  plan: PolicyPlan,
  flow: { protocol: Protocol; port: number; family?: 4 | 6 },
  expected: (from: string, to: string) => boolean,
): string[] {
  const targets = new Map(plan.targets.map((t) => [t.pod, t]));
  const out: string[] = [];
  for (const from of ALL_PODS) {
    for (const to of ALL_PODS) {
      if (from === to) continue;
      const src = parseIp(addressOf(state, from, flow.family));
      const dst = parseIp(addressOf(state, to, flow.family));
      const egress = allowedBy(targets.get(from), "egress", dst, flow);
      const ingress = allowedBy(targets.get(to), "ingress", src, flow);
      const want = expected(from, to);
      if ((egress && ingress) !== want) out.push(`${from} -> ${to}: want ${want}`);
    }
  }
  return out;
}

function allowedBy(
  target: TargetPlan | undefined,
  direction: "ingress" | "egress",
  peer: ReturnType<typeof parseIp>,
  flow: { protocol: Protocol; port: number },
): boolean {
  const plan = target?.[direction];
  if (plan === undefined) return true;
  return plan.allow.some((rule) => allowRuleMatches(rule, { peer, ...flow }));
}

/** Compiles every target and returns the mismatching pairs (see {@linkcode truthTableDiff}). */
export function checkTable(
  policies: PolicyEntry[],
  flow: { protocol: Protocol; port: number; family?: 4 | 6 },
  expected: (from: string, to: string) => boolean,
  state: PolicyState = e2eCluster(policies),
): string[] {
  return truthTableDiff(state, compilePolicies(state), flow, expected);
}

/** Namespace of a pod key. */
export function nsOf(key: string): string {
  return key.split("/")[0];
}

/** Name of a pod key. */
export function nameOf(key: string): string {
  return key.split("/")[1];
}

/**
 * The `spec` of the documentation's test-network-policy
 * (kubernetes.io/docs/concepts/services-networking/network-policies, "The NetworkPolicy resource").
 */
export const DOC_POLICY_SPEC = {
  podSelector: { matchLabels: { role: "db" } },
  policyTypes: ["Ingress", "Egress"],
  ingress: [{
    from: [
      { ipBlock: { cidr: "172.17.0.0/16", except: ["172.17.1.0/24"] } },
      { namespaceSelector: { matchLabels: { project: "myproject" } } },
      { podSelector: { matchLabels: { role: "frontend" } } },
    ],
    ports: [{ protocol: "TCP", port: 6379 }],
  }],
  egress: [{
    to: [{ ipBlock: { cidr: "10.0.0.0/24" } }],
    ports: [{ protocol: "TCP", port: 5978 }],
  }],
};
