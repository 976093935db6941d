// The compiled policy plan as nftables objects for this node's table: which local pods are
// isolated (verdict maps from address to the chain holding their rules), the rules, and the
// address sets they test. Pure. What a packet walks does not grow with the number of pods: one
// map lookup per direction, then the rules of the policies selecting that pod, whose peers are
// set lookups.
//
// Names are derived, never random: a peer set is named after its policy, rule and family, so a
// pod that comes or goes changes that set's elements and nothing else; a chain is named after
// its rules, so targets with the same rules share one chain and a chain never changes in place.
import type { Family } from "../ip/cidr.ts";
import { formatRange } from "../ip/range.ts";
import type { NftChain, NftSet } from "../net/nft_ruleset.ts";
import { nameDigest } from "../net/digest.ts";
import type { Direction, Protocol } from "../kube/policy_objects.ts";
import type {
  AddressRange,
  AddressSet,
  AllowRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
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
const IP: Record<Family, string> = { 4: "ip", 6: "ip6" };
const ADDR: Record<Family, string> = { 4: "ipv4_addr", 6: "ipv6_addr" };
const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
type NamedPort = Extract<PortMatch, { kind: "named" }>;

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
  const peerSets = new PeerSets(sets);
  let ruleCount = 0;
  for (const target of plan.targets) {
    for (const dir of ["ingress", "egress"] as const) {
      const d = target[dir];
      if (!d) continue;
      const rules = chainRules(dir, d, peerSets);
      const name = `${dir === "ingress" ? "ing" : "egr"}_${
        nameDigest(rules.join("\n")).slice(0, 16)
      }`;
      if (!chains.has(name)) {
        chains.set(name, { rules });
        ruleCount += rules.length;
      }
      for (const ip of target.ips) {
        const f: Family = ip.includes(":") ? 6 : 4;
        maps.get(MAP_NAME(dir, f))!.set(ip, `${ip} : jump ${name}`);
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
      type: `${ADDR[f]} . ${ADDR[f]}`,
      interval: false,
      elements: self.get(f)!,
    });
    for (const dir of ["egress", "ingress"] as const) {
      sets.set(MAP_NAME(dir, f), {
        kind: "map",
        type: `${ADDR[f]} : verdict`,
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
    ...FAMILIES.map((f) => `${IP[f]} saddr . ${IP[f]} daddr @self${f} accept`),
    // Egress first: an allowed packet returns here and still meets the destination's ingress.
    ...FAMILIES.map((f) => `${IP[f]} saddr vmap @${MAP_NAME("egress", f)}`),
    ...FAMILIES.map((f) => `${IP[f]} daddr vmap @${MAP_NAME("ingress", f)}`),
  ];
  return { sets, chains, forwardRules, ruleCount };
}

/**
 * A target chain's rules: each allow rule as one nft rule per family and port, then the drop.
 * An allowed egress packet returns (its ingress is judged next); an allowed ingress one is
 * accepted.
 */
function chainRules(dir: Direction, plan: DirectionPlan, peerSets: PeerSets): string[] {
  const verdict = dir === "ingress" ? "accept" : "return";
  const peerField = dir === "ingress" ? "saddr" : "daddr";
  const out = new Set<string>(); // a rule both families share is rendered once
  for (const rule of plan.allow) {
    if (rule.ports !== "any" && rule.ports.length === 0) continue; // no port resolved
    for (const f of FAMILIES) {
      let peer = "";
      if (rule.peers !== "any") {
        const set = peerSets.name(dir, rule, f);
        if (set === undefined) continue; // no peer of this family
        peer = `${IP[f]} ${peerField} @${set} `;
      }
      if (rule.ports === "any") {
        out.add(`${peer}${verdict}`);
        continue;
      }
      for (const [i, port] of rule.ports.entries()) {
        const match = portMatch(port, f, (named) => peerSets.endpointsName(dir, rule, i, f, named));
        if (match !== undefined) out.add(`${peer}${match} ${verdict}`);
      }
    }
  }
  return [...out, `counter name ${DROP_COUNTERS[dir]} drop`];
}

/** The match for one resolved port; undefined when it can match nothing in family `f`. */
function portMatch(
  port: PortMatch,
  f: Family,
  endpoints: (named: NamedPort) => string | undefined,
): string | undefined {
  const proto = PROTO[port.protocol];
  if (port.kind === "named") {
    const set = endpoints(port);
    return set && `${IP[f]} daddr . meta l4proto . th dport @${set}`;
  }
  if (port.port <= 1 && port.endPort >= 65535) return `meta l4proto ${proto}`;
  const ports = port.port === port.endPort ? `${port.port}` : `${port.port}-${port.endPort}`;
  return `meta l4proto ${proto} th dport ${ports}`;
}

/** Peer and endpoint sets, declared once per (policy, rule, family) however many targets use them. */
class PeerSets {
  constructor(private readonly sets: Map<string, NftSet>) {}

  /** The set of `rule`'s peers of family `f`, or undefined when it has none. */
  name(dir: Direction, rule: AllowRule, f: Family): string | undefined {
    const peers = rule.peers as AddressSet;
    const ranges = f === 4 ? peers.v4 : peers.v6;
    if (ranges.length === 0) return undefined;
    const name = `${dir[0]}_${ruleId(rule)}_${f}`;
    if (!this.sets.has(name)) {
      const elements = new Map(ranges.map((r) => [rangeKey(r, f), formatRange(f, r)]));
      this.sets.set(name, { kind: "set", type: ADDR[f], interval: true, elements });
    }
    return name;
  }

  /** The `address . protocol . port` set of an egress named port, or undefined when empty. */
  endpointsName(
    dir: Direction,
    rule: AllowRule,
    index: number,
    f: Family,
    port: NamedPort,
  ): string | undefined {
    const proto = PROTO[port.protocol];
    const elements = new Map<string, string>();
    for (const e of port.endpoints) {
      if (e.ip.includes(":") !== (f === 6)) continue;
      const el = `${e.ip} . ${proto} . ${e.port}`;
      elements.set(el, el);
    }
    if (elements.size === 0) return undefined;
    const name = `${dir[0]}n_${ruleId(rule)}_${index}_${f}`;
    this.sets.set(name, {
      kind: "set",
      type: `${ADDR[f]} . inet_proto . inet_service`,
      interval: false,
      elements,
    });
    return name;
  }
}

/** Policy names run to 253 characters and set names are short: a digest of the key, the rule. */
function ruleId(rule: AllowRule): string {
  return `${nameDigest(rule.policy).slice(0, 12)}_${rule.rule}`;
}

function rangeKey(r: AddressRange, f: Family): string {
  return `${f}:${r.start}-${r.end}`;
}
