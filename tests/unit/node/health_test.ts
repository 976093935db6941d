import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert/strict";
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

Deno.test("healthHandler() answers 200 only when synced and watching", async () => {
  const s = newStatus();
  const get = (path: string) => healthHandler(s)(new Request(`http://x${path}`));
  assertEquals(get("/healthz").status, 503);
  s.synced = true;
  assertEquals(get("/healthz").status, 503);
  s.watching = true;
  const res = get("/healthz");
  assertEquals(res.status, 200);
  assertEquals((await res.json()).ok, true);
  assertEquals(get("/nope").status, 404);
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
  const res = healthHandler(s)(new Request("http://x/healthz"));
  assertEquals(res.status, 503);
  assertEquals((await res.json()).unreachable, ["node n3 podCIDR 10.244.3.0/24: x"]);
});
