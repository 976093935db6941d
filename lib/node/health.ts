// What the agent reports about itself: /healthz (synced and watching) and /metrics (Prometheus
// text format), both read from one plain status object the agent updates.

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
    routesHostGw: 0,
    routesVxlan: 0,
    unreachable: [],
  };
}

const METRICS: readonly [keyof AgentStatus, string, "gauge" | "counter", string][] = [
  [
    "nodesKnown",
    "mycni_nodes_known",
    "gauge",
    "Nodes with a podCIDR and an address in the node list",
  ],
  [
    "routesProgrammed",
    "mycni_routes_programmed",
    "gauge",
    "Routes to other nodes' podCIDRs in the kernel",
  ],
  ["reconciles", "mycni_reconciles_total", "counter", "Reconciles of routes and rules run"],
  ["routeChanges", "mycni_route_changes_total", "counter", "Routes added, replaced or deleted"],
  [
    "errors",
    "mycni_errors_total",
    "counter",
    "Failed reconciles, route changes and node source errors",
  ],
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
];

/**
 * The Prometheus text exposition of `status`.
 *
 * @example
 * renderMetrics(newStatus()).includes("mycni_nodes_known 0"); // true
 */
export function renderMetrics(status: AgentStatus): string {
  return METRICS.map(([key, name, type, help]) => {
    const v = status[key];
    const value = typeof v === "boolean" ? (v ? 1 : 0) : Number(v);
    return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
  }).join("") + renderBackendMetrics(status);
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

/** Answers /healthz and /metrics from `status`. */
export function healthHandler(status: AgentStatus): (req: Request) => Response {
  return (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(renderMetrics(status), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    if (path === "/healthz" || path === "/readyz") {
      const ok = status.synced && status.watching;
      const body = {
        ok,
        synced: status.synced,
        watching: status.watching,
        nodes: status.nodesKnown,
        routes: status.routesProgrammed,
        lastSyncTime: status.lastSyncTime,
        lastError: status.lastError,
        unreachable: status.unreachable,
      };
      return new Response(JSON.stringify(body) + "\n", {
        status: ok ? 200 : 503,
        headers: { "content-type": "application/json" },
      });
    }
    return new Response("not found\n", { status: 404 });
  };
}
