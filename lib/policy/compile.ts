// The NetworkPolicy compiler: pods, namespaces and policies in, a PolicyPlan out (per isolated pod
// and direction, the rules that allow traffic, with peers as address ranges and ports resolved;
// with ClusterNetworkPolicies, their tier rules too, from lib/policy/compile_cluster.ts).
// Semantics: NetworkPolicy v1 as kubernetes.io/docs/concepts/services-networking/network-policies
// and the upstream e2e suite (test/e2e/network/netpol) define it.
import { type Ip, parseCidr, parseIp } from "../ip/cidr.ts";
import { cidrRange, type IpRange, mergeRanges, subtractRanges } from "../ip/range.ts";
import {
  type Direction,
  type LabelSelector,
  type NamespaceInfo,
  type NetworkPolicy,
  objectKey,
  type PodInfo,
  type PolicyEntry,
  type PolicyPeer,
  type PolicyPort,
  type PolicyRule,
  SELECT_ALL,
} from "../kube/policy_objects.ts";
import type { ClusterPolicyEntry } from "../kube/cluster_network_policy.ts";
import { compileClusterPolicies, type PeerResolver } from "./compile_cluster.ts";
import { addressSetContains } from "./match.ts";
import type {
  AddressSet,
  AllowRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
  TargetPlan,
} from "./plan.ts";
import { selectorKey, selectorMatches } from "./selector.ts";

/** What the agent knows of the cluster, as policy reads it. */
export interface PolicyState {
  /** Keyed by `objectKey(namespace, name)`. */
  readonly pods: ReadonlyMap<string, PodInfo>;
  /** Keyed by name. A namespace without an object here has no labels. */
  readonly namespaces: ReadonlyMap<string, NamespaceInfo>;
  /** Keyed by `objectKey(namespace, name)`. */
  readonly policies: ReadonlyMap<string, PolicyEntry>;
  /**
   * Node name -> its addresses (explain: traffic between a pod and its own node; the addresses
   * of ClusterNetworkPolicy `nodes` peers).
   */
  readonly nodes?: ReadonlyMap<string, readonly string[]>;
  /** ClusterNetworkPolicies, keyed by name. Absent or empty: the plan is NetworkPolicy's alone. */
  readonly clusterPolicies?: ReadonlyMap<string, ClusterPolicyEntry>;
  /** Node name -> its labels, for ClusterNetworkPolicy `nodes` peers (a node absent has none). */
  readonly nodeLabels?: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** Which targets to compile: pods on `node` and/or the listed pod keys; every pod by default. */
export interface CompileOptions {
  readonly node?: string;
  readonly pods?: readonly string[];
}

/**
 * Compiles every policy into per-target plans. A target is a pod with addresses, not on the host
 * network, selected by a policy's `podSelector` in its namespace, for the directions in the
 * policy's `types`; its allow rules are the union over those policies (policy order, then rule
 * order). Peers: no `from`/`to` is "any"; `podSelector` alone = pods of the policy's namespace,
 * `namespaceSelector` alone = every pod of the matching namespaces, both = AND, peers OR'd;
 * `ipBlock` minus `except` applies to any address, pod addresses included, each family to its
 * own. Ports: no `ports` is "any"; a protocol without port is ports 1–65535; an ingress named
 * port resolves on the target's container ports, an egress one to the (address, port) pairs of
 * the destination pods among the rule's peers. A policy with `error` isolates and allows nothing,
 * and is listed in `errors`. Pod peers (like targets) are pods with addresses and not hostNetwork.
 * With `state.clusterPolicies`, a pod a ClusterNetworkPolicy selects is a target too, its
 * Admin and Baseline rules in `cluster` (lib/policy/compile_cluster.ts, peers through the same
 * machinery), and `clusterErrors` lists those enforced fail-closed.
 *
 * Each selector is evaluated once per compile, pods are indexed by namespace, and the peers of a
 * rule are computed once: the same object for every target, and for every rule with the same
 * peers (in the same namespace, when a peer has a podSelector alone). Egress named ports are
 * shared likewise.
 *
 * @example
 * const plan = compilePolicies(state, { node: "n1" });
 * plan.targets[0];
 * // { pod: "x/a", node: "n1", ips: ["10.244.1.2"],
 * //   ingress: { policies: ["x/deny"], allow: [] } }
 */
export function compilePolicies(state: PolicyState, opts: CompileOptions = {}): PolicyPlan {
  const ctx = newContext(state);
  const candidates = targetCandidates(ctx, opts);
  const targets = new Map<string, TargetDraft>();
  const errors: { policy: string; error: string }[] = [];
  const entries = [...state.policies.values()]
    .map((entry) => ({ key: objectKey(entry.policy.namespace, entry.policy.name), entry }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  for (const { key, entry } of entries) {
    if (entry.error !== undefined) errors.push({ policy: key, error: entry.error });
    const policy = entry.policy;
    const selected = (candidates.get(policy.namespace) ?? []).filter((pod) =>
      selectorMatches(policy.podSelector, pod.info.labels)
    );
    if (selected.length === 0) continue;
    for (const direction of DIRECTIONS) {
      if (!policy.types[direction]) continue;
      // A policy we could not read exactly isolates and allows nothing (issue 10, "Bad input").
      const rules = entry.error === undefined ? policy[direction] : [];
      const compiled = rules.map((rule, i) => compileRule(ctx, key, policy, direction, rule, i));
      for (const pod of selected) {
        let draft = targets.get(pod.key);
        if (draft === undefined) targets.set(pod.key, draft = { pod });
        const plan = draft[direction] ??= { policies: [], allow: [] };
        plan.policies.push(key);
        for (const rule of compiled) plan.allow.push(rule.shared ?? resolveForTarget(rule, pod));
      }
    }
  }

  // Without ClusterNetworkPolicies the plan is exactly NetworkPolicy's, field for field.
  const clusterPolicies = state.clusterPolicies;
  const cluster = clusterPolicies !== undefined && clusterPolicies.size > 0
    ? compileClusterPolicies({ ...state, clusterPolicies }, candidates, peerResolver(ctx))
    : undefined;
  for (const [pod, tiers] of cluster?.targets ?? []) {
    let draft = targets.get(pod.key);
    if (draft === undefined) targets.set(pod.key, draft = { pod });
    draft.cluster = tiers;
  }
  const plan: PolicyPlan = {
    targets: [...targets.keys()].sort().map((k) => finishTarget(targets.get(k)!)),
    errors,
  };
  return cluster === undefined ? plan : { ...plan, clusterErrors: cluster.errors };
}

/** The peer machinery below, for ClusterNetworkPolicy peers (always cluster-wide). */
function peerResolver(ctx: Context): PeerResolver {
  return {
    peers: (peers) => peersOf(ctx, "", peers) as AddressSet,
    egressNamedPort: (protocol, name, peers) =>
      egressNamedPort(ctx, { protocol, port: name }, peers),
  };
}

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

/** A pod that can be a target or a pod peer: addresses, not hostNetwork. */
interface PodRecord {
  readonly key: string;
  readonly info: PodInfo;
  readonly addrs: readonly Ip[];
}

/** Lookups a compile repeats, each filled once. */
interface Context {
  readonly state: PolicyState;
  /** Every policy-eligible pod (addresses, not hostNetwork). */
  readonly records: ReadonlyMap<PodInfo, PodRecord>;
  /** Policy-eligible pods by namespace. */
  readonly byNamespace: Map<string, PodRecord[]>;
  /** selectorKey -> namespaces (those with eligible pods) it selects. */
  readonly namespacesBySelector: Map<string, readonly string[]>;
  /** namespace + selectorKey -> its pods the selector selects. */
  readonly podsBySelector: Map<string, readonly PodRecord[]>;
  /** peers key (with the policy's namespace when a peer uses it) -> the peers' addresses. */
  readonly peerSets: Map<string, AddressSet>;
  /** peers -> `protocol/name` -> the egress named port resolved among them. */
  readonly namedByPeers: Map<AddressSet | "any", Map<string, PortMatch>>;
  /** `protocol/name` -> every eligible pod address with that named container port. */
  readonly namedPorts: Map<string, readonly NamedEndpoint[]>;
}

interface NamedEndpoint {
  readonly addr: Ip;
  readonly ip: string;
  readonly port: number;
}

interface TargetDraft {
  readonly pod: PodRecord;
  ingress?: { policies: string[]; allow: AllowRule[] };
  egress?: { policies: string[]; allow: AllowRule[] };
  cluster?: TargetPlan["cluster"];
}

/** One policy rule, compiled as far as it goes without knowing the target. */
interface CompiledRule {
  /** The finished rule when it is the same for every target. */
  readonly shared?: AllowRule;
  readonly policy: string;
  readonly index: number;
  readonly peers: AddressSet | "any";
  /** Ports in policy order; ingress named ports are left for the target. */
  readonly ports: readonly (PortMatch | NamedPolicyPort)[];
}

type NamedPolicyPort = PolicyPort & { readonly port: string };

// Parsing 20,000 addresses is most of a cold compile. PodInfo objects are immutable (the agent
// replaces a pod's object when it changes), so each compile hands the records of the pods it saw
// to the next one. A plain Map replaced per compile (so it holds exactly the current pods) rather
// than a WeakMap: every young-generation GC walks a WeakMap's 10,000 ephemerons, and measured side
// by side the slow end of a 100-target compile was worse with it (p90 33 ms against 21 ms).
let previousRecords = new Map<PodInfo, PodRecord>();

function newContext(state: PolicyState): Context {
  const records = new Map<PodInfo, PodRecord>();
  const byNamespace = new Map<string, PodRecord[]>();
  for (const [key, info] of state.pods) {
    if (info.hostNetwork || info.ips.length === 0) continue;
    let record = previousRecords.get(info);
    if (record === undefined || record.key !== key) {
      record = { key, info, addrs: info.ips.map((ip) => parseIp(ip)) };
    }
    records.set(info, record);
    const list = byNamespace.get(info.namespace);
    if (list === undefined) byNamespace.set(info.namespace, [record]);
    else list.push(record);
  }
  previousRecords = records;
  return {
    state,
    records,
    byNamespace,
    namespacesBySelector: new Map(),
    podsBySelector: new Map(),
    peerSets: new Map(),
    namedByPeers: new Map(),
    namedPorts: new Map(),
  };
}

/** Eligible pods the options allow as targets, by namespace. */
function targetCandidates(ctx: Context, opts: CompileOptions): Map<string, PodRecord[]> {
  const onNode = (r: PodRecord) => opts.node === undefined || r.info.node === opts.node;
  const out = new Map<string, PodRecord[]>();
  if (opts.pods === undefined) {
    for (const [ns, records] of ctx.byNamespace) {
      const kept = opts.node === undefined ? records : records.filter(onNode);
      if (kept.length > 0) out.set(ns, kept);
    }
    return out;
  }
  const wanted = new Set(opts.pods);
  for (const key of wanted) {
    const info = ctx.state.pods.get(key);
    const record = info && ctx.records.get(info);
    if (record === undefined || record.key !== key || !onNode(record)) continue;
    const list = out.get(record.info.namespace);
    if (list === undefined) out.set(record.info.namespace, [record]);
    else list.push(record);
  }
  return out;
}

function compileRule(
  ctx: Context,
  policyKey: string,
  policy: NetworkPolicy,
  direction: Direction,
  rule: PolicyRule,
  index: number,
): CompiledRule {
  const peers = peersOf(ctx, policy.namespace, rule.peers);
  if (rule.ports === undefined || rule.ports.length === 0) {
    const shared: AllowRule = { policy: policyKey, rule: index, peers, ports: "any" };
    return { shared, policy: policyKey, index, peers, ports: [] };
  }
  const ports = rule.ports.map((p): PortMatch | NamedPolicyPort => {
    if (typeof p.port === "string") {
      const named = p as NamedPolicyPort;
      return direction === "ingress" ? named : egressNamedPort(ctx, named, peers);
    }
    if (p.port === undefined) {
      return { kind: "range", protocol: p.protocol, port: 1, endPort: 65535 };
    }
    return { kind: "range", protocol: p.protocol, port: p.port, endPort: p.endPort ?? p.port };
  });
  const compiled = { policy: policyKey, index, peers, ports };
  if (ports.some((p) => !("kind" in p))) return compiled;
  return {
    ...compiled,
    shared: { policy: policyKey, rule: index, peers, ports: ports as PortMatch[] },
  };
}

/** An ingress rule with named ports, resolved on the target's container ports. */
function resolveForTarget(rule: CompiledRule, target: PodRecord): AllowRule {
  const ports: PortMatch[] = [];
  for (const p of rule.ports) {
    if ("kind" in p) {
      ports.push(p);
      continue;
    }
    // Every container port of that name and protocol (names are unique per container only).
    const numbers = new Set(
      target.info.ports.filter((c) => c.name === p.port && c.protocol === p.protocol)
        .map((c) => c.port),
    );
    for (const n of numbers) {
      ports.push({ kind: "range", protocol: p.protocol, port: n, endPort: n });
    }
  }
  return { policy: rule.policy, rule: rule.index, peers: rule.peers, ports };
}

/** An egress named port: the destination pods' (address, port) pairs among the rule's peers. */
function egressNamedPort(
  ctx: Context,
  port: NamedPolicyPort,
  peers: AddressSet | "any",
): PortMatch {
  const key = `${port.protocol}/${port.port}`;
  let byName = ctx.namedByPeers.get(peers);
  if (byName === undefined) ctx.namedByPeers.set(peers, byName = new Map());
  let match = byName.get(key);
  if (match === undefined) {
    const endpoints = namedEndpoints(ctx, port)
      .filter((e) => peers === "any" || addressSetContains(peers, e.addr))
      .map((e) => ({ ip: e.ip, port: e.port }));
    match = { kind: "named", protocol: port.protocol, name: port.port, endpoints };
    byName.set(key, match);
  }
  return match;
}

/**
 * Every eligible pod address with a container port of that name and protocol, each (address,
 * port) pair once: IPv4 first, then pods grouped by namespace in the order `state.pods` lists
 * them. Not sorted: the renderer puts them in a set, and sorting 20,000 addresses cost more than
 * the rest of the lookup.
 */
function namedEndpoints(ctx: Context, port: NamedPolicyPort): readonly NamedEndpoint[] {
  const key = `${port.protocol}/${port.port}`;
  let list = ctx.namedPorts.get(key);
  if (list !== undefined) return list;
  const v4: NamedEndpoint[] = [], v6: NamedEndpoint[] = [];
  // Two containers may repeat a name with one number, and two pods may hold one address (a
  // terminating pod's object outlives its sandbox, whose address the kubelet reuses). The
  // renderer counts a rule's endpoints against its peers (nft_rules.ts coversPeers): a pair
  // listed twice would let a peer without the port through.
  const seen = new Map<string, number | number[]>();
  for (const records of ctx.byNamespace.values()) {
    for (const r of records) {
      for (const c of r.info.ports) {
        if (c.name !== port.port || c.protocol !== port.protocol) continue;
        r.addrs.forEach((addr, i) => {
          const ip = r.info.ips[i];
          const had = seen.get(ip);
          if (had === c.port || (Array.isArray(had) && had.includes(c.port))) return;
          seen.set(
            ip,
            had === undefined ? c.port : [...(Array.isArray(had) ? had : [had]), c.port],
          );
          (addr.family === 4 ? v4 : v6).push({ addr, ip, port: c.port });
        });
      }
    }
  }
  list = [...v4, ...v6];
  ctx.namedPorts.set(key, list);
  return list;
}

/**
 * The addresses a rule's `from`/`to` select; "any" when there are none. A podSelector alone
 * selects in `namespace` (the policy's).
 */
function peersOf(
  ctx: Context,
  namespace: string,
  peers: readonly PolicyPeer[] | undefined,
): AddressSet | "any" {
  if (peers === undefined || peers.length === 0) return "any";
  const keyed = peers.map((p) => ({ peer: p, key: peerKey(p) }));
  // Only a peer without namespaceSelector depends on the policy's namespace.
  const ownNamespace = peers.some((p) => !("ipBlock" in p) && p.namespaces === undefined);
  const cacheKey = `${ownNamespace ? namespace : ""}\n${keyed.map((k) => k.key).join("\n")}`;
  const cached = ctx.peerSets.get(cacheKey);
  if (cached !== undefined) return cached;

  const v4: IpRange[] = [], v6: IpRange[] = [];
  for (const { peer } of keyed) {
    if ("ipBlock" in peer) {
      const block = parseCidr(peer.ipBlock.cidr);
      const except = peer.ipBlock.except.map((e) => cidrRange(parseCidr(e)));
      (block.family === 4 ? v4 : v6).push(...subtractRanges([cidrRange(block)], except));
      continue;
    }
    const namespaces = peer.namespaces === undefined
      ? [namespace]
      : namespacesMatching(ctx, peer.namespaces);
    const pods = peer.pods ?? SELECT_ALL;
    const podsKey = selectorKey(pods);
    for (const ns of namespaces) {
      for (const r of podsMatching(ctx, ns, pods, podsKey)) {
        for (const a of r.addrs) (a.family === 4 ? v4 : v6).push({ start: a.value, end: a.value });
      }
    }
  }
  const set: AddressSet = { v4: mergeRanges(v4), v6: mergeRanges(v6) };
  ctx.peerSets.set(cacheKey, set);
  return set;
}

function peerKey(peer: PolicyPeer): string {
  if ("ipBlock" in peer) return JSON.stringify(["ipBlock", peer.ipBlock.cidr, peer.ipBlock.except]);
  return JSON.stringify([
    "pods",
    peer.pods === undefined ? null : selectorKey(peer.pods),
    peer.namespaces === undefined ? null : selectorKey(peer.namespaces),
  ]);
}

function namespacesMatching(
  ctx: Context,
  selector: LabelSelector,
): readonly string[] {
  const key = selectorKey(selector);
  let names = ctx.namespacesBySelector.get(key);
  if (names === undefined) {
    // Only namespaces with eligible pods can add addresses; one without a Namespace object
    // has no labels (it still matches an empty selector, NotIn and DoesNotExist).
    names = [...ctx.byNamespace.keys()].filter((ns) =>
      selectorMatches(selector, ctx.state.namespaces.get(ns)?.labels ?? {})
    );
    ctx.namespacesBySelector.set(key, names);
  }
  return names;
}

function podsMatching(
  ctx: Context,
  namespace: string,
  selector: LabelSelector,
  key: string,
): readonly PodRecord[] {
  const cacheKey = `${namespace}\n${key}`;
  let pods = ctx.podsBySelector.get(cacheKey);
  if (pods === undefined) {
    pods = (ctx.byNamespace.get(namespace) ?? []).filter((r) =>
      selectorMatches(selector, r.info.labels)
    );
    ctx.podsBySelector.set(cacheKey, pods);
  }
  return pods;
}

function finishTarget(draft: TargetDraft): TargetPlan {
  const plan: {
    pod: string;
    node: string;
    ips: readonly string[];
    ingress?: DirectionPlan;
    egress?: DirectionPlan;
    cluster?: TargetPlan["cluster"];
  } = { pod: draft.pod.key, node: draft.pod.info.node, ips: draft.pod.info.ips };
  if (draft.ingress) plan.ingress = draft.ingress;
  if (draft.egress) plan.egress = draft.egress;
  if (draft.cluster) plan.cluster = draft.cluster;
  return plan;
}
