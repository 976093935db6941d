// What the NetworkPolicy compiler produces (lib/policy/compile.ts): per isolated pod and direction,
// the rules that allow traffic, with peers as address ranges and ports resolved. Pure data: the
// nftables rules (lib/policy/nft_rules.ts) and `explain` (lib/policy/explain.ts) both read it,
// so what explain says is what the kernel does.
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

/** A pod some policy isolates in at least one direction. */
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
}

/** The compiled policy state: every isolated target (only this node's when a node was given). */
export interface PolicyPlan {
  readonly targets: readonly TargetPlan[];
  /** Policies that could not be enforced exactly (they are enforced fail-closed). */
  readonly errors: readonly { readonly policy: string; readonly error: string }[];
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
