// Shared set-up for the ClusterNetworkPolicy tests: policies written as their JSON and read by the
// real parser, and the API documentation's examples (network-policy-api v0.2.0,
// site-src/user-story-examples/user-story-*.yaml, shown in site-src/reference/examples.md).
import { parseIp } from "../../../lib/ip/cidr.ts";
import {
  type ClusterPolicyEntry,
  parseClusterNetworkPolicy,
} from "../../../lib/kube/cluster_network_policy.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { explainFlow } from "../../../lib/policy/explain.ts";
import { type PolicyObjects, policyObjects } from "../../../lib/policy/nft_rules.ts";
import type { Explanation, FlowQuery } from "../../../lib/policy/plan.ts";
import { forwardVerdict } from "./table_walk.ts";

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

/** `state` with these ClusterNetworkPolicies (and, when given, node labels). */
export function withCluster(
  state: PolicyState,
  entries: ClusterPolicyEntry[],
  nodeLabels?: Record<string, Record<string, string>>,
): PolicyState {
  return {
    ...state,
    clusterPolicies: new Map(entries.map((e) => [e.policy.name, e])),
    nodeLabels: nodeLabels === undefined ? state.nodeLabels : new Map(Object.entries(nodeLabels)),
  };
}

/**
 * What the rendered tables do with the flow's first packet, on the addresses explain chose: the
 * forward hook of the source pod's node (egress, and ingress when the destination is there too),
 * then of the destination pod's node when it is another one. A destination that is the source's
 * own node (or a host-network pod there) is that node's input, never forwarded: allowed. Without
 * `objectsOn`, the tables with and without the flow log, which must agree.
 */
export function tablesAllow(
  state: PolicyState,
  query: FlowQuery,
  e: Explanation,
  objectsOn?: (node: string) => PolicyObjects,
): boolean {
  if (objectsOn) return tablesAllowWith(state, query, e, objectsOn);
  // Both renderings: the flow log's deny paths (Deny rules as chains of their own) must decide
  // exactly what the plain ones do.
  const plain = tablesAllowWith(
    state,
    query,
    e,
    (node) => policyObjects(compilePolicies(state, { node })),
  );
  const logged = tablesAllowWith(
    state,
    query,
    e,
    (node) => policyObjects(compilePolicies(state, { node }), { flowLog: true }),
  );
  if (plain !== logged) {
    throw new Error(
      `${query.from} -> ${query.to} ${query.protocol} ${query.port}: the tables say ${plain}, ` +
        `with the flow log ${logged}`,
    );
  }
  return plain;
}

function tablesAllowWith(
  state: PolicyState,
  query: FlowQuery,
  e: Explanation,
  objectsOn: (node: string) => PolicyObjects,
): boolean {
  const src = state.pods.get(query.from) ?? podOwning(state, e.src);
  const dst = state.pods.get(query.to) ?? podOwning(state, e.dst);
  const packet = {
    src: parseIp(e.src),
    dst: parseIp(e.dst),
    protocol: query.protocol,
    port: query.port,
  };
  const srcNode = src && !src.hostNetwork ? src.node : undefined;
  const dstNode = dst && !dst.hostNetwork ? dst.node : undefined;
  const ownNode = srcNode !== undefined &&
    (state.nodes?.get(srcNode) ?? []).some((ip) => parseIp(ip).value === packet.dst.value);
  if (ownNode || (dst?.hostNetwork && dst.node === srcNode)) return true;
  const nodes = [...new Set([srcNode, dstNode].filter((n) => n !== undefined))];
  return nodes.every((node) => forwardVerdict(objectsOn(node), packet) === "accept");
}

function podOwning(state: PolicyState, ip: string) {
  return [...state.pods.values()].find((p) => !p.hostNetwork && p.ips.includes(ip));
}

/**
 * explain's answer, after checking that the rendered tables agree with it (the renderer and
 * explain are two readings of one plan: a disagreement is a bug in one of them).
 */
export function explainChecked(
  state: PolicyState,
  query: FlowQuery,
  objectsOn?: (node: string) => PolicyObjects,
): Explanation {
  const e = explainFlow(state, query);
  const tables = tablesAllow(state, query, e, objectsOn);
  if (tables !== e.allowed) {
    throw new Error(
      `${query.from} -> ${query.to} ${query.protocol} ${query.port}: explain says ${e.allowed} ` +
        `(egress: ${e.egress.reason}; ingress: ${e.ingress.reason}), the tables ${tables}`,
    );
  }
  return e;
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
