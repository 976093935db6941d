import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
import { FlowLog } from "../../../lib/node/flow_log.ts";
import { healthHandler, newStatus, renderMetrics } from "../../../lib/node/health.ts";

Deno.test("renderMetrics() prints every counter in Prometheus text format", () => {
  const s = {
    ...newStatus(),
    nodesKnown: 3,
    routesProgrammed: 2,
    synced: true,
    lastSyncTime: 1700000000.5,
  };
  const text = renderMetrics(s);
  assertMatch(text, /^# TYPE mycni_nodes_known gauge\nmycni_nodes_known 3$/m);
  assertMatch(text, /^mycni_routes_programmed 2$/m);
  assertMatch(text, /^mycni_reconciles_total 0$/m);
  assertMatch(text, /^mycni_errors_total 0$/m);
  assertMatch(text, /^mycni_last_sync_timestamp_seconds 1700000000.5$/m);
  assertMatch(text, /^mycni_synced 1$/m);
});

Deno.test("healthHandler() answers 200 only when synced, watching and the plugin runs", async () => {
  const s = newStatus();
  const get = (path: string) => Promise.resolve(healthHandler(s)(new Request(`http://x${path}`)));
  assertEquals((await get("/healthz")).status, 503);
  s.synced = true;
  s.pluginRuns = true;
  assertEquals((await get("/healthz")).status, 503);
  s.watching = true;
  const res = await get("/healthz");
  assertEquals(res.status, 200);
  assertEquals((await res.json()).ok, true);
  assertEquals((await get("/nope")).status, 404);
});

Deno.test("healthHandler() is not ok while the installed plugin cannot run", async () => {
  const s = { ...newStatus(), synced: true, watching: true, pluginRuns: false };
  const res = await healthHandler(s)(new Request("http://x/healthz"));
  assertEquals(res.status, 503);
  assertEquals((await res.json()).pluginRuns, false);
  assertMatch(renderMetrics(s), /^mycni_plugin_runs 0$/m);
});

Deno.test("healthHandler() with NetworkPolicy is ok only when policy is synced and bridged traffic is policed", async () => {
  const s = { ...newStatus(), synced: true, watching: true, pluginRuns: true, policyEnabled: true };
  const status = async () => (await healthHandler(s)(new Request("http://x/healthz"))).status;
  assertEquals(await status(), 503);
  s.policySynced = true;
  assertEquals(await status(), 200);
  s.brNetfilter = false;
  const res = await healthHandler(s)(new Request("http://x/healthz"));
  assertEquals(res.status, 503);
  assertEquals((await res.json()).policy.brNetfilter, false);
});

Deno.test("/metrics reports policy gauges and drops per direction", async () => {
  const s = { ...newStatus(), policyEnabled: true, policies: 7, policyTargets: 3 };
  const h = healthHandler(s, { drops: () => Promise.resolve({ ingress: 5, egress: 2 }) });
  const text = await (await h(new Request("http://x/metrics"))).text();
  assertMatch(text, /^mycni_policies 7$/m);
  assertMatch(text, /^mycni_policy_targets 3$/m);
  assertMatch(text, /^mycni_policy_drops_total\{direction="ingress"\} 5$/m);
  assertMatch(text, /^mycni_policy_drops_total\{direction="egress"\} 2$/m);
});

Deno.test("/explain answers loopback clients only, and 400 on a bad question", async () => {
  const e = {
    allowed: true,
    src: "10.244.1.2",
    dst: "10.244.2.3",
    egress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for egress" },
    ingress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for ingress" },
  };
  const h = healthHandler(newStatus(), { explain: () => e });
  const from = (hostname: string) =>
    ({ remoteAddr: { transport: "tcp", hostname, port: 1 } }) as unknown as Deno.ServeHandlerInfo;
  const q = "http://x/explain?from=x/a&to=y/b&port=80&protocol=TCP";
  assertEquals((await h(new Request(q), from("127.0.0.1"))).status, 200);
  assertEquals((await (await h(new Request(q), from("::1"))).json()).allowed, true);
  assertEquals((await h(new Request(q), from("192.0.2.5"))).status, 403);
  assertEquals((await h(new Request("http://x/explain?from=x/a&to=y/b"), from("::1"))).status, 400);
});

Deno.test("renderMetrics() counts routes per backend and unreachable peer podCIDRs", () => {
  const s = { ...newStatus(), routesHostGw: 2, routesVxlan: 4, unreachable: ["n3: why"] };
  const text = renderMetrics(s);
  assertMatch(text, /^# TYPE mycni_backend_routes gauge$/m);
  assertMatch(text, /^mycni_backend_routes\{backend="host-gw"\} 2$/m);
  assertMatch(text, /^mycni_backend_routes\{backend="vxlan"\} 4$/m);
  assertMatch(text, /^mycni_unreachable_peer_cidrs 1$/m);
});

Deno.test("healthHandler() names the unreachable peers in /healthz", async () => {
  const s = { ...newStatus(), watching: true, unreachable: ["node n3 podCIDR 10.244.3.0/24: x"] };
  const res = await healthHandler(s)(new Request("http://x/healthz"));
  assertEquals(res.status, 503);
  assertEquals((await res.json()).unreachable, ["node n3 podCIDR 10.244.3.0/24: x"]);
});

Deno.test("/metrics and /healthz report ClusterNetworkPolicies per tier, errors and whether they are served", async () => {
  const s = {
    ...newStatus(),
    policyEnabled: true,
    clusterPoliciesAdmin: 3,
    clusterPoliciesBaseline: 1,
    clusterPolicyErrors: 2,
  };
  const text = renderMetrics(s);
  assertMatch(text, /^mycni_cluster_network_policies\{tier="Admin"\} 3$/m);
  assertMatch(text, /^mycni_cluster_network_policies\{tier="Baseline"\} 1$/m);
  assertMatch(text, /^mycni_cluster_network_policy_errors 2$/m);
  assertMatch(text, /^mycni_cluster_network_policy_served 0$/m);
  s.clusterPolicyServed = true;
  assertMatch(renderMetrics(s), /^mycni_cluster_network_policy_served 1$/m);
  const body = await (await healthHandler(s)(new Request("http://x/healthz"))).json();
  assertEquals(body.policy.clusterNetworkPolicies, {
    served: true,
    Admin: 3,
    Baseline: 1,
    errors: 2,
  });
});

Deno.test("/flows serves the flow log to loopback clients, and /metrics adds the flow log's lines", async () => {
  const flowLog = new FlowLog({
    rate: 10,
    attribution: () => ({ podOf: () => undefined, decider: () => undefined }),
  });
  flowLog.add({
    prefix: "mycni:i:0123456789abcdef",
    time: 0,
    src: "10.0.0.1",
    dst: "10.0.0.2",
    proto: 6,
    dport: 80,
  });
  const handler = healthHandler(newStatus(), {
    flowLog,
    moreMetrics: () => Promise.resolve("mycni_flow_log_records_total 1\n"),
  });
  const local = { remoteAddr: { hostname: "127.0.0.1", port: 1, transport: "tcp" } };
  const away = { remoteAddr: { hostname: "192.0.2.1", port: 1, transport: "tcp" } };
  const ask = (path: string, info = local) =>
    Promise.resolve(handler(new Request(`http://x${path}`), info as Deno.ServeHandlerInfo));
  const res = await ask("/flows");
  assertEquals(res.status, 200);
  assertEquals(JSON.parse(await res.text()).dst, "10.0.0.2");
  assertEquals((await ask("/flows", away)).status, 403);
  assertMatch(await (await ask("/metrics")).text(), /^mycni_flow_log_records_total 1$/m);
  // The flow log off: /flows says so.
  const off = await healthHandler(newStatus())(new Request("http://x/flows"));
  assertEquals(off.status, 404);
  await off.body?.cancel();
});
