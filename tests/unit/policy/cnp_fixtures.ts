// Shared set-up for the ClusterNetworkPolicy tests: policies written as their JSON and read by the
// real parser, and the API documentation's examples (network-policy-api v0.2.0,
// site-src/user-story-examples/user-story-*.yaml, shown in site-src/reference/examples.md).
import {
  type ClusterPolicyEntry,
  parseClusterNetworkPolicy,
} from "../../../lib/kube/cluster_network_policy.ts";

/** The JSON object of a ClusterNetworkPolicy named `name`. */
export function cnpObject(name: string, spec: unknown): unknown {
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name },
    spec,
  };
}

/** A policy entry from its spec, through the real parser (errors included, as the agent has it). */
export function cnp(name: string, spec: unknown): ClusterPolicyEntry {
  const parsed = parseClusterNetworkPolicy(cnpObject(name, spec));
  if (!parsed.ok) throw new Error(`fixture cluster policy ${name}: ${parsed.reason}`);
  return parsed.entry;
}

const byName = (name: string) => ({ matchLabels: { "kubernetes.io/metadata.name": name } });

/** The API documentation's examples, as JSON objects (story 4's peer is left empty upstream). */
export const DOC_EXAMPLES = {
  /** Story 1: deny traffic at a cluster level. */
  story1: cnpObject("cluster-wide-deny-example", {
    tier: "Admin",
    priority: 10,
    subject: { namespaces: byName("sensitive-ns") },
    ingress: [{
      action: "Deny",
      from: [{ namespaces: { matchLabels: {} } }],
      name: "select-all-deny-all",
    }],
  }),
  /** Story 2: allow traffic at a cluster level. */
  story2: cnpObject("cluster-wide-allow-example", {
    tier: "Admin",
    priority: 30,
    subject: { namespaces: {} },
    ingress: [{
      action: "Accept",
      name: "allow-monitoring-ns-ingress",
      from: [{ namespaces: byName("monitoring-ns") }],
    }],
    egress: [{
      action: "Accept",
      name: "allow-kube-dns-egress",
      to: [{
        pods: {
          namespaceSelector: byName("kube-system"),
          podSelector: { matchLabels: { app: "kube-dns" } },
        },
      }],
    }],
  }),
  /** Story 3: explicitly delegate traffic to NetworkPolicy. */
  story3: cnpObject("pub-svc-delegate-example", {
    tier: "Admin",
    priority: 20,
    subject: { namespaces: {} },
    egress: [{
      action: "Pass",
      to: [{
        pods: {
          namespaceSelector: byName("bar-ns-1"),
          podSelector: { matchLabels: { app: "svc-pub" } },
        },
      }],
      protocols: [
        { tcp: { destinationPort: { number: 8080 } } },
        { destinationNamedPort: "web-alt" },
        { udp: { destinationPort: { number: 53 } } },
      ],
    }],
  }),
  /** Story 4 (v2): "currently not implementable": the inter-tenant peer is empty. */
  story4: cnpObject("tenant-creation-example", {
    tier: "Admin",
    priority: 50,
    subject: { namespaces: { matchExpressions: [{ key: "tenant", operator: "Exists" }] } },
    ingress: [
      { action: "Pass", from: [{ namespaces: null }] },
      { action: "Deny", from: [{ namespaces: {} }] },
    ],
  }),
  /** Story 5: cluster-wide default guardrails. */
  story5: cnpObject("default", {
    tier: "Baseline",
    priority: 10,
    subject: { namespaces: {} },
    ingress: [{ action: "Deny", from: [{ namespaces: {} }] }],
  }),
};
