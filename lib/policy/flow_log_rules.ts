// The flow log's nftables side (DESIGN.md "contract — flow log"), pure: the rules a deny path
// runs before its drop, the table objects they use, and the log prefix that tells the agent
// the direction and the deciding policies of a logged packet.
//
// Once per flow, in the kernel: a dropped TCP SYN never confirms its conntrack entry, so every
// retransmit is "new" again, and a UDP sender repeats itself. A dynamic set of the flows already
// logged (addresses, protocol, both ports; entries expire after FLOW_SEEN_TIMEOUT_S) lets a flow
// through to the log once; the shared `limit` sits before the set's `add`, so a flow over the
// rate is not marked seen (its retransmit gets another chance) and is counted instead. Deduping
// in the agent instead would let retransmits spend the per-node budget, crowding out new flows
// in exactly the storms the budget is for, and would cost the agent a read per retransmit.
//
// The prefix carries a digest of the decider (direction + the policies that deny), not the
// chain's name: chains are named after their rules (lib/policy/nft_rules.ts), so a chain cannot
// hold its own name, and a digest the agent recomputes from its state says both "which
// policies" and "is this still the state I know" (an unknown digest is a decision the agent's
// state no longer holds: recorded unattributed). The target is the packet's own address on the
// isolated side (daddr for ingress, saddr for egress): the verdict map jumped on exactly that.
import type { Direction } from "../kube/policy_objects.ts";
import type { NftSet } from "../nft/ruleset.ts";
import { nameDigest } from "../sys/digest.ts";
import type { ClusterRule, PolicyPlan } from "./plan.ts";

/** nfnetlink_log group the agent binds in its node's netns (one per netns; any free u16). */
export const FLOW_LOG_GROUP = 9749;
/** The named limit every deny path shares: the per-node rate. */
export const FLOW_LOG_LIMIT = "flowlog";
/** Named counter of denied flows over the rate (kernel side), read for /metrics. */
export const FLOW_LOG_DROPPED_COUNTER = "flowlog_dropped";
/** The dynamic sets of flows already logged, per family. */
export const FLOW_SEEN_SET: Readonly<Record<4 | 6, string>> = {
  4: "flowlog_seen4",
  6: "flowlog_seen6",
};
/**
 * How long a logged flow stays "seen", seconds: longer than a whole refused connect() (SYN
 * retransmits at 1, 3, 7, 15, 31 and 63 s with the default tcp_syn_retries 6, giving up at
 * 127 s).
 */
export const FLOW_SEEN_TIMEOUT_S = 130;
/** At most this many flows are remembered per family; when full, new flows count as dropped. */
export const FLOW_SEEN_SIZE = 65536;
/** nf_log's prefix buffer is 128 bytes with the NUL (NF_LOG_PREFIXLEN). */
export const PREFIX_MAX = 127;

/** Who denied a flow: the direction and the policies named in its record. */
export interface FlowDecider {
  readonly direction: Direction;
  /**
   * `ns/name` of the NetworkPolicies isolating the target (DirectionPlan.policies), or one
   * ClusterNetworkPolicy rule ({@linkcode cnpPolicyRef}).
   */
  readonly policies: readonly string[];
}

/** What {@linkcode parseFlowLogPrefix} reads back. */
export interface ParsedPrefix {
  readonly direction: Direction;
  /** The decider's digest: look it up in a {@linkcode flowLogIndex}. */
  readonly id: string;
}

const DIR_CODE: Record<Direction, string> = { ingress: "i", egress: "e" };
const PREFIX_RE = /^mycni:([ie]):([0-9a-f]{16})(?::|$)/;

/**
 * A ClusterNetworkPolicy rule as the record names it: its name and the rule's index in the
 * direction's list (the record's `direction` says which list).
 *
 * @example
 * cnpPolicyRef("deny-db", 2); // "deny-db[2]"
 */
export function cnpPolicyRef(name: string, rule: number): string {
  return `${name}[${rule}]`;
}

/** The decider's digest: 16 hex characters, stable across agents and restarts. */
export function flowDeciderId(d: FlowDecider): string {
  return nameDigest(`${d.direction}|${d.policies.join(",")}`).slice(0, 16);
}

/**
 * The log prefix of a deny path: `mycni:<i|e>:<digest>:<policies>`, the policies only a hint
 * for people reading `nft list` (cut to fit {@linkcode PREFIX_MAX} bytes; the agent reads the
 * digest).
 *
 * @example
 * flowLogPrefix({ direction: "ingress", policies: ["x/deny"] }); // "mycni:i:3fa2...:x/deny"
 */
export function flowLogPrefix(d: FlowDecider): string {
  const head = `mycni:${DIR_CODE[d.direction]}:${flowDeciderId(d)}`;
  // Object names are DNS labels; anything else (nft's string syntax) becomes "_".
  const hint = d.policies.join(",").replace(/[^A-Za-z0-9._/,\[\]-]/g, "_");
  if (!hint) return head;
  return `${head}:${hint}`.slice(0, PREFIX_MAX);
}

/**
 * The direction and digest of a prefix, or undefined when it is not one of ours.
 *
 * @example
 * parseFlowLogPrefix("mycni:e:0123456789abcdef:x/a"); // { direction: "egress", id: "0123..." }
 */
export function parseFlowLogPrefix(prefix: string): ParsedPrefix | undefined {
  const m = PREFIX_RE.exec(prefix);
  if (!m) return undefined;
  return { direction: m[1] === "i" ? "ingress" : "egress", id: m[2] };
}

/**
 * Deciders by digest: what the agent's state can attribute right now.
 *
 * @example
 * const index = flowLogIndex(networkPolicyDeciders(plan));
 * index.get(parseFlowLogPrefix(p.prefix)!.id)?.policies; // ["x/deny"]
 */
export function flowLogIndex(deciders: Iterable<FlowDecider>): Map<string, FlowDecider> {
  const out = new Map<string, FlowDecider>();
  for (const d of deciders) out.set(flowDeciderId(d), d);
  return out;
}

/** Every NetworkPolicy decider of `plan`: each target's isolating policies, per direction. */
export function networkPolicyDeciders(plan: PolicyPlan): FlowDecider[] {
  const out: FlowDecider[] = [];
  for (const t of plan.targets) {
    for (const direction of ["ingress", "egress"] as const) {
      const d = t[direction];
      if (d) out.push({ direction, policies: d.policies });
    }
  }
  return out;
}

/**
 * The decider of a ClusterNetworkPolicy Deny rule (its fail-closed deny-all is rule -1).
 *
 * @example
 * clusterRuleDecider("egress", rule); // { direction: "egress", policies: ["deny-db[2]"] }
 */
export function clusterRuleDecider(direction: Direction, rule: ClusterRule): FlowDecider {
  return { direction, policies: [cnpPolicyRef(rule.policy, rule.rule)] };
}

/** Every ClusterNetworkPolicy decider of `plan`: each Deny rule a target meets, per direction. */
export function clusterPolicyDeciders(plan: PolicyPlan): FlowDecider[] {
  const out: FlowDecider[] = [];
  const seen = new Set<ClusterRule>(); // subjects of one policy share its rule objects
  for (const t of plan.targets) {
    for (const direction of ["ingress", "egress"] as const) {
      const tiers = t.cluster?.[direction];
      for (const rule of [...tiers?.admin ?? [], ...tiers?.baseline ?? []]) {
        if (rule.action !== "Deny" || seen.has(rule)) continue;
        seen.add(rule);
        out.push(clusterRuleDecider(direction, rule));
      }
    }
  }
  return out;
}

/**
 * Every decider the table of `plan` logs with: what the agent attributes records by.
 *
 * @example
 * const index = flowLogIndex(planDeciders(appliedPlan));
 */
export function planDeciders(plan: PolicyPlan): FlowDecider[] {
  return [...networkPolicyDeciders(plan), ...clusterPolicyDeciders(plan)];
}

/** What the log rules need besides the decider. */
export interface FlowLogRuleOptions {
  /** nfnetlink_log group; {@linkcode FLOW_LOG_GROUP} by default. */
  readonly group?: number;
}

/**
 * The rules a deny path runs before its drop, per family: log the flow once if the shared
 * limit allows (and remember it), else count it. Non-terminal: the drop after them decides.
 * Written as `nft list` prints them, so a table read back compares equal.
 *
 * @example
 * [...flowLogRules({ direction: "ingress", policies: ["x/deny"] }),
 *   "counter name ingress_dropped drop"];
 */
export function flowLogRules(d: FlowDecider, opts: FlowLogRuleOptions = {}): string[] {
  const prefix = flowLogPrefix(d);
  const group = opts.group ?? FLOW_LOG_GROUP;
  return ([4, 6] as const).flatMap((f) => {
    const key = flowKey(f);
    const set = FLOW_SEEN_SET[f];
    return [
      `${key} != @${set} limit name "${FLOW_LOG_LIMIT}" add @${set} { ${key} } ` +
      `log prefix "${prefix}" group ${group}`,
      `${key} != @${set} counter name "${FLOW_LOG_DROPPED_COUNTER}"`,
    ];
  });
}

/** The table objects the log rules use, as lib/nft/ruleset.ts's table model holds them. */
export interface FlowLogObjects {
  /** Named counters to add to the table's counters. */
  readonly counters: readonly string[];
  /** The per-node rate, by name: `rate 100/second burst 100 packets`. */
  readonly limits: ReadonlyMap<string, string>;
  /**
   * The seen sets, dynamic: their elements are the kernel's (added by the rules, expired by
   * timeout), so a table difference or read-back repair never adds or deletes them.
   */
  readonly sets: ReadonlyMap<string, NftSet>;
}

/**
 * The objects for a node whose flow log records at most `rate` flows per second (a burst of
 * up to `rate` at once, then `rate` per second).
 *
 * @example
 * flowLogObjects(100).limits.get("flowlog"); // "rate 100/second burst 100 packets"
 */
export function flowLogObjects(rate: number): FlowLogObjects {
  if (!Number.isInteger(rate) || rate < 1) throw new RangeError(`flow log rate ${rate} < 1`);
  const set = (f: 4 | 6): NftSet => ({
    kind: "set",
    type: flowKeyType(f),
    interval: false,
    elements: new Map(),
    dynamic: { timeout: FLOW_SEEN_TIMEOUT_S, size: FLOW_SEEN_SIZE },
  });
  return {
    counters: [FLOW_LOG_DROPPED_COUNTER],
    limits: new Map([[FLOW_LOG_LIMIT, `rate ${rate}/second burst ${rate} packets`]]),
    sets: new Map([[FLOW_SEEN_SET[4], set(4)], [FLOW_SEEN_SET[6], set(6)]]),
  };
}

/**
 * The set type of a flow key (`flowKey`): addresses, protocol, both ports.
 *
 * @example
 * flowKeyType(4); // "ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service"
 */
export function flowKeyType(f: 4 | 6): string {
  const a = f === 4 ? "ipv4_addr" : "ipv6_addr";
  return `${a} . ${a} . inet_proto . inet_service . inet_service`;
}

/**
 * A packet's flow key in a rule: `ip saddr . ip daddr . meta l4proto . th sport . th dport`.
 *
 * @example
 * `${flowKey(6)} @seen6`;
 */
export function flowKey(f: 4 | 6): string {
  const ip = f === 4 ? "ip" : "ip6";
  return `${ip} saddr . ${ip} daddr . meta l4proto . th sport . th dport`;
}
