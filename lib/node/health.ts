// What the agent reports about itself: /healthz (synced and watching, NetworkPolicy enforced when
// on), /metrics (Prometheus text format), /explain and /flows (loopback only: the answers to
// `mycni-init explain` and `mycni-init flows`), all read from one plain status object the agent
// updates.
import type { Explanation, FlowQuery } from "../policy/plan.ts";
import { type FlowLog, flowsResponse } from "./flow_log.ts";

/** The agent's health and counters. */
export interface AgentStatus {
  /** The last reconcile succeeded and this node's own podCIDRs are known. */
  synced: boolean;
  /** The node source (file poll or API watch) is up. */
  watching: boolean;
  nodesKnown: number;
  routesProgrammed: number;
  reconciles: number;
  routeChanges: number;
  errors: number;
  /** Unix seconds of the last successful reconcile, 0 before the first. */
  lastSyncTime: number;
  lastReconcileSeconds: number;
  lastError: string;
  /** `--network-policy` and a source that has policies (API mode). */
  policyEnabled: boolean;
  /** Pods, namespaces and policies listed, and the rules from them in the kernel. */
  policySynced: boolean;
  /** Bridged traffic reaches the forward hook (same-node pod traffic is policed). */
  brNetfilter: boolean;
  policies: number;
  /** Policies that cannot be enforced exactly, enforced fail-closed. */
  policyErrors: number;
  /**
   * This node's pods some policy applies to: isolated by a NetworkPolicy or selected by a
   * ClusterNetworkPolicy (either gives the pod its own chains).
   */
  policyTargets: number;
  /** ClusterNetworkPolicies known, per tier. */
  clusterPoliciesAdmin: number;
  clusterPoliciesBaseline: number;
  /** ClusterNetworkPolicies that cannot be enforced exactly, enforced fail-closed. */
  clusterPolicyErrors: number;
  /** The API serves clusternetworkpolicies (the CRD is installed): 0 while it answers 404. */
  clusterPolicyServed: boolean;
  /** Rules in the per-pod chains (what a packet can walk is a part of these). */
  policyRules: number;
  /** nftables transactions applied (changes of the agent's table). */
  nftChanges: number;
  /**
   * The newest resourceVersion of nodes, pods, namespaces, NetworkPolicies and
   * ClusterNetworkPolicies whose effect the kernel holds ("" before the first policy sync): a test that wrote an object at resourceVersion N
   * knows this agent enforces it once this is N or later.
   */
  policyResourceVersion: string;
  /** Compile and apply time of the last policy change, in seconds. */
  lastPolicySyncSeconds: number;
  /** The last installed plugin answered VERSION as a runtime would call it. */
  pluginRuns: boolean;
  // Backends (DESIGN.md "Backends"): how the routes to other nodes' podCIDRs are made.
  /** Routes to peer podCIDRs via the peer's address (on-link). */
  routesHostGw: number;
  /** Routes to peer podCIDRs through the VXLAN device. */
  routesVxlan: number;
  /** Peer podCIDRs that get no route, each with why (e.g. `--backend host-gw`, not on-link). */
  unreachable: string[];
}

/** A fresh status: not synced, not watching, all counters zero. */
export function newStatus(): AgentStatus {
  return {
    synced: false,
    watching: false,
    nodesKnown: 0,
    routesProgrammed: 0,
    reconciles: 0,
    routeChanges: 0,
    errors: 0,
    lastSyncTime: 0,
    lastReconcileSeconds: 0,
    lastError: "",
    policyEnabled: false,
    policySynced: false,
    brNetfilter: true,
    policies: 0,
    policyErrors: 0,
    policyTargets: 0,
    clusterPoliciesAdmin: 0,
    clusterPoliciesBaseline: 0,
    clusterPolicyErrors: 0,
    clusterPolicyServed: false,
    policyRules: 0,
    nftChanges: 0,
    policyResourceVersion: "",
    lastPolicySyncSeconds: 0,
    pluginRuns: false,
    routesHostGw: 0,
    routesVxlan: 0,
    unreachable: [],
  };
}

/** Whether the agent is healthy: what /healthz answers 200 for. */
export function isHealthy(s: AgentStatus): boolean {
  return s.synced && s.watching && s.pluginRuns &&
    (!s.policyEnabled || (s.policySynced && s.brNetfilter));
}

const METRICS: readonly [keyof AgentStatus, string, "gauge" | "counter", string][] = [
  ["nodesKnown", "mycni_nodes_known", "gauge", "Nodes with a podCIDR and an address"],
  ["routesProgrammed", "mycni_routes_programmed", "gauge", "Routes to other nodes' podCIDRs"],
  ["reconciles", "mycni_reconciles_total", "counter", "Reconciles of routes and rules run"],
  ["routeChanges", "mycni_route_changes_total", "counter", "Routes added, replaced or deleted"],
  ["errors", "mycni_errors_total", "counter", "Failed reconciles, changes and source errors"],
  [
    "lastSyncTime",
    "mycni_last_sync_timestamp_seconds",
    "gauge",
    "Unix time of the last successful sync",
  ],
  [
    "lastReconcileSeconds",
    "mycni_last_reconcile_duration_seconds",
    "gauge",
    "Duration of the last reconcile",
  ],
  ["synced", "mycni_synced", "gauge", "1 when the last reconcile succeeded"],
  ["watching", "mycni_watching", "gauge", "1 when the node source is being watched"],
  ["pluginRuns", "mycni_plugin_runs", "gauge", "1 when the installed plugin answers VERSION"],
  ["policyEnabled", "mycni_policy_enabled", "gauge", "1 when NetworkPolicy is enforced"],
  ["policySynced", "mycni_policy_synced", "gauge", "1 when the policy rules are in the kernel"],
  ["brNetfilter", "mycni_br_netfilter", "gauge", "1 when bridged traffic is policed"],
  ["policies", "mycni_policies", "gauge", "NetworkPolicies known"],
  ["policyErrors", "mycni_policy_errors", "gauge", "Policies enforced fail-closed (invalid)"],
  [
    "policyTargets",
    "mycni_policy_targets",
    "gauge",
    "This node's pods a NetworkPolicy isolates or a ClusterNetworkPolicy selects",
  ],
  [
    "clusterPolicyErrors",
    "mycni_cluster_network_policy_errors",
    "gauge",
    "ClusterNetworkPolicies enforced fail-closed (invalid)",
  ],
  [
    "clusterPolicyServed",
    "mycni_cluster_network_policy_served",
    "gauge",
    "1 when the API serves clusternetworkpolicies (the CRD is installed)",
  ],
  ["policyRules", "mycni_policy_rules", "gauge", "Rules in this node's per-pod policy chains"],
  ["nftChanges", "mycni_nft_changes_total", "counter", "nftables transactions applied"],
  [
    "policyResourceVersion",
    "mycni_policy_resource_version",
    "gauge",
    "Newest resourceVersion of nodes, pods, namespaces and policies the kernel enforces",
  ],
  [
    "lastPolicySyncSeconds",
    "mycni_policy_sync_duration_seconds",
    "gauge",
    "Compile and apply time of the last policy change",
  ],
];

/**
 * The Prometheus text exposition of `status`, and the policy drop counters when given
 * (`{ ingress: 3, egress: 0 }`).
 *
 * @example
 * renderMetrics(newStatus()).includes("mycni_nodes_known 0"); // true
 */
export function renderMetrics(
  status: AgentStatus,
  drops?: Readonly<Record<string, number>>,
): string {
  let text = METRICS.map(([key, name, type, help]) => {
    const v = status[key];
    const value = typeof v === "boolean" ? (v ? 1 : 0) : Number(v) || 0;
    return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
  }).join("") + renderClusterPolicyMetrics(status) + renderBackendMetrics(status);
  if (drops) {
    text += "# HELP mycni_policy_drops_total Packets dropped by NetworkPolicy\n" +
      "# TYPE mycni_policy_drops_total counter\n";
    for (const [direction, n] of Object.entries(drops)) {
      text += `mycni_policy_drops_total{direction="${direction}"} ${n}\n`;
    }
  }
  return text;
}

/** ClusterNetworkPolicies per tier (a label). */
function renderClusterPolicyMetrics(status: AgentStatus): string {
  return "# HELP mycni_cluster_network_policies ClusterNetworkPolicies known, by tier\n" +
    "# TYPE mycni_cluster_network_policies gauge\n" +
    `mycni_cluster_network_policies{tier="Admin"} ${status.clusterPoliciesAdmin}\n` +
    `mycni_cluster_network_policies{tier="Baseline"} ${status.clusterPoliciesBaseline}\n`;
}

/** The backend gauges: routes per backend (a label), and peer podCIDRs left unreachable. */
function renderBackendMetrics(status: AgentStatus): string {
  return "# HELP mycni_backend_routes Routes to other nodes' podCIDRs, by backend\n" +
    "# TYPE mycni_backend_routes gauge\n" +
    `mycni_backend_routes{backend="host-gw"} ${status.routesHostGw}\n` +
    `mycni_backend_routes{backend="vxlan"} ${status.routesVxlan}\n` +
    "# HELP mycni_unreachable_peer_cidrs Other nodes' podCIDRs no backend can reach\n" +
    "# TYPE mycni_unreachable_peer_cidrs gauge\n" +
    `mycni_unreachable_peer_cidrs ${status.unreachable.length}\n`;
}

/** What the health server asks the agent for besides the status. */
export interface HealthSources {
  /** Policy drop counters by direction (read from the kernel at scrape time). */
  readonly drops?: () => Promise<Record<string, number>>;
  /** The agent's answer about a flow; throws when it cannot answer. */
  readonly explain?: (q: FlowQuery) => Explanation;
  /** The flow log (`--flow-log denied`), served on /flows (loopback only). */
  readonly flowLog?: FlowLog;
  /** More /metrics lines (the flow log's, strict mode's), read at scrape time. */
  readonly moreMetrics?: () => Promise<string>;
}

/**
 * Answers /healthz, /metrics and /explain from `status`. /explain only answers loopback clients:
 * it tells how the cluster's pods are isolated, which is not for the network to read.
 */
export function healthHandler(
  status: AgentStatus,
  sources: HealthSources = {},
): (req: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response> {
  return async (req, info) => {
    const url = new URL(req.url);
    const path = url.pathname;
    if (path === "/metrics") {
      const drops = status.policyEnabled && sources.drops
        ? await sources.drops().catch(() => undefined)
        : undefined;
      const more = await sources.moreMetrics?.().catch(() => "") ?? "";
      return new Response(renderMetrics(status, drops) + more, {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    if (path === "/healthz" || path === "/readyz") {
      const ok = isHealthy(status);
      const body = {
        ok,
        synced: status.synced,
        watching: status.watching,
        pluginRuns: status.pluginRuns,
        nodes: status.nodesKnown,
        routes: status.routesProgrammed,
        policy: status.policyEnabled
          ? {
            synced: status.policySynced,
            brNetfilter: status.brNetfilter,
            policies: status.policies,
            errors: status.policyErrors,
            targets: status.policyTargets,
            clusterNetworkPolicies: {
              served: status.clusterPolicyServed,
              Admin: status.clusterPoliciesAdmin,
              Baseline: status.clusterPoliciesBaseline,
              errors: status.clusterPolicyErrors,
            },
            resourceVersion: status.policyResourceVersion,
          }
          : undefined,
        lastSyncTime: status.lastSyncTime,
        lastError: status.lastError,
        unreachable: status.unreachable,
      };
      return json(body, ok ? 200 : 503);
    }
    if (path === "/explain") return explainResponse(url, info, sources);
    if (path === "/flows") return flowsResponse(req, info, sources.flowLog);
    return new Response("not found\n", { status: 404 });
  };
}

function explainResponse(
  url: URL,
  info: Deno.ServeHandlerInfo | undefined,
  sources: HealthSources,
): Response {
  const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname ?? "";
  if (info && !isLoopback(remote)) return json({ error: "explain answers loopback only" }, 403);
  if (!sources.explain) return json({ error: "NetworkPolicy is not enforced here" }, 404);
  const q = url.searchParams;
  const protocol = (q.get("protocol") ?? "TCP").toUpperCase();
  const port = Number(q.get("port"));
  if (!q.get("from") || !q.get("to") || !(port >= 1 && port <= 65535)) {
    return json({ error: "explain wants from, to, port (1-65535) and protocol" }, 400);
  }
  if (protocol !== "TCP" && protocol !== "UDP" && protocol !== "SCTP") {
    return json({ error: `unknown protocol "${protocol}"` }, 400);
  }
  try {
    return json(
      sources.explain({ from: q.get("from")!, to: q.get("to")!, port, protocol }),
      200,
    );
  } catch (err) {
    return json({ error: (err as Error).message }, 422);
  }
}

function isLoopback(host: string): boolean {
  return host === "::1" || host.startsWith("127.") || host.startsWith("::ffff:127.");
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}
