// Agent faults: the built agent (bin/mycni-init) in a node namespace of its own, against an API
// server that is down at start, drops its watch, expires it (410 Gone), sends garbage and dies
// mid-stream; and against a kernel that refuses one route change mid-reconcile.
// The agent must keep the last good routes, retry with backoff, and say what is wrong in
// /healthz and /metrics.
import { join } from "node:path";
import { run } from "../../lib/process/run.ts";
import {
  agentArgv,
  curl,
  fakeApiServer,
  makeAgentNode,
  ourRoutes,
  spawnIn,
  waitFor,
  writeNodes,
} from "../harness/agent_node.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns } from "../harness/netns.ts";

const API = "http://127.0.0.1:6443";
const HEALTH = "http://127.0.0.1:9749";

const NODES = [
  { name: "n1", ip: "192.0.2.11", podCIDRs: ["10.244.1.0/24"] },
  { name: "n2", ip: "192.0.2.12", podCIDRs: ["10.244.2.0/24"] },
  { name: "n3", ip: "192.0.2.13", podCIDRs: ["10.244.3.0/24"] },
];
const GOOD_ROUTES = ["10.244.2.0/24 via 192.0.2.12", "10.244.3.0/24 via 192.0.2.13"];
/** How long a wait gives the agent unless a step says otherwise. */
const WAIT = { ms: 8000 };

async function health(ns: TempNetns): Promise<{ code: number; lastError: string }> {
  const r = await curl(ns, `${HEALTH}/healthz`);
  let lastError = "";
  try {
    lastError = JSON.parse(r.text).lastError ?? "";
  } catch { /* not up yet */ }
  return { code: r.code, lastError };
}

async function metric(ns: TempNetns, name: string): Promise<number> {
  const text = (await curl(ns, `${HEALTH}/metrics`)).text;
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** The retry delays of the agent's "watch failed" log lines for nodes, in order. */
function retryDelays(logs: readonly string[]): number[] {
  return logs.map((l) => JSON.parse(l)).filter((l) =>
    l.msg === "watch failed" && l.resource === "nodes"
  )
    .map((l) => Number(l.retryInMs));
}

Deno.test({
  name:
    "mycni-init rides out an API server that is down, drops, expires, sends garbage and dies, keeping its routes",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode({ nodes: NODES, prefix: "mcr" });
  const { ns, dir } = node;
  const faults: string[] = [];
  // 1. Nothing listens yet: the agent backs off, is unhealthy and says why.
  await using agent = spawnIn(ns, agentArgv(dir, ["--kube-api", API]));
  await waitFor("three failed lists", () => retryDelays(agent.logs).length >= 3, WAIT);
  const delays = retryDelays(agent.logs);
  for (let i = 1; i < delays.length; i++) {
    assert(delays[i] >= delays[i - 1] * 2 || delays[i] === 30_000, `no backoff: ${delays}`);
  }
  const down = await health(ns);
  assertEquals(down.code, 503);
  assertMatch(
    down.lastError,
    /list (nodes|pods|namespaces|networkpolicies|clusternetworkpolicies): /,
  );
  assert(await metric(ns, "mycni_errors_total") >= 3, "errors not counted in /metrics");
  assertEquals(await metric(ns, "mycni_watching"), 0);
  assertEquals(await ourRoutes(ns), []);
  faults.push(`unreachable at start (backoff ${delays.join("→")} ms)`);

  // 2. The API comes up: synced, watching, routes in.
  let server = fakeApiServer(ns, { nodesFile: join(dir, "nodes.json") });
  try {
    await waitFor(
      "healthz 200 once the API is up",
      async () => (await health(ns)).code === 200,
      { ms: 20000 },
    );
    assertEquals(await ourRoutes(ns), GOOD_ROUTES);

    // 3. Every watch fault: routes never move, errors are counted, and it comes back.
    for (const fault of ["drop", "garbage", "expire+drop"]) {
      const errorsBefore = await metric(ns, "mycni_errors_total");
      for (const action of fault.split("+")) {
        await curl(ns, `${API}/_test/${action}`, { method: "POST" });
      }
      await curl(ns, `${API}/_test/nodes/n4`, {
        method: "PUT",
        body: JSON.stringify({ ip: "192.0.2.14", podCIDRs: [`10.244.4.0/24`] }),
      });
      assertEquals((await ourRoutes(ns)).filter((r) => !r.startsWith("10.244.4.")), GOOD_ROUTES);
      await waitFor(
        `n4 seen after ${fault}`,
        async () => (await ourRoutes(ns)).includes("10.244.4.0/24 via 192.0.2.14"),
        { ms: 15000 },
      );
      await curl(ns, `${API}/_test/nodes/n4`, { method: "DELETE" });
      await waitFor(
        `n4 gone after ${fault}`,
        async () => (await ourRoutes(ns)).length === GOOD_ROUTES.length,
        WAIT,
      );
      await waitFor(
        `healthz 200 after ${fault}`,
        async () => (await health(ns)).code === 200,
        WAIT,
      );
      if (fault === "garbage") {
        assert(await metric(ns, "mycni_errors_total") > errorsBefore, "garbage not counted");
      }
      faults.push(fault);
    }
    assert(agent.logs.some((l) => l.includes("expired, listing again")), "410 not handled");

    // 4. The API server dies mid-stream: routes stay, /healthz and /metrics say so.
    await server.stop("SIGKILL");
    await waitFor(
      "healthz 503 with the API dead",
      async () => (await health(ns)).code === 503,
      WAIT,
    );
    assertEquals(await metric(ns, "mycni_watching"), 0);
    assertMatch((await health(ns)).lastError, /nodes|pods|namespaces|networkpolicies/);
    await new Promise((r) => setTimeout(r, 1500));
    assertEquals(await ourRoutes(ns), GOOD_ROUTES);
    faults.push("server killed mid-stream");
    server = fakeApiServer(ns, { nodesFile: join(dir, "nodes.json") });
    await waitFor(
      "healthz 200 after the API is back",
      async () => (await health(ns)).code === 200,
      { ms: 40000 },
    );
    assertEquals(await ourRoutes(ns), GOOD_ROUTES);
  } finally {
    await server.stop();
  }
  assertEquals(await agent.stop(), 0);
  for (const line of agent.logs) JSON.parse(line);
  console.log(
    `reliability agent-faults (API): ${faults.length} faults injected (${faults.join(", ")}); ` +
      `routes kept through all, ${await errorsOf(
        agent.logs,
      )} errors logged, healthy again after each`,
  );
});

function errorsOf(logs: readonly string[]): number {
  return logs.filter((l) => l.includes('"level":"error"')).length;
}

Deno.test({
  name: "mycni-init applies every other change when the kernel refuses one route, and retries it",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await makeAgentNode({ nodes: NODES, prefix: "mcr" });
  const { ns, dir } = node;
  await using agent = spawnIn(ns, agentArgv(dir, ["--nodes-file", join(dir, "nodes.json")]));
  await waitFor("healthz 200", async () => (await health(ns)).code === 200, WAIT);
  assertEquals(await ourRoutes(ns), GOOD_ROUTES);

  // Someone else's route already holds n0's podCIDR: the kernel refuses our (exclusive) add with
  // EEXIST. n0 sorts first, so its change is tried before the others: n2's move must still go
  // through in the same reconcile, the foreign route must stay as it is, and the failure must
  // show in /healthz and /metrics.
  const foreign = ["10.244.4.0/24", "via", "192.0.2.99", "proto", "static"];
  await run(ns.exec(["ip", "route", "add", ...foreign]));
  await writeNodes(dir, [
    NODES[0],
    { ...NODES[1], ip: "192.0.2.22" },
    NODES[2],
    { name: "n0", ip: "192.0.2.14", podCIDRs: ["10.244.4.0/24"] },
  ]);
  await waitFor(
    "healthz 503 after the refused route",
    async () => (await health(ns)).code === 503,
    WAIT,
  );
  const bad = await health(ns);
  assertMatch(bad.lastError, /10\.244\.4\.0\/24/);
  assertMatch(bad.lastError, /File exists/);
  assertEquals(await ourRoutes(ns), ["10.244.2.0/24 via 192.0.2.22", GOOD_ROUTES[1]]);
  assertMatch(await run(ns.exec(["ip", "route", "show", "10.244.4.0/24"])), /via 192\.0\.2\.99/);
  assertEquals(await metric(ns, "mycni_synced"), 0);
  const errors = await metric(ns, "mycni_errors_total");
  assert(errors >= 1, "the failure is not counted in /metrics");

  // The foreign route goes away without any node change: only the agent's own retry can bring
  // n0's route in.
  await run(ns.exec(["ip", "route", "del", ...foreign]));
  // Failed reconciles are retried with backoff (0.5 s doubling), well before the 10 s resync.
  const fixedAt = performance.now();
  await waitFor(
    "n0's route on retry",
    async () => (await ourRoutes(ns)).includes("10.244.4.0/24 via 192.0.2.14"),
    { ms: 9000 },
  );
  const healMs = Math.round(performance.now() - fixedAt);
  await waitFor("healthz 200 after the retry", async () => (await health(ns)).code === 200, WAIT);
  assertEquals(await metric(ns, "mycni_synced"), 1);
  assertEquals(await agent.stop(), 0);
  const failedLines = agent.logs.filter((l) => l.includes("route change failed")).length;
  console.log(
    `reliability agent-faults (kernel): 1 route refused mid-reconcile (${failedLines} failed ` +
      `attempts logged, ${errors} errors in /metrics), the other changes made and the foreign ` +
      `route kept, healed by the agent's retry ${healMs} ms after the route was freed`,
  );
});
