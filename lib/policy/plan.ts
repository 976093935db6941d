// What the NetworkPolicy compiler produces (lib/policy/compile.ts): per isolated pod and direction,
// the rules that allow traffic, with peers as address ranges and ports resolved, and per pod a
// ClusterNetworkPolicy selects its Admin and Baseline rules with their actions. Pure data: the
// nftables rules (lib/policy/nft_rules.ts) and `explain` (lib/policy/explain.ts) both read it,
// so what explain says is what the kernel does.
import type { ClusterRuleAction, Tier } from "../kube/cluster_network_policy.ts";
import type { Protocol } from "../kube/policy_objects.ts";

/** An inclusive range of addresses of one family, as numbers. */
export interface AddressRange {
  readonly start: bigint;
  readonly end: bigint;
}

/** Addresses by family: sorted, disjoint, adjacent ranges merged. */
export interface AddressSet {
  readonly v4: readonly AddressRange[];
  readonly v6: readonly AddressRange[];
}

/** What one `ports` entry of a rule matches once resolved. */
export type PortMatch =
  /** Ports `port`..`endPort` (equal for one port; 1..65535 for "every port of protocol"). */
  | {
    readonly kind: "range";
    readonly protocol: Protocol;
    readonly port: number;
    readonly endPort: number;
  }
  /**
   * An egress named port: it resolves on each destination pod, so it is the list of the
   * destination addresses (pods among the rule's peers that have a container port of that name
   * and protocol) with the port number each has.
   */
  | {
    readonly kind: "named";
    readonly protocol: Protocol;
    readonly name: string;
    readonly endpoints: readonly { readonly ip: string; readonly port: number }[];
  };

/** One rule that allows traffic for a target in one direction. */
export interface AllowRule {
  /** `namespace/name` of the policy. */
  readonly policy: string;
  /** Index of the rule in the policy's `ingress` or `egress` list. */
  readonly rule: number;
  /**
   * Sources (ingress) or destinations (egress). "any" when the rule has no peers. Shared by
   * every target of the same policy rule (same object), so renderers can deduplicate by
   * identity as well as by content.
   */
  readonly peers: AddressSet | "any";
  /**
   * "any" when the rule has no ports. Ingress named ports are already resolved against the
   * target pod (a "range" of one port); one that does not resolve is left out, and a rule whose
   * every port was left out is still listed with `ports: []` (it matches nothing).
   */
  readonly ports: readonly PortMatch[] | "any";
}

/** One direction of one target: the policies that isolate it and what they allow. */
export interface DirectionPlan {
  /** `namespace/name` of every policy that selects the pod for this direction, sorted. */
  readonly policies: readonly string[];
  /** In policy order, then rule order. Empty: the pod is isolated and nothing is allowed. */
  readonly allow: readonly AllowRule[];
}

/**
 * One ClusterNetworkPolicy rule for one target and direction, peers and ports resolved as for
 * NetworkPolicy (`policy` is the ClusterNetworkPolicy's name, `rule` the index in its `ingress`
 * or `egress` list). Its peers are never "any", except on the deny-all rule that stands for a
 * policy that cannot be enforced exactly: that one has `rule` -1 and `error`.
 */
export interface ClusterRule extends AllowRule {
  readonly tier: Tier;
  readonly priority: number;
  /** The rule's `name`; "" when it has none. */
  readonly name: string;
  readonly action: ClusterRuleAction;
  /** Why the policy cannot be enforced exactly (only on its fail-closed deny-all rule). */
  readonly error?: string;
}

/**
 * The ClusterNetworkPolicy rules one target meets in one direction, each list in evaluation
 * order: by priority, then by policy name (the tie-break upstream leaves to implementations),
 * then in the policy's rule order. The first rule that matches decides: Accept and Deny are
 * final; an Admin Pass skips the rest of the Admin tier to the NetworkPolicy stage, a Baseline
 * Pass skips the rest of the Baseline tier to the default (allow). Baseline rules only count when
 * no NetworkPolicy isolates the pod in this direction.
 */
export interface TierRules {
  readonly admin: readonly ClusterRule[];
  readonly baseline: readonly ClusterRule[];
}

/** A pod some policy isolates in at least one direction, or some ClusterNetworkPolicy selects. */
export interface TargetPlan {
  /** `namespace/name` */
  readonly pod: string;
  readonly node: string;
  /** The pod's addresses, canonical text, IPv4 first. */
  readonly ips: readonly string[];
  /** Present when isolated for ingress. */
  readonly ingress?: DirectionPlan;
  /** Present when isolated for egress. */
  readonly egress?: DirectionPlan;
  /**
   * Present when a ClusterNetworkPolicy selects the pod: its rules per direction (a direction is
   * present when some selecting policy has rules for it).
   */
  readonly cluster?: { readonly ingress?: TierRules; readonly egress?: TierRules };
}

/** The compiled policy state: every isolated target (only this node's when a node was given). */
export interface PolicyPlan {
  readonly targets: readonly TargetPlan[];
  /** Policies that could not be enforced exactly (they are enforced fail-closed). */
  readonly errors: readonly { readonly policy: string; readonly error: string }[];
  /**
   * ClusterNetworkPolicies (by name) that could not be enforced exactly; present when the state
   * has any ClusterNetworkPolicy, so a plan without them is exactly NetworkPolicy's.
   */
  readonly clusterErrors?: readonly { readonly policy: string; readonly error: string }[];
}

/** A flow `explain` is asked about. */
export interface FlowQuery {
  /** `namespace/name` of a pod, or an IP address. */
  readonly from: string;
  /** `namespace/name` of a pod, or an IP address. */
  readonly to: string;
  readonly protocol: Protocol;
  readonly port: number;
}

/**
 * The stage of the evaluation order that decided one direction: a ClusterNetworkPolicy tier, the
 * NetworkPolicies, the default (allow), or "always" for traffic policy never blocks (a pod to
 * itself, a pod and its own node).
 */
export type Stage = "Admin" | "NetworkPolicy" | "Baseline" | "default" | "always";

/** A ClusterNetworkPolicy rule as `explain` names it. */
export interface ClusterRuleRef {
  readonly tier: Tier;
  readonly policy: string;
  readonly priority: number;
  /** Index in the policy's `ingress` or `egress` list; -1 for a fail-closed policy's deny-all. */
  readonly rule: number;
  readonly name: string;
  readonly action: ClusterRuleAction;
}

/** What one direction says about a flow. */
export interface DirectionVerdict {
  readonly allowed: boolean;
  /** The policies isolating the pod in this direction (empty: not isolated). */
  readonly policies: readonly string[];
  /** The rules that allow the flow (empty when denied or when not isolated). */
  readonly allowedBy: readonly { readonly policy: string; readonly rule: number }[];
  /**
   * One sentence for people: "not a pod", "not isolated for ingress", "allowed by x/allow-web
   * ingress rule 0", "isolated by x/deny-all and no rule allows TCP 80 from 10.244.1.2",
   * "always allowed: a pod to itself".
   */
  readonly reason: string;
  /** The stage that decided; present when the state has ClusterNetworkPolicies. */
  readonly stage?: Stage;
  /** The ClusterNetworkPolicy rule that decided (stage Admin or Baseline). */
  readonly decidedBy?: ClusterRuleRef;
  /** Pass rules the flow met on the way to the stage that decided, in order. */
  readonly passedBy?: readonly ClusterRuleRef[];
}

/** The answer to a {@linkcode FlowQuery}: egress on the source, ingress on the destination. */
export interface Explanation {
  readonly allowed: boolean;
  /** The addresses the flow was evaluated with (the source's of the destination's family). */
  readonly src: string;
  readonly dst: string;
  readonly egress: DirectionVerdict;
  readonly ingress: DirectionVerdict;
}
