// The ClusterNetworkPolicy part of the compiler (lib/policy/compile.ts calls it with its own peer
// machinery, so pods, namespaces and CIDRs become address sets exactly as for NetworkPolicy):
// per target and direction, the Admin and Baseline rules in evaluation order, with actions.
// Semantics: network-policy-api v0.2.0 (apis/v1alpha2), DESIGN.md "ClusterNetworkPolicy".
import { parseIp } from "../ip/cidr.ts";
import type {
  ClusterNetworkPolicy,
  ClusterPeer,
  ClusterPolicyEntry,
  ClusterPolicyRule,
  ClusterSubject,
  Tier,
} from "../kube/cluster_network_policy.ts";
import {
  type Direction,
  type LabelSelector,
  type PodInfo,
  type PolicyPeer,
  type Protocol,
  PROTOCOLS,
} from "../kube/policy_objects.ts";
import type { AddressSet, ClusterRule, PortMatch, TierRules } from "./plan.ts";
import { selectorMatches } from "./selector.ts";

/** What the ClusterNetworkPolicy compiler reads of the cluster (a subset of PolicyState). */
export interface ClusterInputs {
  /** Keyed by name. */
  readonly clusterPolicies: ReadonlyMap<string, ClusterPolicyEntry>;
  readonly namespaces: ReadonlyMap<string, { readonly labels: Readonly<Record<string, string>> }>;
  /** Node name -> its addresses. */
  readonly nodes?: ReadonlyMap<string, readonly string[]>;
  /** Node name -> its labels (a node without an entry has none). */
  readonly nodeLabels?: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** The NetworkPolicy compiler's peer machinery, for one compile. */
export interface PeerResolver {
  /**
   * The addresses of NetworkPolicy peers that never depend on a policy's namespace (each has a
   * namespaceSelector, or is an ipBlock); the same object for the same peers within a compile.
   */
  peers(peers: readonly PolicyPeer[]): AddressSet;
  /** An egress named port among `peers`: the destination pods' (address, port) pairs. */
  egressNamedPort(protocol: Protocol, name: string, peers: AddressSet): PortMatch;
}

/** A pod that can be a subject. */
export interface ClusterCandidate {
  readonly key: string;
  readonly info: PodInfo;
}

/** Per subject, its rules per direction; and the policies enforced fail-closed. */
export interface ClusterCompiled<T> {
  readonly targets: Map<T, { ingress?: TierRules; egress?: TierRules }>;
  readonly errors: { policy: string; error: string }[];
}

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];
const NOTHING: AddressSet = { v4: [], v6: [] };

/**
 * Compiles every ClusterNetworkPolicy for the `candidates` (eligible pods by namespace) it
 * selects. Order within a tier: priority, then name (upstream leaves same-priority overlaps to
 * the implementation; kube-network-policies orders them by name too), then rule order. Peers:
 * `namespaces` = every pod of the matching namespaces, `pods` = matching pods in matching
 * namespaces (host-network pods never, as for NetworkPolicy), `networks` = the CIDRs, `nodes` =
 * the addresses of the matching nodes. Ports: `destinationPort` number or range per protocol,
 * none = every port of it; `destinationNamedPort` resolves on the target's container ports
 * (ingress) or on each destination pod among the peers (egress), whatever their protocol; no
 * `protocols` = everything. A policy with `error` becomes one deny-all rule (index -1) at its
 * tier and priority, in the directions its `failClosed` names.
 *
 * @example
 * const out = compileClusterPolicies(inputs, candidates, resolver);
 * out.targets.get(podRecord)?.ingress?.admin[0];
 * // { tier: "Admin", policy: "cluster-wide-deny-example", priority: 10, rule: 0,
 * //   name: "select-all-deny-all", action: "Deny", peers: { v4: [...], v6: [...] }, ports: "any" }
 */
export function compileClusterPolicies<T extends ClusterCandidate>(
  inputs: ClusterInputs,
  candidates: ReadonlyMap<string, readonly T[]>,
  resolver: PeerResolver,
): ClusterCompiled<T> {
  const targets = new Map<T, { ingress?: Drafts; egress?: Drafts }>();
  const errors: { policy: string; error: string }[] = [];
  const entries = [...inputs.clusterPolicies.values()].sort((a, b) =>
    a.policy.priority - b.policy.priority ||
    (a.policy.name < b.policy.name ? -1 : a.policy.name > b.policy.name ? 1 : 0)
  );
  const nodePeers = nodePeerResolver(inputs);
  const peerContext = { resolver, nodePeers, peerSets: new Map<string, AddressSet>() };
  for (const entry of entries) {
    const policy = entry.policy;
    if (entry.error !== undefined) errors.push({ policy: policy.name, error: entry.error });
    const subjects = subjectsOf(inputs, candidates, policy.subject);
    if (subjects.length === 0) continue;
    for (const direction of DIRECTIONS) {
      const rules = entry.error === undefined
        ? policy[direction].map((r, i) => compileRule(peerContext, policy, direction, r, i))
        : entry.failClosed?.[direction]
        ? [{ shared: failClosedRule(policy, entry.error) }]
        : [];
      if (rules.length === 0) continue;
      for (const pod of subjects) {
        let draft = targets.get(pod);
        if (draft === undefined) targets.set(pod, draft = {});
        const tiers = draft[direction] ??= { admin: [], baseline: [] };
        const list = policy.tier === "Admin" ? tiers.admin : tiers.baseline;
        for (const rule of rules) list.push(rule.shared ?? resolveOnTarget(rule, pod.info));
      }
    }
  }
  return { targets, errors };
}

interface Drafts {
  admin: ClusterRule[];
  baseline: ClusterRule[];
}

/** A rule compiled as far as it goes without the target; `shared` when that is all the way. */
interface CompiledClusterRule {
  readonly shared?: ClusterRule;
  /** Without ports; `named` are the ingress named ports left to resolve on the target. */
  readonly base?: ClusterRule;
  readonly ports?: readonly (PortMatch | { readonly named: string })[];
}

function failClosedRule(policy: ClusterNetworkPolicy, error: string): ClusterRule {
  return {
    tier: policy.tier,
    policy: policy.name,
    priority: policy.priority,
    rule: -1,
    name: "",
    action: "Deny",
    peers: "any",
    ports: "any",
    error,
  };
}

/** Candidates the subject selects (namespace labels from the Namespace object, else none). */
function subjectsOf<T extends ClusterCandidate>(
  inputs: ClusterInputs,
  candidates: ReadonlyMap<string, readonly T[]>,
  subject: ClusterSubject,
): T[] {
  const namespaces = "namespaces" in subject ? subject.namespaces : subject.pods.namespaceSelector;
  const pods = "pods" in subject ? subject.pods.podSelector : undefined;
  const out: T[] = [];
  for (const [ns, records] of candidates) {
    if (!selectorMatches(namespaces, inputs.namespaces.get(ns)?.labels ?? {})) continue;
    for (const r of records) {
      if (pods === undefined || selectorMatches(pods, r.info.labels)) out.push(r);
    }
  }
  return out;
}

/** What a compile resolves peers with, and the peer lists it has resolved (by their JSON). */
interface PeerContext {
  readonly resolver: PeerResolver;
  readonly nodePeers: (selector: LabelSelector) => PolicyPeer[];
  readonly peerSets: Map<string, AddressSet>;
}

function compileRule(
  ctx: PeerContext,
  policy: ClusterNetworkPolicy,
  direction: Direction,
  rule: ClusterPolicyRule,
  index: number,
): CompiledClusterRule {
  const resolver = ctx.resolver;
  // Rules of many policies repeat their peers: resolve each list once, before node peers grow
  // into one ipBlock per node address.
  const peersKey = JSON.stringify(rule.peers);
  let peers = ctx.peerSets.get(peersKey);
  if (peers === undefined) {
    // A peer can select nothing (nodes that match no node): no peer is no address, not "any".
    const list = rule.peers.flatMap((p) => policyPeers(p, ctx.nodePeers));
    peers = list.length === 0 ? NOTHING : resolver.peers(list);
    ctx.peerSets.set(peersKey, peers);
  }
  const base: ClusterRule = {
    tier: policy.tier,
    policy: policy.name,
    priority: policy.priority,
    rule: index,
    name: rule.name,
    action: rule.action,
    peers,
    ports: "any",
  };
  if (rule.protocols === undefined) return { shared: base };
  const ports = rule.protocols.flatMap((p): (PortMatch | { named: string })[] => {
    if ("protocol" in p) {
      return [{ kind: "range", protocol: p.protocol, port: p.start, endPort: p.end }];
    }
    if (direction === "ingress") return [{ named: p.namedPort }];
    // The name carries no protocol: it is whatever the destination's container port says.
    return (PROTOCOLS as readonly Protocol[]).map((proto) =>
      resolver.egressNamedPort(proto, p.namedPort, peers)
    )
      .filter((m) => m.kind === "named" && m.endpoints.length > 0);
  });
  if (ports.every((p) => "kind" in p)) return { shared: { ...base, ports: ports as PortMatch[] } };
  return { base, ports };
}

/** A ClusterNetworkPolicy peer as the NetworkPolicy peers the resolver knows. */
function policyPeers(
  peer: ClusterPeer,
  nodePeers: (selector: LabelSelector) => PolicyPeer[],
): PolicyPeer[] {
  if ("namespaces" in peer) return [{ namespaces: peer.namespaces }];
  if ("pods" in peer) {
    return [{ namespaces: peer.pods.namespaceSelector, pods: peer.pods.podSelector }];
  }
  if ("networks" in peer) return peer.networks.map((cidr) => ({ ipBlock: { cidr, except: [] } }));
  return nodePeers(peer.nodes);
}

/** `nodes` peers: each matching node's addresses as host-sized ipBlocks, sorted. */
function nodePeerResolver(inputs: ClusterInputs): (selector: LabelSelector) => PolicyPeer[] {
  return (selector) => {
    const cidrs: string[] = [];
    for (const [name, addrs] of inputs.nodes ?? []) {
      if (!selectorMatches(selector, inputs.nodeLabels?.get(name) ?? {})) continue;
      for (const text of addrs) {
        let family;
        try {
          family = parseIp(text).family;
        } catch {
          continue; // a node address we cannot read cannot be a destination we match
        }
        cidrs.push(`${text}/${family === 4 ? 32 : 128}`);
      }
    }
    return [...new Set(cidrs)].sort().map((cidr) => ({ ipBlock: { cidr, except: [] } }));
  };
}

/** An ingress rule with named ports, resolved on the target's container ports. */
function resolveOnTarget(rule: CompiledClusterRule, target: PodInfo): ClusterRule {
  const ports: PortMatch[] = [];
  const seen = new Set<string>();
  for (const p of rule.ports!) {
    if ("kind" in p) {
      ports.push(p);
      continue;
    }
    for (const c of target.ports) {
      const key = `${c.protocol}/${c.port}`;
      if (c.name !== p.named || seen.has(key)) continue;
      seen.add(key);
      ports.push({ kind: "range", protocol: c.protocol, port: c.port, endPort: c.port });
    }
  }
  return { ...rule.base!, ports };
}

/**
 * How many ClusterNetworkPolicies each tier has, and how many cannot be enforced exactly (for
 * /metrics).
 *
 * @example
 * clusterPolicyCounts(state.clusterPolicies); // { Admin: 3, Baseline: 1, errors: 0 }
 */
export function clusterPolicyCounts(
  entries: ReadonlyMap<string, ClusterPolicyEntry> | undefined,
): Record<Tier | "errors", number> {
  const out = { Admin: 0, Baseline: 0, errors: 0 };
  for (const e of entries?.values() ?? []) {
    out[e.policy.tier]++;
    if (e.error !== undefined) out.errors++;
  }
  return out;
}
