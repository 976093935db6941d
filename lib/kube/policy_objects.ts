// The Kubernetes objects NetworkPolicy is computed from, as the agent keeps them: v1.Pod,
// v1.Namespace and networking.k8s.io/v1.NetworkPolicy reduced to the fields policy reads
// (DESIGN.md "NetworkPolicy", contract — inputs). Parsers live beside each type's JSON shape:
// lib/kube/pod.ts, lib/kube/namespace.ts, lib/kube/network_policy.ts.

/** A protocol a NetworkPolicy port can name. */
export type Protocol = "TCP" | "UDP" | "SCTP";

/** Every {@linkcode Protocol}, as the API spells them: what the parsers and `explain` accept. */
export const PROTOCOLS: readonly string[] = ["TCP", "UDP", "SCTP"] satisfies Protocol[];

/** A direction of isolation. */
export type Direction = "ingress" | "egress";

/** `spec.containers[].ports[]` entry of a pod: the target of named ports. */
export interface ContainerPort {
  /** "" when the port has no name (it can still be matched by number). */
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

/** A pod as policy sees it. */
export interface PodInfo {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** `spec.nodeName`; "" while unscheduled. */
  readonly node: string;
  /**
   * `status.podIPs` (else `status.podIP`) in canonical text, IPv4 first. Empty for a pod without
   * addresses and for a pod in phase Succeeded or Failed (its addresses may already be another
   * pod's).
   */
  readonly ips: readonly string[];
  /** `spec.hostNetwork`: such a pod is never a policy target nor a pod peer. */
  readonly hostNetwork: boolean;
  readonly ports: readonly ContainerPort[];
}

/** A namespace as policy sees it: its name and labels. */
export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** One `matchExpressions` entry. */
export interface LabelRequirement {
  readonly key: string;
  readonly operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  /** Non-empty for In and NotIn, empty for Exists and DoesNotExist. */
  readonly values: readonly string[];
}

/** A metav1.LabelSelector; both parts empty selects everything. */
export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelRequirement[];
}

/** The selector with no requirement: it selects every label set. */
export const SELECT_ALL: LabelSelector = { matchLabels: {}, matchExpressions: [] };

/**
 * One `from`/`to` entry. `pods` and `namespaces` together select pods matching `pods` in
 * namespaces matching `namespaces` (AND); `pods` alone means the policy's own namespace;
 * `namespaces` alone means every pod of the matching namespaces.
 */
export type PolicyPeer =
  | { readonly pods?: LabelSelector; readonly namespaces?: LabelSelector }
  | { readonly ipBlock: { readonly cidr: string; readonly except: readonly string[] } };

/** One `ports` entry: a number (with an optional `endPort`), a name, or every port. */
export interface PolicyPort {
  readonly protocol: Protocol;
  /** Absent: every port of `protocol`. A string is a named port. */
  readonly port?: number | string;
  /** Only with a numeric `port`: the range `port`..`endPort`. */
  readonly endPort?: number;
}

/** One ingress or egress rule. */
export interface PolicyRule {
  /** `from` (ingress) or `to` (egress); undefined or empty means every peer. */
  readonly peers?: readonly PolicyPeer[];
  /** undefined or empty means every port. */
  readonly ports?: readonly PolicyPort[];
}

/** A NetworkPolicy, validated. */
export interface NetworkPolicy {
  readonly namespace: string;
  readonly name: string;
  readonly podSelector: LabelSelector;
  /** `policyTypes` as given, or inferred (ingress always, egress when egress rules exist). */
  readonly types: { readonly ingress: boolean; readonly egress: boolean };
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

/**
 * A policy as the agent holds it. When the object cannot be enforced exactly (an invalid CIDR,
 * an unknown protocol, a malformed selector), `error` says why and `policy` is the fail-closed
 * version: the targets it would have (every pod of its namespace when even `podSelector` is
 * unreadable), isolated in the directions it names (both when unreadable), with no rules.
 */
export interface PolicyEntry {
  readonly policy: NetworkPolicy;
  readonly error?: string;
}

/** `namespace/name`, the key the agent uses for pods and policies. */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
