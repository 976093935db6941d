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
import { type Family, formatIp } from "../ip/cidr.ts";
import { formatRange } from "../ip/range.ts";
import { NFT_ADDR, NFT_IP, type NftChain, type NftSet } from "../nft/ruleset.ts";
import { nameDigest } from "../sys/digest.ts";
import type { Direction, Protocol } from "../kube/policy_objects.ts";
import { type NamedChain, tierChains } from "./nft_tiers.ts";
import type {
  AddressRange,
  AddressSet,
  AllowRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
  TargetPlan,
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

const FAMILIES: readonly Family[] = [4, 6];
const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
type NamedPort = Extract<PortMatch, { kind: "named" }>;

/** Ranges up to this many addresses are listed address by address (a /24 is 256). */
const EXPAND_LIMIT = 256n;

const MAP_NAME = (dir: Direction, f: Family) => `${dir}${f}`;

/**
 * The nftables objects enforcing `plan` (this node's targets).
 *
 * @example
 * const objs = policyObjects(compilePolicies(state, { node: "n1" }));
 * objs.sets.get("ingress4"); // { kind: "map", type: "ipv4_addr : verdict", ... }
 */
export function policyObjects(plan: PolicyPlan): PolicyObjects {
  const sets = new Map<string, NftSet>();
  const chains = new Map<string, NftChain>();
  const maps = new Map<string, Map<string, string>>();
  const self = new Map<Family, Map<string, string>>(FAMILIES.map((f) => [f, new Map()]));
  for (const dir of ["ingress", "egress"] as const) {
    for (const f of FAMILIES) maps.set(MAP_NAME(dir, f), new Map());
  }
  // Two passes over the same rules: the first sees every set's content (so identical ones can
  // share one set, named after the first rule that needs it), the second renders the chains.
  const pool = new SetPool();
  const firstPass: LineMemo = new Map(), secondPass: LineMemo = new Map();
  for (const target of plan.targets) {
    for (const dir of ["ingress", "egress"] as const) targetChains(dir, target, pool, firstPass);
  }
  pool.seal(sets);
  let ruleCount = 0;
  for (const target of plan.targets) {
    for (const dir of ["ingress", "egress"] as const) {
      const list = targetChains(dir, target, pool, secondPass);
      if (list === undefined) continue;
      for (const { name, rules } of list) {
        if (chains.has(name)) continue;
        chains.set(name, { rules });
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
  for (const f of FAMILIES) {
    sets.set(`self${f}`, {
      kind: "set",
      type: `${NFT_ADDR[f]} . ${NFT_ADDR[f]}`,
      interval: false,
      elements: self.get(f)!,
    });
    for (const dir of ["egress", "ingress"] as const) {
      sets.set(MAP_NAME(dir, f), {
        kind: "map",
        type: `${NFT_ADDR[f]} : verdict`,
        interval: false,
        elements: maps.get(MAP_NAME(dir, f))!,
      });
    }
  }
  const forwardRules = [
    // IPv6 finds neighbours with ICMPv6 (IPv4 with ARP, which never meets this hook): an isolated
    // pod must still learn the addresses of the peers it answers, or an allowed reply never leaves.
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
    // A pod reaching itself through a Service comes back over the bridge (hairpin).
    ...FAMILIES.map((f) => `${NFT_IP[f]} saddr . ${NFT_IP[f]} daddr @self${f} accept`),
    // Egress first: an allowed packet returns here and still meets the destination's ingress.
    ...FAMILIES.map((f) => `${NFT_IP[f]} saddr vmap @${MAP_NAME("egress", f)}`),
    ...FAMILIES.map((f) => `${NFT_IP[f]} daddr vmap @${MAP_NAME("ingress", f)}`),
  ];
  return { sets, chains, forwardRules, ruleCount };
}

/**
 * A target chain's rules: each allow rule as one nft rule per family and port, then the drop.
 * An allowed egress packet returns (its ingress is judged next); an allowed ingress one is
 * accepted.
 */
function chainRules(dir: Direction, plan: DirectionPlan, pool: SetPool): string[] {
  const verdict = dir === "ingress" ? "accept" : "return";
  const out = new Set<string>(); // a rule both families share is rendered once
  for (const rule of plan.allow) ruleLines(dir, rule, verdict, pool, out);
  return [...out, `counter name ${DROP_COUNTERS[dir]} drop`];
}

/** Appends one rule's lines to `out`: one per family, peer set and port, ending in `verdict`. */
function ruleLines(
  dir: Direction,
  rule: AllowRule,
  verdict: string,
  pool: SetPool,
  out: Set<string>,
): void {
  if (rule.ports !== "any" && rule.ports.length === 0) return; // no port resolved
  const peerField = dir === "ingress" ? "saddr" : "daddr";
  for (const f of FAMILIES) {
    // No peers: one rule with no address match; else one per set (addresses, ranges).
    const peerMatches = rule.peers === "any"
      ? [""]
      : pool.peers(dir, rule, f).map((set) => `${NFT_IP[f]} ${peerField} @${set} `);
    for (const peer of peerMatches) {
      if (rule.ports === "any") {
        out.add(`${peer}${verdict}`);
        continue;
      }
      for (const [i, port] of rule.ports.entries()) {
        const matches = portMatches(port, f, (named, n) =>
          // Every peer has the port under that number (a Deployment's pods, typically): the
          // peer set already says it, no second set of the same addresses.
          coversPeers(rule, named, n, f) ? "" : pool.endpoints(dir, rule, i, f, named, n));
        for (const match of matches) out.add(`${peer}${match} ${verdict}`);
      }
    }
  }
}

/**
 * One pass's lines per rule and verdict. Every subject of a ClusterNetworkPolicy holds the same
 * rule objects: each is rendered once per pass, not once per target (an egress named port to every
 * pod reads all their endpoints).
 */
type LineMemo = Map<AllowRule, Map<string, readonly string[]>>;

function memoLines(
  memo: LineMemo,
  dir: Direction,
  rule: AllowRule,
  verdict: string,
  pool: SetPool,
): readonly string[] {
  let byVerdict = memo.get(rule);
  if (byVerdict === undefined) memo.set(rule, byVerdict = new Map());
  const key = `${dir} ${verdict}`;
  let lines = byVerdict.get(key);
  if (lines === undefined) {
    const out = new Set<string>();
    ruleLines(dir, rule, verdict, pool, out);
    byVerdict.set(key, lines = [...out]);
  }
  return lines;
}

/** The chain name for `rules`: targets with the same rules share one chain. */
function chainName(dir: Direction, rules: readonly string[]): string {
  return `${dir === "ingress" ? "ing" : "egr"}_${nameDigest(rules.join("\n")).slice(0, 16)}`;
}

/**
 * The chains of one target direction, the one its map entries jump to first: NetworkPolicy's
 * alone (one chain), or with ClusterNetworkPolicy tiers (lib/policy/nft_tiers.ts).
 */
function targetChains(
  dir: Direction,
  target: TargetPlan,
  pool: SetPool,
  memo: LineMemo,
): readonly NamedChain[] | undefined {
  const np = target[dir];
  const tiers = target.cluster?.[dir];
  if (tiers !== undefined) {
    return tierChains(dir, tiers, np, {
      rule: (rule, verdict, out) => {
        for (const line of memoLines(memo, dir, rule, verdict, pool)) out.add(line);
      },
      drop: `counter name ${DROP_COUNTERS[dir]} drop`,
      name: (rules) => chainName(dir, rules),
    });
  }
  if (np === undefined) return undefined;
  const rules = chainRules(dir, np, pool);
  return [{ name: chainName(dir, rules), rules }];
}

/**
 * Whether the destinations of `named` that use port `n` in family `f` are exactly the rule's
 * peers of that family (the compiler only lists endpoints among the peers, each once).
 */
function coversPeers(rule: AllowRule, named: NamedPort, n: number, f: Family): boolean {
  if (rule.peers === "any") return false;
  // A named port object belongs to one peers object (the compiler makes one per peers), and
  // every subject of a ClusterNetworkPolicy asks about it: count its endpoints once.
  let known = coverage.get(named);
  if (known === undefined) coverage.set(named, known = new Map());
  const key = `${f}/${n}`;
  const hit = known.get(key);
  if (hit !== undefined) return hit;
  let size = 0n;
  for (const r of f === 4 ? rule.peers.v4 : rule.peers.v6) size += r.end - r.start + 1n;
  let count = 0n;
  for (const e of named.endpoints) if (e.port === n && e.ip.includes(":") === (f === 6)) count++;
  known.set(key, count > 0n && count === size);
  return count > 0n && count === size;
}

const coverage = new WeakMap<NamedPort, Map<string, boolean>>();
const portNumbers = new WeakMap<NamedPort, number[]>();

/**
 * The matches for one resolved port (several for a named port that resolves to different numbers
 * on different destinations); none when it can match nothing in family `f`.
 */
function portMatches(
  port: PortMatch,
  f: Family,
  /** The set of the destinations using `number`; "" when no set is needed, undefined for none. */
  endpoints: (named: NamedPort, number: number) => string | undefined,
): string[] {
  const proto = PROTO[port.protocol];
  if (port.kind === "named") {
    let numbers = portNumbers.get(port);
    if (numbers === undefined) {
      numbers = [...new Set(port.endpoints.map((e) => e.port))].sort((a, b) => a - b);
      portNumbers.set(port, numbers);
    }
    return numbers.flatMap((n) => {
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

/** A set's content and the names of the rules that want it. */
interface Group {
  readonly set: NftSet;
  /** The smallest name proposed for it: the set's name once sealed. */
  name: string;
}

/** A set as its content key (cheap to build from the compiler's data) and the set itself. */
interface Content {
  readonly key: string;
  readonly set: NftSet;
}

// The sets of the previous compile, by content key: a set that did not change is the same
// object again, so it is neither rebuilt (formatting thousands of addresses each time) nor
// compared element by element when the table is diffed.
let previousSets = new Map<string, NftSet>();

/**
 * The peer and endpoint sets. A set is named after the first (by name) policy rule that needs
 * it, so its name stays as pods come and go (only elements change), and rules of different
 * policies that select the same peers (a namespaceSelector many policies repeat) share one set:
 * nft reads every element of the table before each change, so duplicates cost every change.
 */
class SetPool {
  readonly #groups = new Map<string, Group>();
  // Contents computed once per object: the compiler shares one peers object per policy rule.
  readonly #contents = new WeakMap<object, Map<string, Content | null>>();
  readonly #sets = new Map<string, NftSet>();
  #sealed = false;

  /** The set holding `rule`'s peers of family `f`, or undefined when it has none. */
  peers(dir: Direction, rule: AllowRule, f: Family): string[] {
    const peers = rule.peers as AddressSet;
    const ranges = f === 4 ? peers.v4 : peers.v6;
    // Addresses (pods, small blocks) go in a plain set, wide ranges (ipBlocks) in an interval
    // set: nft reads every element of every interval set in the table before each change, and
    // a plain set's not at all (a change costs ~10 ms instead of ~60 ms at 10,000 elements).
    const single = this.#content(peers, `${f}/addresses`, () => {
      const small = ranges.filter((r) => r.end - r.start < EXPAND_LIMIT);
      if (small.length === 0) return null;
      return {
        key: `${f}|a|${small.map((r) => r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`)}`,
        make: () => {
          const elements = new Map<string, string>();
          for (const r of small) {
            for (let v = r.start; v <= r.end; v++) {
              const ip = formatIp({ family: f, value: v });
              elements.set(ip, ip);
            }
          }
          return { kind: "set", type: NFT_ADDR[f], interval: false, elements };
        },
      };
    });
    const wide = this.#content(peers, `${f}/ranges`, () => {
      const big = ranges.filter((r) => r.end - r.start >= EXPAND_LIMIT);
      if (big.length === 0) return null;
      return {
        key: `${f}|r|${big.map((r) => `${r.start}-${r.end}`)}`,
        make: () => ({
          kind: "set",
          type: NFT_ADDR[f],
          interval: true,
          elements: new Map(big.map((r) => [rangeKey(r, f), formatRange(f, r)])),
        }),
      };
    });
    const names: string[] = [];
    if (single) names.push(this.#claim(single, `${dir[0]}_${ruleId(rule)}_${f}`));
    if (wide) names.push(this.#claim(wide, `${dir[0]}r_${ruleId(rule)}_${f}`));
    return names;
  }

  /**
   * The destinations of an egress named port that resolve to `port` (a name can resolve to
   * different numbers on different pods: one set per number), or undefined when none does.
   */
  endpoints(
    dir: Direction,
    rule: AllowRule,
    index: number,
    f: Family,
    named: NamedPort,
    port: number,
  ): string | undefined {
    const content = this.#content(named.endpoints, `${f}/${port}`, () => {
      const ips: string[] = [];
      for (const e of named.endpoints) {
        if (e.port === port && e.ip.includes(":") === (f === 6)) ips.push(e.ip);
      }
      if (ips.length === 0) return null;
      return {
        key: `${f}|${port}|${ips}`,
        make: () => ({
          kind: "set",
          type: NFT_ADDR[f],
          interval: false,
          elements: new Map(ips.map((ip) => [ip, ip])),
        }),
      };
    });
    return content && this.#claim(content, `${dir[0]}n_${ruleId(rule)}_${index}_${port}_${f}`);
  }

  /** Names are final: declares every set in `into`, and keeps them for the next compile. */
  seal(into: Map<string, NftSet>): void {
    this.#sealed = true;
    for (const g of this.#groups.values()) into.set(g.name, g.set);
    previousSets = this.#sets;
  }

  #claim(content: Content, name: string): string {
    let g = this.#groups.get(content.key);
    if (!g) {
      if (this.#sealed) throw new Error(`Set for ${name} appeared after the sets were named`);
      this.#groups.set(content.key, g = { set: content.set, name });
    } else if (!this.#sealed && name < g.name) g.name = name;
    return g.name;
  }

  #content(
    owner: object,
    variant: string,
    describe: () => { key: string; make: () => NftSet } | null,
  ): Content | undefined {
    let byVariant = this.#contents.get(owner);
    if (!byVariant) this.#contents.set(owner, byVariant = new Map());
    let c = byVariant.get(variant);
    if (c === undefined) {
      const d = describe();
      if (d === null) c = null;
      else {
        const set = this.#sets.get(d.key) ?? previousSets.get(d.key) ?? d.make();
        this.#sets.set(d.key, set);
        c = { key: d.key, set };
      }
      byVariant.set(variant, c);
    }
    return c ?? undefined;
  }
}

/** Policy names run to 253 characters and set names are short: a digest of the key, the rule. */
function ruleId(rule: AllowRule): string {
  return `${nameDigest(rule.policy).slice(0, 12)}_${rule.rule}`;
}

function rangeKey(r: AddressRange, f: Family): string {
  return `${f}:${r.start}-${r.end}`;
}

/** Renders plans one after another (placeholder). */
export function createPolicyRenderer(): { render(plan: PolicyPlan): PolicyObjects } {
  return { render: policyObjects };
}
