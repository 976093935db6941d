// The chains of one target's direction when ClusterNetworkPolicies select it (lib/policy/
// nft_rules.ts renders the rules and names the chains; this file orders the stages). Pure.
//
// The verdict map still jumps to one chain per target and direction (the head). The head holds
// the Admin rules in order: Accept is the direction's allow (ingress `accept`; egress `return`,
// so the destination's ingress is still judged), Deny the counted drop (with the flow log on, a
// `goto` to a chain logging the flow and then dropping it), Pass a `goto` to the
// rest chain. The rest chain holds the NetworkPolicy stage exactly as a NetworkPolicy-only
// target's chain does (its allow rules, then the counted drop when they isolate the pod), or,
// when no NetworkPolicy isolates it, the Baseline rules (Pass there is the default: allow);
// falling off its end is the default, allow. `goto` leaves no return address, so the rest
// chain's `return` and its end go straight back to the forward chain, as from the head. When no
// Admin rule passes, the rest is written into the head and there is one chain.
//
// Chains are named after their rules (the caller's naming), so targets with the same rules
// share chains, a rest chain equal to a NetworkPolicy-only chain is that chain, and pod changes
// stay map elements.
import type { Direction } from "../kube/policy_objects.ts";
import { clusterRuleDecider, type FlowDecider } from "./flow_log_rules.ts";
import type { AllowRule, ClusterRule, DirectionPlan, TierRules } from "./plan.ts";

/** What the caller renders: one rule's lines, the direction's drop, a chain's name. */
export interface StageRenderer {
  /**
   * Appends to `out` the lines matching `rule` (one per family, peer set and port), each ending
   * in `verdict`; none when the rule matches nothing.
   */
  rule(rule: AllowRule, verdict: string, out: Set<string>): void;
  /** The counted drop of this direction, e.g. "counter name ingress_dropped drop". */
  readonly drop: string;
  /** The name of the chain holding `rules`. */
  name(rules: readonly string[]): string;
  /**
   * The flow log's rules before a deny path's drop (lib/policy/flow_log_rules.ts flowLogRules);
   * absent with the flow log off. A Deny rule's path is then a chain of its own, its rules and
   * the drop, which the rule `goto`s: a rule's match cannot hold other rules.
   */
  readonly flowLog?: (decider: FlowDecider) => readonly string[];
}

/** A chain to declare. */
export interface NamedChain {
  readonly name: string;
  readonly rules: readonly string[];
}

/**
 * The chains for one direction of a target that ClusterNetworkPolicies select: the head first
 * (what the verdict map jumps to), then the rest chain when an Admin Pass needs one, then (flow
 * log on) the Deny rules' chains. `np` is the target's NetworkPolicy isolation in this
 * direction, if any.
 *
 * @example
 * tierChains("ingress", { admin: [passRule], baseline: [] }, npPlan, renderer);
 * // [ { name: "ing_…", rules: ["ip saddr @i_…_4 goto ing_…", "goto ing_…"] },
 * //   { name: "ing_…", rules: ["ip saddr @i_…_4 meta l4proto tcp th dport 80 accept",
 * //                            "counter name ingress_dropped drop"] } ]
 */
export function tierChains(
  dir: Direction,
  tiers: TierRules,
  np: DirectionPlan | undefined,
  render: StageRenderer,
): NamedChain[] {
  const allow = dir === "ingress" ? "accept" : "return";
  // A repeated line is unreachable: every verdict here is final (the flow log's lines, which
  // are not, belong to one deny path each and never repeat).
  const rest = new Set<string>();
  const denies = new Map<string, NamedChain>();
  const deny = (rule: ClusterRule): string => {
    if (!render.flowLog) return render.drop;
    const rules = [...render.flowLog(clusterRuleDecider(dir, rule)), render.drop];
    const name = render.name(rules);
    denies.set(name, { name, rules });
    return `goto ${name}`;
  };
  if (np !== undefined) {
    for (const rule of np.allow) render.rule(rule, allow, rest);
    for (const line of render.flowLog?.({ direction: dir, policies: np.policies }) ?? []) {
      rest.add(line);
    }
    rest.add(render.drop);
  } else {
    // A Baseline Pass skips the rest of the tier to the default, which allows.
    for (const rule of tiers.baseline) {
      render.rule(rule, verdictOf(rule, allow, allow, deny), rest);
    }
  }
  const restRules = [...rest];
  const restName = render.name(restRules);
  const pass = restRules.length === 0 ? allow : `goto ${restName}`;
  const head = new Set<string>();
  for (const rule of tiers.admin) render.rule(rule, verdictOf(rule, allow, pass, deny), head);
  const passes = restRules.length > 0 && [...head].some((line) => line.endsWith(pass));
  if (!passes) {
    for (const line of restRules) head.add(line);
    const rules = [...head];
    return [{ name: render.name(rules), rules }, ...denies.values()];
  }
  head.add(pass);
  const rules = [...head];
  return [
    { name: render.name(rules), rules },
    { name: restName, rules: restRules },
    ...denies.values(),
  ];
}

function verdictOf(
  rule: ClusterRule,
  allow: string,
  pass: string,
  deny: (rule: ClusterRule) => string,
): string {
  switch (rule.action) {
    case "Accept":
      return allow;
    case "Deny":
      return deny(rule);
    case "Pass":
      return pass;
    default: {
      const never: never = rule.action;
      throw new Error(`Unknown ClusterNetworkPolicy action ${JSON.stringify(never)}`);
    }
  }
}
