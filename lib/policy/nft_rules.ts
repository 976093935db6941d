// The compiled policy plan as nftables objects for this node's table: which local pods are
// isolated (verdict maps from address to the chain holding their rules), the rules, and the
// address sets they test. Pure. What a packet walks does not grow with the number of pods: one
// map lookup per direction, then the rules of the policies selecting that pod, whose peers are
// set lookups.
//
// Names are derived, never random: a peer set is named after its policy, rule and family, so a
// pod that comes or goes changes that set's elements and nothing else; a chain is named after
// its rules, so targets with the same rules share one chain and a chain never changes in place.
// A target ClusterNetworkPolicies select gets its tiers in front of (and behind) its
// NetworkPolicy rules, still behind one map entry per direction: lib/policy/nft_tiers.ts.
//
// A renderer kept from one plan to the next (createPolicyRenderer, what the agent uses) makes each
// set once per plan object (lib/policy/nft_sets.ts), each rule's lines once per rule object and
// set names, and hands back the previous set and chain objects where nothing changed, so the
// table's difference is only what changed. policyObjects is the same code on an empty renderer.
import type { Family } from "../ip/cidr.ts";
import { NFT_ADDR, NFT_IP, type NftChain, type NftSet } from "../nft/ruleset.ts";
import { nameDigest } from "../sys/digest.ts";
import type { Direction, Protocol } from "../kube/policy_objects.ts";
import { type FlowDecider, flowLogRules } from "./flow_log_rules.ts";
import { type NamedChain, tierChains } from "./nft_tiers.ts";
import { createSetContents, type SetContent, type SetContents } from "./nft_sets.ts";
import type { NamedPort } from "./plan_changes.ts";
import type {
  AllowRule,
  ClusterRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
  TargetPlan,
  TierRules,
} from "./plan.ts";

/** Named counters the drop rules count into (read back for /metrics). */
export const DROP_COUNTERS: Record<Direction, string> = {
  ingress: "ingress_dropped",
  egress: "egress_dropped",
};

/** The policy part of the table: sets and maps, the per-target chains, the forward hook rules. */
export interface PolicyObjects {
  readonly sets: Map<string, NftSet>;
  readonly chains: Map<string, NftChain>;
  /** Rules for the forward base chain, after "replies are allowed". */
  readonly forwardRules: readonly string[];
  /** Rules in the per-target chains (what a packet can walk), for /metrics. */
  readonly ruleCount: number;
}

/** How the policy objects are rendered besides the plan. */
export interface PolicyObjectsOptions {
  /**
   * `--flow-log denied`: every deny path logs the first packet of each flow before its drop
   * (lib/policy/flow_log_rules.ts), naming its decider. Off: today's rules exactly.
   */
  readonly flowLog?: boolean;
}

/** Renders plan after plan, reusing what the last renders made. */
export interface PolicyRenderer {
  /** The objects enforcing `plan`: equal to `policyObjects(plan)`. */
  render(plan: PolicyPlan): PolicyObjects;
}

const FAMILIES: readonly Family[] = [4, 6];
const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];
const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

const MAP_NAME = (dir: Direction, f: Family) => `${dir}${f}`;

const FORWARD_RULES: readonly string[] = [
  // IPv6 finds neighbours with ICMPv6 (IPv4 with ARP, which never meets this hook): an isolated
  // pod must still learn the addresses of the peers it answers, or an allowed reply never leaves.
  "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
  // A pod reaching itself through a Service comes back over the bridge (hairpin).
  ...FAMILIES.map((f) => `${NFT_IP[f]} saddr . ${NFT_IP[f]} daddr @self${f} accept`),
  // Egress first: an allowed packet returns here and still meets the destination's ingress.
  ...FAMILIES.map((f) => `${NFT_IP[f]} saddr vmap @${MAP_NAME("egress", f)}`),
  ...FAMILIES.map((f) => `${NFT_IP[f]} daddr vmap @${MAP_NAME("ingress", f)}`),
];

/**
 * The nftables objects enforcing `plan` (this node's targets).
 *
 * @example
 * const objs = policyObjects(compilePolicies(state, { node: "n1" }));
 * objs.sets.get("ingress4"); // { kind: "map", type: "ipv4_addr : verdict", ... }
 */
export function policyObjects(plan: PolicyPlan, opts: PolicyObjectsOptions = {}): PolicyObjects {
  return createPolicyRenderer(opts).render(plan);
}

/**
 * A renderer that keeps its work for the next plan: each render returns what
 * {@linkcode policyObjects} would, with the previous render's set and chain objects again where
 * they did not change (the table diff then skips them by identity).
 *
 * @example
 * const renderer = createPolicyRenderer();
 * renderer.render(compiler.compile(state)); // as policyObjects(plan)
 */
export function createPolicyRenderer(opts: PolicyObjectsOptions = {}): PolicyRenderer {
  const flowLog = opts.flowLog ?? false;
  const kept: Kept = {
    contents: createSetContents(),
    claims: new WeakMap(),
    bodies: new WeakMap(),
    lines: new WeakMap(),
    interned: new Map(),
    chainNames: new Map(),
    chains: new Map(),
  };
  let previous: PolicyObjects | undefined;
  return {
    render(plan) {
      const pool = new SetPool(kept.contents, kept.claims);
      // Two passes over the same rules: the first sees every set's content (so identical ones
      // can share one set, named after the first rule that needs it), the second renders the
      // chains.
      for (const target of plan.targets) {
        for (const dir of DIRECTIONS) claimTarget(pool, dir, target);
      }
      const sets = pool.seal();
      const render: Render = {
        pool,
        kept,
        flowLog,
        now: [new Map(), new Map()],
        chains: new Map(),
      };
      const objects = renderTargets(plan, render, sets, previous);
      kept.chains = render.chains;
      // Caches of text, bounded: a miss only costs rendering again.
      if (kept.interned.size > INTERNED_LIMIT) kept.interned.clear();
      if (kept.chainNames.size > INTERNED_LIMIT) kept.chainNames.clear();
      previous = objects;
      return objects;
    },
  };
}

/** Entries past this in the renderer's text caches: they start over. */
const INTERNED_LIMIT = 20_000;

/** What a renderer keeps from one render to the next. */
interface Kept {
  readonly contents: SetContents;
  /** Per rule object: the sets its lines ask for, per direction (ingress, egress). */
  readonly claims: WeakMap<AllowRule, Claim[][]>;
  /** Per rule object: its line bodies per direction, and the set names they were made with. */
  readonly bodies: WeakMap<AllowRule, (RuleBodies | undefined)[]>;
  /** Per line bodies: the lines, per verdict. */
  readonly lines: WeakMap<readonly string[], Map<string, readonly string[]>>;
  /** Line bodies by their text: rules that render alike hold one array. */
  readonly interned: Map<string, readonly string[]>;
  /** Chain names by direction and rules. */
  readonly chainNames: Map<string, string>;
  /** Per target direction (`dir/pod`): its chains and what they were made from. */
  chains: Map<string, ChainsMade>;
}

/** What the second pass renders with. */
interface Render {
  readonly pool: SetPool;
  readonly kept: Kept;
  /** Deny paths log their first packets (the decider then is part of what makes a chain). */
  readonly flowLog: boolean;
  /** Per direction (ingress, egress): each rule's line bodies in this render. */
  readonly now: readonly [Map<AllowRule, readonly string[]>, Map<AllowRule, readonly string[]>];
  /** The target chains of this render (kept for the next). */
  readonly chains: Map<string, ChainsMade>;
}

/** One rule's line bodies (its lines without the verdict), and the set names they name. */
interface RuleBodies {
  readonly names: readonly string[];
  readonly bodies: readonly string[];
}

/**
 * A target direction's chains and what decides them: whether a NetworkPolicy isolates it, then
 * each rendered rule's line bodies (and, for ClusterNetworkPolicy rules, its action).
 */
interface ChainsMade {
  readonly made: readonly unknown[];
  readonly chains: readonly NamedChain[];
}

/** Claims the sets of every rule a target direction renders, in the order it renders them. */
function claimTarget(pool: SetPool, dir: Direction, target: TargetPlan): void {
  const np = target[dir];
  const tiers = target.cluster?.[dir];
  for (const rule of tiers === undefined || np !== undefined ? np?.allow ?? [] : tiers.baseline) {
    pool.claimAll(dir, rule);
  }
  for (const rule of tiers?.admin ?? []) pool.claimAll(dir, rule);
}

/** The chains, maps and self sets of every target (the second pass). */
function renderTargets(
  plan: PolicyPlan,
  render: Render,
  sets: Map<string, NftSet>,
  previous: PolicyObjects | undefined,
): PolicyObjects {
  const chains = new Map<string, NftChain>();
  const maps = new Map<string, Map<string, string>>();
  const self = new Map<Family, Map<string, string>>(FAMILIES.map((f) => [f, new Map()]));
  for (const dir of DIRECTIONS) for (const f of FAMILIES) maps.set(MAP_NAME(dir, f), new Map());
  let ruleCount = 0;
  for (const target of plan.targets) {
    for (const dir of DIRECTIONS) {
      const list = targetChains(dir, target, render);
      if (list === undefined) continue;
      for (const { name, rules } of list) {
        if (chains.has(name)) continue;
        chains.set(name, previous?.chains.get(name) ?? { rules });
        ruleCount += rules.length;
      }
      for (const ip of target.ips) {
        const f: Family = ip.includes(":") ? 6 : 4;
        // Two pods may hold one address (a terminating pod's object, its address reused): the
        // first by key with rules in this direction decides (targets are sorted), as explain says.
        const map = maps.get(MAP_NAME(dir, f))!;
        if (!map.has(ip)) map.set(ip, `${ip} : jump ${list[0].name}`);
      }
    }
    for (const ip of target.ips) {
      const f: Family = ip.includes(":") ? 6 : 4;
      self.get(f)!.set(`${ip} . ${ip}`, `${ip} . ${ip}`);
    }
  }
  const keep = (name: string, set: NftSet) => {
    const old = previous?.sets.get(name);
    sets.set(name, old !== undefined && sameSet(old, set) ? old : set);
  };
  for (const f of FAMILIES) {
    keep(`self${f}`, {
      kind: "set",
      type: `${NFT_ADDR[f]} . ${NFT_ADDR[f]}`,
      interval: false,
      elements: self.get(f)!,
    });
    for (const dir of ["egress", "ingress"] as const) {
      keep(MAP_NAME(dir, f), {
        kind: "map",
        type: `${NFT_ADDR[f]} : verdict`,
        interval: false,
        elements: maps.get(MAP_NAME(dir, f))!,
      });
    }
  }
  return { sets, chains, forwardRules: FORWARD_RULES, ruleCount };
}

function sameSet(a: NftSet, b: NftSet): boolean {
  if (a.kind !== b.kind || a.type !== b.type || a.interval !== b.interval) return false;
  if (a.elements.size !== b.elements.size) return false;
  for (const [k, v] of a.elements) if (b.elements.get(k) !== v) return false;
  return true;
}

/**
 * The chains of one target direction, the one its map entries jump to first: NetworkPolicy's
 * alone (one chain), or with ClusterNetworkPolicy tiers (lib/policy/nft_tiers.ts). The same
 * chains as last render when what they are made from is the same objects.
 */
function targetChains(
  dir: Direction,
  target: TargetPlan,
  render: Render,
): readonly NamedChain[] | undefined {
  const np = target[dir];
  const tiers = target.cluster?.[dir];
  if (np === undefined && tiers === undefined) return undefined;
  const made: unknown[] = [np === undefined ? 0 : 1];
  // With the flow log a deny path's prefix names its decider: the isolating policies, each
  // ClusterNetworkPolicy rule.
  if (render.flowLog) made.push(np?.policies.join("\n") ?? "");
  const decider = (rule: ClusterRule) => render.flowLog ? `${rule.policy}[${rule.rule}]` : "";
  if (tiers === undefined) { for (const rule of np!.allow) made.push(bodiesOf(render, dir, rule)); }
  else {
    for (const rule of np !== undefined ? np.allow : tiers.baseline) {
      const cluster = np === undefined ? rule as ClusterRule : undefined;
      made.push(
        bodiesOf(render, dir, rule),
        cluster === undefined ? "" : cluster.action,
        cluster === undefined ? "" : decider(cluster),
      );
    }
    made.push(2);
    for (const rule of tiers.admin) {
      made.push(bodiesOf(render, dir, rule), rule.action, decider(rule));
    }
  }
  const key = `${dir}/${target.pod}`;
  const before = render.kept.chains.get(key);
  const chains = before !== undefined && sameList(before.made, made)
    ? before.chains
    : makeChains(dir, np, tiers, render);
  render.chains.set(key, { made, chains });
  return chains;
}

function makeChains(
  dir: Direction,
  np: DirectionPlan | undefined,
  tiers: TierRules | undefined,
  render: Render,
): readonly NamedChain[] {
  const drop = `counter name ${DROP_COUNTERS[dir]} drop`;
  if (tiers !== undefined) {
    return tierChains(dir, tiers, np, {
      rule: (rule, verdict, out) => {
        for (const line of linesOf(render, bodiesOf(render, dir, rule), verdict)) out.add(line);
      },
      drop,
      name: (rules) => chainNameOf(render, dir, rules),
      ...(render.flowLog ? { flowLog: (d: FlowDecider) => flowLogRules(d) } : {}),
    });
  }
  // Each allow rule as one nft rule per family and port, then the drop. An allowed egress
  // packet returns (its ingress is judged next); an allowed ingress one is accepted.
  const verdict = dir === "ingress" ? "accept" : "return";
  const out = new Set<string>(); // a rule both families share is rendered once
  for (const rule of np!.allow) {
    for (const line of linesOf(render, bodiesOf(render, dir, rule), verdict)) out.add(line);
  }
  const logged = render.flowLog ? flowLogRules({ direction: dir, policies: np!.policies }) : [];
  const rules = [...out, ...logged, drop];
  return [{ name: chainNameOf(render, dir, rules), rules }];
}

function chainNameOf(render: Render, dir: Direction, rules: readonly string[]): string {
  const text = `${dir}\n${rules.join("\n")}`;
  let name = render.kept.chainNames.get(text);
  if (name === undefined) render.kept.chainNames.set(text, name = chainName(dir, rules));
  return name;
}

/**
 * A rule's line bodies (each line without its verdict), made again only when the names of the
 * sets it tests changed: every subject of a ClusterNetworkPolicy holds the same rule objects,
 * and most rules outlive many plans. Rules that render alike get one array.
 */
function bodiesOf(render: Render, dir: Direction, rule: AllowRule): readonly string[] {
  const i = dir === "ingress" ? 0 : 1;
  const hit = render.now[i].get(rule);
  if (hit !== undefined) return hit;
  const { pool, kept } = render;
  const names = pool.namesOf(dir, rule);
  let both = kept.bodies.get(rule);
  if (both === undefined) kept.bodies.set(rule, both = []);
  const known = both[i];
  let bodies = known !== undefined && sameList(known.names, names) ? known.bodies : undefined;
  if (bodies === undefined) {
    const out = new Set<string>();
    ruleLines(dir, rule, "", pool.contents, (content) => pool.nameOf(content), out);
    // The count first: no body and one empty body ("accept" alone) must not meet.
    const text = `${out.size}\n${[...out].join("\n")}`;
    bodies = kept.interned.get(text);
    if (bodies === undefined) kept.interned.set(text, bodies = [...out]);
    both[i] = { names, bodies };
  }
  render.now[i].set(rule, bodies);
  return bodies;
}

/** The lines of `bodies` ending in `verdict`. */
function linesOf(render: Render, bodies: readonly string[], verdict: string): readonly string[] {
  let byVerdict = render.kept.lines.get(bodies);
  if (byVerdict === undefined) render.kept.lines.set(bodies, byVerdict = new Map());
  let lines = byVerdict.get(verdict);
  if (lines === undefined) byVerdict.set(verdict, lines = bodies.map((b) => b + verdict));
  return lines;
}

function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The name a rule's line gives a set: the proposed name while claiming, the final one after. */
type Namer = (content: SetContent, proposed: string) => string;

/** Appends one rule's lines to `out`: one per family, peer set and port, ending in `verdict`. */
function ruleLines(
  dir: Direction,
  rule: AllowRule,
  verdict: string,
  contents: SetContents,
  name: Namer,
  out: Set<string>,
): void {
  if (rule.ports !== "any" && rule.ports.length === 0) return; // no port resolved
  const peerField = dir === "ingress" ? "saddr" : "daddr";
  const id = ruleId(rule);
  for (const f of FAMILIES) {
    // No peers: one rule with no address match; else one per set (addresses, ranges).
    const peerMatches: string[] = [];
    if (rule.peers === "any") peerMatches.push("");
    else {
      const single = contents.peers(rule.peers, f, "addresses");
      const wide = contents.peers(rule.peers, f, "ranges");
      if (single) {
        peerMatches.push(`${NFT_IP[f]} ${peerField} @${name(single, `${dir[0]}_${id}_${f}`)} `);
      }
      if (wide) {
        peerMatches.push(`${NFT_IP[f]} ${peerField} @${name(wide, `${dir[0]}r_${id}_${f}`)} `);
      }
    }
    for (const peer of peerMatches) {
      if (rule.ports === "any") {
        out.add(`${peer}${verdict}`);
        continue;
      }
      for (const [i, port] of rule.ports.entries()) {
        const matches = portMatches(port, f, contents, (named, n) => {
          // Every peer has the port under that number (a Deployment's pods, typically): the
          // peer set already says it, no second set of the same addresses.
          if (rule.peers !== "any" && contents.covers(rule.peers, named, n, f)) return "";
          const set = contents.endpoints(named, f, n);
          return set === null ? undefined : name(set, `${dir[0]}n_${id}_${i}_${n}_${f}`);
        });
        for (const match of matches) out.add(`${peer}${match} ${verdict}`);
      }
    }
  }
}

/** The chain name for `rules`: targets with the same rules share one chain. */
function chainName(dir: Direction, rules: readonly string[]): string {
  return `${dir === "ingress" ? "ing" : "egr"}_${nameDigest(rules.join("\n")).slice(0, 16)}`;
}

/**
 * The matches for one resolved port (several for a named port that resolves to different numbers
 * on different destinations); none when it can match nothing in family `f`.
 */
function portMatches(
  port: PortMatch,
  f: Family,
  contents: SetContents,
  /** The set of the destinations using `number`; "" when no set is needed, undefined for none. */
  endpoints: (named: NamedPort, number: number) => string | undefined,
): string[] {
  const proto = PROTO[port.protocol];
  if (port.kind === "named") {
    return contents.portNumbers(port).flatMap((n) => {
      const set = endpoints(port, n);
      if (set === undefined) return [];
      const to = set === "" ? "" : `${NFT_IP[f]} daddr @${set} `;
      return [`${to}meta l4proto ${proto} th dport ${n}`];
    });
  }
  if (port.port <= 1 && port.endPort >= 65535) return [`meta l4proto ${proto}`];
  const ports = port.port === port.endPort ? `${port.port}` : `${port.port}-${port.endPort}`;
  return [`meta l4proto ${proto} th dport ${ports}`];
}

/** A set a rule's line asked for, under the name it proposed. */
interface Claim {
  readonly content: SetContent;
  readonly proposed: string;
}

/** Sets of equal content, shared: named after the smallest name proposed for them. */
interface Group {
  readonly content: SetContent;
  name: string;
}

/**
 * The peer and endpoint sets of one render. A set is named after the first (by name) policy
 * rule that needs it, so its name stays as pods come and go (only elements change), and rules of
 * different policies that select the same peers (a namespaceSelector many policies repeat) share
 * one set: nft reads every element of the table before each change, so duplicates cost every
 * change.
 */
class SetPool {
  readonly contents: SetContents;
  readonly #claims: WeakMap<AllowRule, Claim[][]>;
  readonly #groups = new Map<string, Group[]>();
  readonly #groupOf = new Map<SetContent, Group>();
  readonly #order: Group[] = [];
  readonly #seen: [Set<AllowRule>, Set<AllowRule>] = [new Set(), new Set()];

  constructor(contents: SetContents, claims: WeakMap<AllowRule, Claim[][]>) {
    this.contents = contents;
    this.#claims = claims;
  }

  /** Claims every set `rule` needs in `dir` (the first pass). */
  claimAll(dir: Direction, rule: AllowRule): void {
    const seen = this.#seen[dir === "ingress" ? 0 : 1];
    if (seen.has(rule)) return;
    seen.add(rule);
    for (const c of this.#claimsOf(dir, rule)) this.#claim(c.content, c.proposed);
  }

  /** Names are final: every set, in the order first claimed. */
  seal(): Map<string, NftSet> {
    return new Map(this.#order.map((g) => [g.name, g.content.set]));
  }

  /** The final name of a claimed set. */
  nameOf(content: SetContent): string {
    return this.#groupOf.get(content)!.name;
  }

  /** The final names of the sets `rule` needs in `dir`, in the order its lines name them. */
  namesOf(dir: Direction, rule: AllowRule): string[] {
    return this.#claimsOf(dir, rule).map((c) => this.nameOf(c.content));
  }

  /** The sets a rule's lines ask for, found once per rule object by rendering them. */
  #claimsOf(dir: Direction, rule: AllowRule): Claim[] {
    let both = this.#claims.get(rule);
    if (both === undefined) this.#claims.set(rule, both = []);
    const i = dir === "ingress" ? 0 : 1;
    let list = both[i];
    if (list === undefined) {
      const found: Claim[] = [];
      ruleLines(dir, rule, "", this.contents, (content, proposed) => {
        found.push({ content, proposed });
        return proposed;
      }, new Set());
      both[i] = list = found;
    }
    return list;
  }

  #claim(content: SetContent, proposed: string): void {
    let g = this.#groupOf.get(content);
    if (g === undefined) {
      let list = this.#groups.get(content.key);
      if (list === undefined) this.#groups.set(content.key, list = []);
      g = list.find((x) => this.contents.same(x.content, content));
      if (g === undefined) {
        list.push(g = { content, name: proposed });
        this.#order.push(g);
      }
      this.#groupOf.set(content, g);
    }
    if (proposed < g.name) g.name = proposed;
  }
}

/** Policy names run to 253 characters and set names are short: a digest of the key, the rule. */
function ruleId(rule: AllowRule): string {
  let digest = policyDigests.get(rule.policy);
  if (digest === undefined) {
    if (policyDigests.size > 4096) policyDigests.clear();
    policyDigests.set(rule.policy, digest = nameDigest(rule.policy).slice(0, 12));
  }
  return `${digest}_${rule.rule}`;
}

const policyDigests = new Map<string, string>();
