// The ClusterNetworkPolicy part of the compiler (lib/policy/compile.ts calls it with its own peer
// sets, so pods, namespaces and CIDRs become address sets exactly as for NetworkPolicy): per
// target and direction, the Admin and Baseline rules in evaluation order, with actions. Kept from
// one compile to the next like the rest of the compiler: a policy is compiled again only when
// its object changes (or, with `nodes` peers, the nodes do), its subjects only where pods or
// namespaces changed, and a rule object only when its peers' addresses did.
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
import type { NamedSet, PeerSet } from "./peer_sets.ts";
import type { AddressSet, ClusterRule, PortMatch, TierRules } from "./plan.ts";
import type { PodChange, PodRecord } from "./pod_index.ts";
import { selectorKey, selectorMatches } from "./selector.ts";

/** What the ClusterNetworkPolicy compiler reads of the cluster (a subset of PolicyState). */
export interface ClusterInputs {
  /** Keyed by name. */
  readonly clusterPolicies: ReadonlyMap<string, ClusterPolicyEntry>;
  /** Node name -> its addresses. */
  readonly nodes?: ReadonlyMap<string, readonly string[]>;
  /** Node name -> its labels (a node without an entry has none). */
  readonly nodeLabels?: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** The NetworkPolicy compiler's peer sets, as ClusterNetworkPolicy peers use them. */
export interface ClusterPeers {
  /**
   * The set of NetworkPolicy peers that never depend on a policy's namespace (each has a
   * namespaceSelector, or is an ipBlock), counted until released.
   */
  acquire(peers: readonly PolicyPeer[]): PeerSet;
  release(set: PeerSet): void;
  /** An egress named port among `peers`: the destination pods' (address, port) pairs. */
  named(peers: PeerSet, protocol: Protocol, name: string): NamedSet;
  /** The labels of a namespace (none when it has no object). */
  labelsOf(namespace: string): Readonly<Record<string, string>>;
}

/** Candidate targets by namespace, then key. */
export type Candidates = ReadonlyMap<string, ReadonlyMap<string, PodRecord>>;

/** The ClusterNetworkPolicies compiled so far, brought to each new state. */
export interface ClusterCompiler {
  /**
   * Brings the compiled policies to `inputs`. `changed` are the candidate pods whose record or
   * namespace labels changed (tested against every subject again); undefined on the first
   * update, when every policy is new.
   */
  update(
    inputs: ClusterInputs,
    candidates: Candidates,
    changed: ReadonlyMap<string, PodChange> | undefined,
  ): void;
  /** Per subject, its rules per direction. */
  targets(): Map<PodRecord, { ingress?: TierRules; egress?: TierRules }>;
  /** The policies enforced fail-closed, in evaluation order. */
  errors(): { policy: string; error: string }[];
  /** Lets go of every peer set (the compiler starts over). */
  release(): void;
}

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];
const NOTHING: AddressSet = { v4: [], v6: [] };

/** One ClusterNetworkPolicy object, compiled as far as it goes without its targets. */
interface ClusterNode {
  readonly entry: ClusterPolicyEntry;
  /** Candidates its subject selects, by key. */
  readonly subjects: Map<string, PodRecord>;
  /** Compiled once it has subjects. */
  rules?: Record<Direction, RuleNode[]>;
  /** Its peers name nodes: compiled again when the nodes or their labels change. */
  usesNodes: boolean;
}

/** One rule: its peer set and port forms, and the rule object made from them last. */
interface RuleNode {
  readonly base: ClusterRule;
  /** Undefined: the rule's peers select nothing (nodes peers matching no node). */
  readonly peers?: PeerSet;
  /** Undefined: every protocol and port. */
  readonly protocols?: readonly PortSource[];
  built?: CompiledClusterRule;
}

type PortSource =
  | PortMatch
  | { readonly ingressNamed: string }
  | { readonly egressNamed: readonly NamedSet[] };

/** A rule compiled as far as it goes without the target; `shared` when that is all the way. */
interface CompiledClusterRule {
  /** What it was made from: the peers' addresses, then each egress named port. */
  readonly deps: readonly object[];
  readonly shared?: ClusterRule;
  /** Without ports; `named` are the ingress named ports left to resolve on the target. */
  readonly base?: ClusterRule;
  readonly ports?: readonly (PortMatch | { readonly named: string })[];
  /** Resolved on each target pod, once per pod object. */
  readonly perTarget: WeakMap<PodInfo, ClusterRule>;
}

/**
 * A ClusterNetworkPolicy compiler over `peers`. For the candidates (eligible pods by namespace)
 * a policy selects: order within a tier by priority, then name (upstream leaves same-priority
 * overlaps to the implementation; kube-network-policies orders them by name too), then rule
 * order. Peers: `namespaces` = every pod of the matching namespaces, `pods` = matching pods in
 * matching namespaces (host-network pods never, as for NetworkPolicy), `networks` = the CIDRs,
 * `nodes` = the addresses of the matching nodes. Ports: `destinationPort` number or range per
 * protocol, none = every port of it; `destinationNamedPort` resolves on the target's container
 * ports (ingress) or on each destination pod among the peers (egress), whatever their protocol;
 * no `protocols` = everything. A policy with `error` becomes one deny-all rule (index -1) at its
 * tier and priority, in the directions its `failClosed` names.
 *
 * @example
 * const cluster = createClusterCompiler(peers);
 * cluster.update(inputs, candidates, undefined);
 * cluster.targets().get(podRecord)?.ingress?.admin[0];
 * // { tier: "Admin", policy: "cluster-wide-deny-example", priority: 10, rule: 0,
 * //   name: "select-all-deny-all", action: "Deny", peers: { v4: [...], v6: [...] }, ports: "any" }
 */
export function createClusterCompiler(peers: ClusterPeers): ClusterCompiler {
  const nodes = new Map<string, ClusterNode>();
  let order: ClusterNode[] = [];
  let nodeInputs: readonly [unknown, unknown] = [undefined, undefined];
  // Rules of replaced policies: their peer sets are released once the new ones hold theirs.
  const dropped: Record<Direction, RuleNode[]>[] = [];
  const drop = (node: ClusterNode) => node.rules && dropped.push(node.rules);
  const releaseDropped = () => {
    for (const rules of dropped.splice(0)) {
      for (const dir of DIRECTIONS) for (const r of rules[dir]) if (r.peers) peers.release(r.peers);
    }
  };

  return {
    update(inputs, candidates, changed) {
      const nodesChanged = nodeInputs[0] !== inputs.nodes || nodeInputs[1] !== inputs.nodeLabels;
      nodeInputs = [inputs.nodes, inputs.nodeLabels];
      const next = inputs.clusterPolicies;
      let reordered = false;
      // One per update: policies repeat their nodes peers, and each reads every node.
      let nodePeers: ((selector: LabelSelector) => PolicyPeer[]) | undefined;
      for (const [name, entry] of next) {
        const node = nodes.get(name);
        if (node?.entry === entry) continue;
        if (node) drop(node);
        nodes.set(name, newNode(peers, entry, candidates));
        reordered = true;
      }
      if (nodes.size > next.size || reordered) {
        for (const [name, node] of nodes) {
          if (next.get(name) !== node.entry) {
            drop(node);
            nodes.delete(name);
          }
        }
      }
      if (reordered || order.length !== nodes.size) order = sortedNodes(nodes);
      for (const node of order) {
        if (changed !== undefined) reselect(peers, node, candidates, changed);
        if (nodesChanged && node.usesNodes) {
          drop(node);
          node.rules = undefined;
        }
        if (node.rules === undefined && node.subjects.size > 0) {
          nodePeers ??= nodePeerResolver(inputs);
          compileNode(peers, node, nodePeers);
        }
      }
      releaseDropped();
    },
    targets() {
      const targets = new Map<PodRecord, { ingress?: Drafts; egress?: Drafts }>();
      for (const node of order) {
        if (node.subjects.size === 0) continue;
        const policy = node.entry.policy;
        for (const direction of DIRECTIONS) {
          const rules = node.rules![direction].map(compiledRule);
          if (rules.length === 0) continue;
          for (const pod of node.subjects.values()) {
            let draft = targets.get(pod);
            if (draft === undefined) targets.set(pod, draft = {});
            const tiers = draft[direction] ??= { admin: [], baseline: [] };
            const list = policy.tier === "Admin" ? tiers.admin : tiers.baseline;
            for (const rule of rules) list.push(rule.shared ?? resolveOnTarget(rule, pod.info));
          }
        }
      }
      return targets;
    },
    errors() {
      return order.filter((n) => n.entry.error !== undefined)
        .map((n) => ({ policy: n.entry.policy.name, error: n.entry.error! }));
    },
    release() {
      for (const node of nodes.values()) drop(node);
      nodes.clear();
      order = [];
      releaseDropped();
    },
  };
}

interface Drafts {
  admin: ClusterRule[];
  baseline: ClusterRule[];
}

function sortedNodes(nodes: ReadonlyMap<string, ClusterNode>): ClusterNode[] {
  return [...nodes.values()].sort((a, b) =>
    a.entry.policy.priority - b.entry.policy.priority ||
    (a.entry.policy.name < b.entry.policy.name
      ? -1
      : a.entry.policy.name > b.entry.policy.name
      ? 1
      : 0)
  );
}

function newNode(
  peers: ClusterPeers,
  entry: ClusterPolicyEntry,
  candidates: Candidates,
): ClusterNode {
  const node: ClusterNode = { entry, subjects: new Map(), usesNodes: false };
  for (const [ns, records] of candidates) {
    for (const r of records.values()) {
      if (isSubject(peers, entry.policy.subject, ns, r)) node.subjects.set(r.key, r);
    }
  }
  return node;
}

/** The changed candidates tested against the node's subject again. */
function reselect(
  peers: ClusterPeers,
  node: ClusterNode,
  candidates: Candidates,
  changed: ReadonlyMap<string, PodChange>,
): void {
  for (const [key, { after }] of changed) {
    const candidate = after && candidates.get(after.info.namespace)?.get(key) === after;
    if (candidate && isSubject(peers, node.entry.policy.subject, after.info.namespace, after)) {
      node.subjects.set(key, after);
    } else {
      node.subjects.delete(key);
    }
  }
}

/** Whether the subject selects pod `r` of namespace `ns` (namespace labels from its object). */
function isSubject(
  peers: ClusterPeers,
  subject: ClusterSubject,
  ns: string,
  r: PodRecord,
): boolean {
  const namespaces = "namespaces" in subject ? subject.namespaces : subject.pods.namespaceSelector;
  if (!selectorMatches(namespaces, peers.labelsOf(ns))) return false;
  return !("pods" in subject) || selectorMatches(subject.pods.podSelector, r.info.labels);
}

function compileNode(
  peers: ClusterPeers,
  node: ClusterNode,
  nodePeers: (selector: LabelSelector) => PolicyPeer[],
): void {
  const { policy, error, failClosed } = node.entry;
  node.usesNodes = false;
  const rulesOf = (direction: Direction): RuleNode[] => {
    if (error !== undefined) {
      return failClosed?.[direction] ? [{ base: failClosedRule(policy, error) }] : [];
    }
    return policy[direction].map((rule, i) => {
      if (rule.peers.some((p) => "nodes" in p)) node.usesNodes = true;
      return ruleNode(peers, nodePeers, policy, direction, rule, i);
    });
  };
  node.rules = { ingress: rulesOf("ingress"), egress: rulesOf("egress") };
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

function ruleNode(
  peers: ClusterPeers,
  nodePeers: (selector: LabelSelector) => PolicyPeer[],
  policy: ClusterNetworkPolicy,
  direction: Direction,
  rule: ClusterPolicyRule,
  index: number,
): RuleNode {
  // A peer can select nothing (nodes that match no node): no peer is no address, not "any".
  const list = rule.peers.flatMap((p) => policyPeers(p, nodePeers));
  const set = list.length === 0 ? undefined : peers.acquire(list);
  const base: ClusterRule = {
    tier: policy.tier,
    policy: policy.name,
    priority: policy.priority,
    rule: index,
    name: rule.name,
    action: rule.action,
    peers: NOTHING,
    ports: "any",
  };
  const protocols = rule.protocols?.map((p): PortSource => {
    if ("protocol" in p) {
      return { kind: "range", protocol: p.protocol, port: p.start, endPort: p.end };
    }
    if (direction === "ingress") return { ingressNamed: p.namedPort };
    // The name carries no protocol: it is whatever the destination's container port says.
    return {
      egressNamed: set === undefined
        ? []
        : (PROTOCOLS as readonly Protocol[]).map((proto) => peers.named(set, proto, p.namedPort)),
    };
  });
  return { base, peers: set, protocols };
}

/** The rule object for the peers' addresses and named ports as they are now. */
function compiledRule(node: RuleNode): CompiledClusterRule {
  const addresses = node.peers?.addresses ?? NOTHING;
  const deps: object[] = [addresses];
  for (const p of node.protocols ?? []) {
    if ("egressNamed" in p) { for (const n of p.egressNamed) deps.push(n.port); }
  }
  const built = node.built;
  if (
    built !== undefined && built.deps.length === deps.length &&
    built.deps.every((d, i) => d === deps[i])
  ) {
    return built;
  }
  const perTarget = new WeakMap<PodInfo, ClusterRule>();
  // The fail-closed deny-all keeps its own peers ("any").
  const base: ClusterRule = node.base.rule === -1 ? node.base : { ...node.base, peers: addresses };
  if (node.protocols === undefined) return node.built = { deps, shared: base, perTarget };
  const ports = node.protocols.flatMap((p): (PortMatch | { named: string })[] => {
    if ("kind" in p) return [p];
    if ("ingressNamed" in p) return [{ named: p.ingressNamed }];
    return p.egressNamed.map((n) => n.port).filter((m) => m.endpoints.length > 0);
  });
  if (ports.every((p) => "kind" in p)) {
    return node.built = { deps, shared: { ...base, ports: ports as PortMatch[] }, perTarget };
  }
  return node.built = { deps, base, ports, perTarget };
}

/** A ClusterNetworkPolicy peer as the NetworkPolicy peers the peer sets know. */
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

/**
 * `nodes` peers: each matching node's addresses as host-sized ipBlocks, sorted; each selector's
 * once per resolver, the node addresses read once per node list.
 */
function nodePeerResolver(inputs: ClusterInputs): (selector: LabelSelector) => PolicyPeer[] {
  const cidrsOf = nodeCidrs(inputs.nodes);
  const known = new Map<string, PolicyPeer[]>();
  return (selector) => {
    const key = selectorKey(selector);
    let peers = known.get(key);
    if (peers !== undefined) return peers;
    const cidrs: string[] = [];
    for (const [name, list] of cidrsOf) {
      if (selectorMatches(selector, inputs.nodeLabels?.get(name) ?? {})) cidrs.push(...list);
    }
    peers = [...new Set(cidrs)].sort().map((cidr) => ({ ipBlock: { cidr, except: [] } }));
    known.set(key, peers);
    return peers;
  };
}

const cidrsByNodes = new WeakMap<ReadonlyMap<string, readonly string[]>, Map<string, string[]>>();

/** Node name -> its addresses as host CIDRs (an address we cannot read is no destination). */
function nodeCidrs(
  nodes: ReadonlyMap<string, readonly string[]> | undefined,
): Map<string, string[]> {
  if (nodes === undefined) return new Map();
  let out = cidrsByNodes.get(nodes);
  if (out !== undefined) return out;
  out = new Map();
  for (const [name, addrs] of nodes) {
    const cidrs: string[] = [];
    for (const text of addrs) {
      let family;
      try {
        family = parseIp(text).family;
      } catch {
        continue; // a node address we cannot read cannot be a destination we match
      }
      cidrs.push(`${text}/${family === 4 ? 32 : 128}`);
    }
    out.set(name, cidrs);
  }
  cidrsByNodes.set(nodes, out);
  return out;
}

/** An ingress rule with named ports, resolved on the target's container ports. */
function resolveOnTarget(rule: CompiledClusterRule, target: PodInfo): ClusterRule {
  const known = rule.perTarget.get(target);
  if (known !== undefined) return known;
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
  const resolved = { ...rule.base!, ports };
  rule.perTarget.set(target, resolved);
  return resolved;
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
