// `explain` with ClusterNetworkPolicies: which stage of the order (Admin, NetworkPolicy, Baseline,
// default) decides one direction of a flow, and by which rule, walking the compiled tier rules
// with the same matching the kernel rules are made from (lib/policy/match.ts).
import type { Direction } from "../kube/policy_objects.ts";
import { allowRuleMatches, type RuleProbe } from "./match.ts";
import type { ClusterRule, ClusterRuleRef, DirectionVerdict, Stage, TierRules } from "./plan.ts";

/** The flow as one direction sees it, and how to say it ("TCP 80 from 10.0.2.2"). */
export interface StageProbe extends RuleProbe {
  readonly text: string;
}

/**
 * One direction's verdict through the stages, given what the NetworkPolicy stage alone says
 * (`np`, whose `policies` list the isolating NetworkPolicies): the first matching Admin rule
 * decides unless it passes; then the NetworkPolicies decide if they isolate the pod; then the
 * first matching Baseline rule unless it passes; then the default, allow.
 *
 * @example
 * tieredVerdict(np, { tiers, isolated: false, direction: "ingress", probe });
 * // { allowed: false, policies: [], allowedBy: [], stage: "Admin",
 * //   decidedBy: { tier: "Admin", policy: "ingress-tcp", priority: 3, rule: 1,
 * //     name: "deny-from-ravenclaw-everything", action: "Deny" },
 * //   reason: 'denied by ClusterNetworkPolicy ingress-tcp (Admin, priority 3) ingress rule 1 ' +
 * //     '"deny-from-ravenclaw-everything"' }
 */
export function tieredVerdict(
  np: DirectionVerdict,
  at: {
    readonly tiers?: TierRules;
    readonly isolated: boolean;
    readonly direction: Direction;
    readonly probe: StageProbe;
  },
): DirectionVerdict {
  const passedBy: ClusterRuleRef[] = [];
  const admin = at.tiers && firstMatch(at.tiers.admin, at.probe);
  if (admin !== undefined && admin.action !== "Pass") {
    return decided(np, admin, "Admin", passedBy, at.direction);
  }
  if (admin !== undefined) passedBy.push(refOf(admin));
  if (at.isolated) {
    return finish({ ...np, stage: "NetworkPolicy" }, passedBy, at.direction);
  }
  const baseline = at.tiers && firstMatch(at.tiers.baseline, at.probe);
  if (baseline !== undefined && baseline.action !== "Pass") {
    return decided(np, baseline, "Baseline", passedBy, at.direction);
  }
  if (baseline !== undefined) passedBy.push(refOf(baseline));
  const reason = at.tiers === undefined
    ? np.reason
    : `not isolated for ${at.direction} and no ClusterNetworkPolicy rule decides ${at.probe.text}`;
  return finish(
    { allowed: true, policies: np.policies, allowedBy: [], reason, stage: "default" },
    passedBy,
    at.direction,
  );
}

function firstMatch(rules: readonly ClusterRule[], probe: RuleProbe): ClusterRule | undefined {
  return rules.find((rule) => allowRuleMatches(rule, probe));
}

function decided(
  np: DirectionVerdict,
  rule: ClusterRule,
  stage: Stage,
  passedBy: ClusterRuleRef[],
  direction: Direction,
): DirectionVerdict {
  const verb = rule.action === "Accept" ? "accepted" : "denied";
  const cannot = rule.error === undefined
    ? ""
    : `, which cannot be enforced exactly: ${rule.error}`;
  return finish(
    {
      allowed: rule.action === "Accept",
      policies: np.policies,
      allowedBy: [],
      reason: `${verb} by ${describeRule(rule, direction)}${cannot}`,
      stage,
      decidedBy: refOf(rule),
    },
    passedBy,
    direction,
  );
}

function finish(
  v: DirectionVerdict,
  passedBy: ClusterRuleRef[],
  direction: Direction,
): DirectionVerdict {
  if (passedBy.length === 0) return v;
  const passes = passedBy.map((r) => `passed by ${describeRule(r, direction)}; `).join("");
  return { ...v, reason: `${passes}${v.reason}`, passedBy };
}

function refOf(rule: ClusterRule): ClusterRuleRef {
  return {
    tier: rule.tier,
    policy: rule.policy,
    priority: rule.priority,
    rule: rule.rule,
    name: rule.name,
    action: rule.action,
  };
}

/** 'ClusterNetworkPolicy ingress-tcp (Admin, priority 3) ingress rule 1 "deny-from-x"'. */
function describeRule(rule: ClusterRuleRef, direction: Direction): string {
  const policy = `ClusterNetworkPolicy ${rule.policy} (${rule.tier}, priority ${rule.priority})`;
  if (rule.rule < 0) return policy;
  const name = rule.name === "" ? "" : ` ${JSON.stringify(rule.name)}`;
  return `${policy} ${direction} rule ${rule.rule}${name}`;
}
