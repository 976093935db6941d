// The NetworkPolicy compiler: pods, namespaces and policies in, a PolicyPlan out (per isolated pod
// and direction, the rules that allow traffic, with peers as address ranges and ports resolved;
// with ClusterNetworkPolicies, their tier rules too, from lib/policy/compile_cluster.ts).
// Semantics: NetworkPolicy v1 as kubernetes.io/docs/concepts/services-networking/network-policies
// and the upstream e2e suite (test/e2e/network/netpol) define it.
//
// The compiler keeps what it computed for the next state (the agent compiles on every pod event,
// at 10,000 pods): peer sets change only at the addresses of pods that changed (lib/policy/
// peer_sets.ts), a policy is compiled again only when its object changes, its targets only where
// pods did, and every plan object that did not change is the same object again, so the renderer
// (lib/policy/nft_rules.ts) can skip it. A compile from scratch is the same code on an empty
// compiler: what an incremental compile gives equals it (tests/unit/policy/incremental_test.ts).
import {
  type Direction,
  type NamespaceInfo,
  objectKey,
  type PodInfo,
  type PolicyEntry,
  type PolicyPort,
  type PolicyRule,
} from "../kube/policy_objects.ts";
import type { ClusterPolicyEntry } from "../kube/cluster_network_policy.ts";
import { type ClusterCompiler, createClusterCompiler } from "./compile_cluster.ts";
import { createPeerSets, type NamedSet, type PeerSet, type PeerSets } from "./peer_sets.ts";
import type {
  AddressSet,
  AllowRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
  TargetPlan,
  TierRules,
} from "./plan.ts";
import { createPodIndex, type IndexChanges, type PodIndex, type PodRecord } from "./pod_index.ts";
import { selectorMatches } from "./selector.ts";

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
 * When a compiler starts over rather than change what it has (the defaults suit the agent; the
 * tests make them small, so every path runs on small clusters).
 */
export interface CompilerTuning {
  /** More pods than this to look at again in one state: start over. */
  readonly resetAfter?: number;
  /** More changed addresses than this in one peer set: rebuild it in one pass. */
  readonly oneByOne?: number;
}

/** A compiler that keeps what it computed, for the next state. */
export interface PolicyCompiler {
  /** The plan for `state`: equal to `compilePolicies(state, opts)`, only cheaper. */
  compile(state: PolicyState): PolicyPlan;
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
 * the destination pods among the rule's peers, sorted by family, address and port. A policy with
 * `error` isolates and allows nothing, and is listed in `errors`. Pod peers (like targets) are
 * pods with addresses and not hostNetwork. With `state.clusterPolicies`, a pod a
 * ClusterNetworkPolicy selects is a target too, its Admin and Baseline rules in `cluster`
 * (lib/policy/compile_cluster.ts, peers through the same machinery), and `clusterErrors` lists
 * those enforced fail-closed.
 *
 * The peers of a rule are computed once: the same object for every target, and for every rule
 * with the same peers (in the same namespace, when a peer has a podSelector alone). Egress named
 * ports are shared likewise.
 *
 * @example
 * const plan = compilePolicies(state, { node: "n1" });
 * plan.targets[0];
 * // { pod: "x/a", node: "n1", ips: ["10.244.1.2"],
 * //   ingress: { policies: ["x/deny"], allow: [] } }
 */
export function compilePolicies(state: PolicyState, opts: CompileOptions = {}): PolicyPlan {
  return newCompiler(opts, parsedPods, {}).compile(state);
}

/**
 * A compiler for the targets `opts` names that keeps its work between states: each
 * {@linkcode PolicyCompiler.compile} returns what {@linkcode compilePolicies} would, doing only
 * what changed since the last state asks for (objects are compared by identity first, as the
 * informers replace an object when it changes). Many changes at once (a relist) start it over.
 *
 * @example
 * const compiler = createPolicyCompiler({ node: "n1" });
 * compiler.compile(state); // as compilePolicies(state, { node: "n1" })
 * compiler.compile(next); // the same for next, in a few milliseconds at 10,000 pods
 */
export function createPolicyCompiler(
  opts: CompileOptions = {},
  tuning: CompilerTuning = {},
): PolicyCompiler {
  return newCompiler(opts, undefined, tuning);
}

// Parsing 20,000 addresses is most of a cold compile. PodInfo objects are immutable (the agent
// replaces a pod's object when it changes), so each compile from scratch hands the records of the
// pods it saw to the next one. A plain Map replaced per compile (so it holds exactly the current
// pods) rather than a WeakMap: every young-generation GC walks a WeakMap's 10,000 ephemerons.
const parsedPods = new Map<PodInfo, PodRecord>();

/** More pods than this to look at again: the compiler starts over (as fast, and simpler). */
const RESET_AFTER = 256;

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

/** Everything a compiler derives from the pods: dropped whole when it starts over. */
interface Derived {
  readonly peers: PeerSets;
  /** Targets allowed by the options, by namespace, then key. */
  readonly candidates: Map<string, Map<string, PodRecord>>;
  /** NetworkPolicies by their key in `state.policies`. */
  readonly policies: Map<string, PolicyNode>;
  /** By namespace: whose podSelector a candidate there must be tested against. */
  readonly byNamespace: Map<string, Set<PolicyNode>>;
  /** By `namespace/name`. */
  order: PolicyNode[];
  errors: { policy: string; error: string }[];
  readonly cluster: ClusterCompiler;
  /** Rules of dropped policies, whose peer sets are released at the end of the compile. */
  readonly dropped: RuleNode[];
}

/** One NetworkPolicy object, and the candidates it selects. */
interface PolicyNode {
  /** `namespace/name` */
  readonly key: string;
  readonly entry: PolicyEntry;
  readonly selected: Map<string, PodRecord>;
  /** Compiled once it selects a target. */
  rules?: Record<Direction, RuleNode[]>;
}

/** One policy rule: its peer set and port forms, and the rule object made from them last. */
interface RuleNode {
  readonly policy: string;
  readonly index: number;
  /** Undefined: no peers ("any"). */
  readonly peers?: PeerSet;
  /** Undefined: no ports ("any"). */
  readonly ports?: readonly PortSource[];
  built?: CompiledRule;
}

type NamedPolicyPort = PolicyPort & { readonly port: string };

/** A port as far as it resolves without the target: ingress named ports wait for it. */
type PortSource = PortMatch | NamedPolicyPort | { readonly egress: NamedSet };

/** One policy rule, compiled as far as it goes without knowing the target. */
interface CompiledRule {
  /** What it was made from: the peers' addresses, then each egress named port. */
  readonly deps: readonly unknown[];
  /** The finished rule when it is the same for every target. */
  readonly shared?: AllowRule;
  readonly policy: string;
  readonly index: number;
  readonly peers: AddressSet | "any";
  /** Ports in policy order; ingress named ports are left for the target. */
  readonly ports: readonly (PortMatch | NamedPolicyPort)[];
  /** Resolved on each target pod, once per pod object. */
  readonly perTarget: WeakMap<PodInfo, AllowRule>;
}

interface TargetDraft {
  readonly pod: PodRecord;
  ingress?: { policies: string[]; allow: AllowRule[] };
  egress?: { policies: string[]; allow: AllowRule[] };
  cluster?: { ingress?: TierRules; egress?: TierRules };
}

function newCompiler(
  opts: CompileOptions,
  parsed: Map<PodInfo, PodRecord> | undefined,
  tuning: CompilerTuning,
) {
  const index = createPodIndex(parsed);
  const resetAfter = tuning.resetAfter ?? RESET_AFTER;
  const wanted = opts.pods === undefined ? undefined : new Set(opts.pods);
  const isCandidate = (r: PodRecord) =>
    (opts.node === undefined || r.info.node === opts.node) &&
    (wanted === undefined || wanted.has(r.key));
  let derived: Derived | undefined;
  let previous = new Map<string, TargetPlan>();
  return {
    compile(state: PolicyState): PolicyPlan {
      const changes = index.update(state.pods, state.namespaces, resetAfter);
      let d = derived;
      if (changes === "reset" || d === undefined) {
        derived = d = newDerived(index, isCandidate, tuning.oneByOne);
      } else {
        d.peers.update(changes);
        updateCandidates(d, changes, isCandidate);
      }
      syncPolicies(d, state.policies);
      const clusterPolicies = state.clusterPolicies ?? new Map<string, ClusterPolicyEntry>();
      d.cluster.update(
        { ...state, clusterPolicies },
        d.candidates,
        changes === "reset" ? undefined : changes.pods,
      );
      const drafts = policyDrafts(d);
      for (const [pod, tiers] of d.cluster.targets()) {
        let draft = drafts.get(pod.key);
        if (draft === undefined) drafts.set(pod.key, draft = { pod });
        draft.cluster = tiers;
      }
      for (const rule of d.dropped.splice(0)) if (rule.peers) d.peers.release(rule.peers);
      const next = new Map<string, TargetPlan>();
      const targets = [...drafts.keys()].sort().map((key) => {
        const target = finishTarget(drafts.get(key)!, previous.get(key));
        next.set(key, target);
        return target;
      });
      previous = next;
      const plan: PolicyPlan = { targets, errors: d.errors };
      // Without ClusterNetworkPolicies the plan is exactly NetworkPolicy's, field for field.
      return clusterPolicies.size === 0 ? plan : { ...plan, clusterErrors: d.cluster.errors() };
    },
  };
}

function newDerived(
  index: PodIndex,
  isCandidate: (r: PodRecord) => boolean,
  oneByOne: number | undefined,
): Derived {
  const peers = createPeerSets(index, oneByOne);
  const candidates = new Map<string, Map<string, PodRecord>>();
  for (const records of index.byNamespace.values()) {
    for (const r of records.values()) if (isCandidate(r)) addCandidate(candidates, r);
  }
  const cluster = createClusterCompiler({
    acquire: (list) => peers.acquire("", list),
    release: (set) => peers.release(set),
    named: (set, protocol, name) => peers.named(set, protocol, name),
    labelsOf: (ns) => index.labelsOf(ns),
  });
  return {
    peers,
    candidates,
    policies: new Map(),
    byNamespace: new Map(),
    order: [],
    errors: [],
    cluster,
    dropped: [],
  };
}

function addCandidate(candidates: Map<string, Map<string, PodRecord>>, r: PodRecord): void {
  const list = candidates.get(r.info.namespace);
  if (list === undefined) candidates.set(r.info.namespace, new Map([[r.key, r]]));
  else list.set(r.key, r);
}

/** The changed pods in and out of the candidates, and of the selections of their namespace. */
function updateCandidates(
  d: Derived,
  changes: IndexChanges,
  isCandidate: (r: PodRecord) => boolean,
): void {
  for (const [key, { before, after }] of changes.pods) {
    if (before !== undefined && d.candidates.get(before.info.namespace)?.get(key) === before) {
      const list = d.candidates.get(before.info.namespace)!;
      list.delete(key);
      if (list.size === 0) d.candidates.delete(before.info.namespace);
      for (const node of d.byNamespace.get(before.info.namespace) ?? []) node.selected.delete(key);
    }
    if (after === undefined || !isCandidate(after)) continue;
    addCandidate(d.candidates, after);
    for (const node of d.byNamespace.get(after.info.namespace) ?? []) {
      if (selectorMatches(node.entry.policy.podSelector, after.info.labels)) {
        node.selected.set(key, after);
      }
    }
  }
}

/** Policy nodes for new and replaced policies, and none for removed ones. */
function syncPolicies(d: Derived, policies: ReadonlyMap<string, PolicyEntry>): void {
  const before = d.policies.size;
  let existed = 0, changed = false;
  for (const [key, entry] of policies) {
    const node = d.policies.get(key);
    if (node !== undefined) existed++;
    if (node?.entry === entry) continue;
    if (node !== undefined) dropPolicy(d, node);
    d.policies.set(key, newPolicyNode(d, entry));
    changed = true;
  }
  if (existed < before) {
    for (const [key, node] of d.policies) {
      if (policies.has(key)) continue;
      dropPolicy(d, node);
      d.policies.delete(key);
      changed = true;
    }
  }
  if (!changed) return;
  d.order = [...d.policies.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  d.errors = d.order.filter((n) => n.entry.error !== undefined)
    .map((n) => ({ policy: n.key, error: n.entry.error! }));
}

function newPolicyNode(d: Derived, entry: PolicyEntry): PolicyNode {
  const policy = entry.policy;
  const selected = new Map<string, PodRecord>();
  for (const r of d.candidates.get(policy.namespace)?.values() ?? []) {
    if (selectorMatches(policy.podSelector, r.info.labels)) selected.set(r.key, r);
  }
  const node: PolicyNode = { key: objectKey(policy.namespace, policy.name), entry, selected };
  let list = d.byNamespace.get(policy.namespace);
  if (list === undefined) d.byNamespace.set(policy.namespace, list = new Set());
  list.add(node);
  return node;
}

function dropPolicy(d: Derived, node: PolicyNode): void {
  const ns = node.entry.policy.namespace;
  const list = d.byNamespace.get(ns)!;
  list.delete(node);
  if (list.size === 0) d.byNamespace.delete(ns);
  for (const dir of DIRECTIONS) d.dropped.push(...node.rules?.[dir] ?? []);
}

/** Per target, the NetworkPolicies isolating it and their rules, in policy then rule order. */
function policyDrafts(d: Derived): Map<string, TargetDraft> {
  const targets = new Map<string, TargetDraft>();
  for (const node of d.order) {
    if (node.selected.size === 0) continue;
    const policy = node.entry.policy;
    node.rules ??= compileRules(d.peers, node);
    for (const direction of DIRECTIONS) {
      if (!policy.types[direction]) continue;
      const compiled = node.rules[direction].map(compiledRule);
      for (const pod of node.selected.values()) {
        let draft = targets.get(pod.key);
        if (draft === undefined) targets.set(pod.key, draft = { pod });
        const plan = draft[direction] ??= { policies: [], allow: [] };
        plan.policies.push(node.key);
        for (const rule of compiled) plan.allow.push(rule.shared ?? resolveForTarget(rule, pod));
      }
    }
  }
  return targets;
}

function compileRules(peers: PeerSets, node: PolicyNode): Record<Direction, RuleNode[]> {
  const { entry, key } = node;
  // A policy we could not read exactly isolates and allows nothing (issue 10, "Bad input").
  const rulesOf = (direction: Direction) =>
    entry.error !== undefined
      ? []
      : entry.policy[direction].map((rule, i) =>
        ruleNode(peers, key, entry.policy.namespace, direction, rule, i)
      );
  return { ingress: rulesOf("ingress"), egress: rulesOf("egress") };
}

function ruleNode(
  peers: PeerSets,
  policy: string,
  namespace: string,
  direction: Direction,
  rule: PolicyRule,
  index: number,
): RuleNode {
  const set = rule.peers === undefined || rule.peers.length === 0
    ? undefined
    : peers.acquire(namespace, rule.peers);
  if (rule.ports === undefined || rule.ports.length === 0) return { policy, index, peers: set };
  const ports = rule.ports.map((p): PortSource => {
    if (typeof p.port === "string") {
      const named = p as NamedPolicyPort;
      return direction === "ingress" ? named : { egress: peers.named(set, p.protocol, p.port) };
    }
    if (p.port === undefined) {
      return { kind: "range", protocol: p.protocol, port: 1, endPort: 65535 };
    }
    return { kind: "range", protocol: p.protocol, port: p.port, endPort: p.endPort ?? p.port };
  });
  return { policy, index, peers: set, ports };
}

/** The rule object for the peers' addresses and named ports as they are now. */
function compiledRule(node: RuleNode): CompiledRule {
  const peers: AddressSet | "any" = node.peers?.addresses ?? "any";
  const deps: unknown[] = [peers];
  for (const p of node.ports ?? []) if ("egress" in p) deps.push(p.egress.port);
  const built = node.built;
  if (built !== undefined && built.deps.every((x, i) => x === deps[i])) return built;
  const { policy, index } = node;
  const perTarget = new WeakMap<PodInfo, AllowRule>();
  if (node.ports === undefined) {
    const shared: AllowRule = { policy, rule: index, peers, ports: "any" };
    return node.built = { deps, shared, policy, index, peers, ports: [], perTarget };
  }
  const ports = node.ports.map((p) => "egress" in p ? p.egress.port : p);
  const compiled = { deps, policy, index, peers, ports, perTarget };
  if (ports.some((p) => !("kind" in p))) return node.built = compiled;
  const shared: AllowRule = { policy, rule: index, peers, ports: ports as PortMatch[] };
  return node.built = { ...compiled, shared };
}

/** An ingress rule with named ports, resolved on the target's container ports. */
function resolveForTarget(rule: CompiledRule, target: PodRecord): AllowRule {
  const known = rule.perTarget.get(target.info);
  if (known !== undefined) return known;
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
  const resolved: AllowRule = { policy: rule.policy, rule: rule.index, peers: rule.peers, ports };
  rule.perTarget.set(target.info, resolved);
  return resolved;
}

/**
 * The target's plan: the previous one (and each part of it) again when nothing in it changed,
 * so the renderer can tell what did by identity.
 */
function finishTarget(draft: TargetDraft, prev: TargetPlan | undefined): TargetPlan {
  const ingress = sameDirection(draft.ingress, prev?.ingress);
  const egress = sameDirection(draft.egress, prev?.egress);
  const cluster = sameCluster(draft.cluster, prev?.cluster);
  const info = draft.pod.info;
  if (
    prev !== undefined && prev.node === info.node && sameList(prev.ips, info.ips) &&
    prev.ingress === ingress && prev.egress === egress && prev.cluster === cluster
  ) {
    return prev;
  }
  const plan: {
    pod: string;
    node: string;
    ips: readonly string[];
    ingress?: DirectionPlan;
    egress?: DirectionPlan;
    cluster?: TargetPlan["cluster"];
  } = { pod: draft.pod.key, node: info.node, ips: info.ips };
  if (ingress) plan.ingress = ingress;
  if (egress) plan.egress = egress;
  if (cluster) plan.cluster = cluster;
  return plan;
}

function sameDirection(
  draft: DirectionPlan | undefined,
  prev: DirectionPlan | undefined,
): DirectionPlan | undefined {
  if (draft === undefined || prev === undefined) return draft;
  return sameList(draft.policies, prev.policies) && sameList(draft.allow, prev.allow)
    ? prev
    : draft;
}

function sameCluster(
  draft: TargetPlan["cluster"],
  prev: TargetPlan["cluster"],
): TargetPlan["cluster"] {
  if (draft === undefined || prev === undefined) return draft;
  const ingress = sameTiers(draft.ingress, prev.ingress);
  const egress = sameTiers(draft.egress, prev.egress);
  if (ingress === prev.ingress && egress === prev.egress) return prev;
  return { ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) };
}

function sameTiers(draft: TierRules | undefined, prev: TierRules | undefined) {
  if (draft === undefined || prev === undefined) return draft;
  return sameList(draft.admin, prev.admin) && sameList(draft.baseline, prev.baseline)
    ? prev
    : draft;
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
}
