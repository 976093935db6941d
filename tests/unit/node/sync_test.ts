import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import type { RoutesReport } from "../../../lib/node/datapath.ts";
import { newStatus } from "../../../lib/node/health.ts";
import { parseAgentArgs } from "../../../lib/node/options.ts";
import { createNodeSync, type NodeSteps } from "../../../lib/node/sync.ts";
import type { TableReport } from "../../../lib/node/table_step.ts";
import { fakeLog } from "./fake_log.ts";

const OPTS = parseAgentArgs(["--node-name", "n1", "--nodes-file", "/nodes.json"], {});
const N1: NodeInfo = { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] };
const N2: NodeInfo = { name: "n2", ips: ["192.0.2.12"], podCIDRs: ["10.244.2.0/24"] };
const NODES = new Map([["n1", N1], ["n2", N2]]);

const ROUTES_OK: RoutesReport = { changes: 1, routes: 1, hostGw: 1, vxlan: 0, unreachable: [] };

/** Steps that record their runs and answer what the test sets (a throw for an Error). */
function fakeSteps() {
  const calls: string[] = [];
  const answers = {
    plugin: { runs: true } as { runs: boolean; problem?: string } | Error,
    forwarding: {} as { brNetfilter?: boolean; problem?: string } | Error,
    table: { changed: true } as TableReport | Error,
    routes: ROUTES_OK as RoutesReport | Error,
  };
  /** Called as the table step runs (what the status says mid-run). */
  const hooks = { table: () => {} };
  const answer = <T>(name: string, a: T | Error): T => {
    calls.push(name);
    if (a instanceof Error) throw a;
    return a;
  };
  const steps: NodeSteps = {
    plugin: { run: (full) => Promise.resolve(answer(`plugin ${full}`, answers.plugin)) },
    conflist: { run: (own) => Promise.resolve(answer(`conflist ${own.name}`, {})) },
    forwarding: { run: () => Promise.resolve(answer("forwarding", answers.forwarding)) },
    table: {
      run: (input) => {
        hooks.table();
        return Promise.resolve(answer(`table ${input.full}`, answers.table));
      },
      explain: () => {
        throw new Error("not in these tests");
      },
      drops: () => Promise.resolve({}),
    },
    forwardChain: { run: () => Promise.resolve(answer("chain", {})) },
    routes: { run: (nodes) => answer(`routes ${nodes.size}`, answers.routes) },
  };
  return { calls, answers, hooks, steps };
}

function sync(policy = false) {
  const f = fakeSteps();
  const status = { ...newStatus(), policyEnabled: policy };
  const log = fakeLog();
  return { ...f, status, log, sync: createNodeSync(OPTS, status, log, f.steps) };
}

Deno.test("createNodeSync() runs every step and puts their reports in the status", async () => {
  const { calls, status, log, sync: s } = sync();
  assertEquals(await s.run({ nodes: NODES }, { full: false, nodesChanged: false }), true);
  // Not full, nothing changed, but the first run re-verifies everything.
  assertEquals(calls, [
    "plugin true",
    "conflist n1",
    "forwarding",
    "table true",
    "chain",
    "routes 2",
  ]);
  assertEquals(status.synced, true);
  assertEquals(status.pluginRuns, true);
  assertEquals(status.nodesKnown, 2);
  assertEquals(status.reconciles, 1);
  assertEquals(status.routesProgrammed, 1);
  assertEquals(status.routeChanges, 1);
  assertEquals(status.routesHostGw, 1);
  assertEquals(status.nftChanges, 1);
  assertEquals(status.errors, 0);
  assertEquals(log.lines("initial sync done").length, 1);
  calls.length = 0;
  assertEquals(await s.run({ nodes: NODES }, { full: false, nodesChanged: false }), true);
  assertEquals(calls, ["plugin false", "conflist n1", "forwarding", "table false", "chain"]);
  assertEquals(status.nftChanges, 2);
  assertEquals(log.lines("initial sync done").length, 1);
});

Deno.test("createNodeSync() runs the other steps when one fails, and says which failed", async () => {
  const { calls, answers, hooks, status, log, sync: s } = sync();
  answers.forwarding = new Error("EACCES: /proc/sys/net/ipv4/ip_forward");
  let midRun = "";
  hooks.table = () => midRun = status.lastError;
  answers.routes = {
    ...ROUTES_OK,
    changes: 2,
    problem: "1 of 3 datapath changes failed, first: x",
  };
  assertEquals(await s.run({ nodes: NODES }, { full: true, nodesChanged: true }), false);
  assertEquals(calls.length, 6);
  assertEquals(midRun, "Cannot enable forwarding: EACCES: /proc/sys/net/ipv4/ip_forward");
  assertEquals(status.synced, false);
  assertEquals(status.errors, 2);
  assertEquals(status.routeChanges, 2, "the changes a failing step made were not counted");
  assertEquals(
    status.lastError,
    "Cannot reconcile routes: 1 of 3 datapath changes failed, first: x",
  );
  assertEquals(log.lines("cannot enable forwarding"), [{
    error: "EACCES: /proc/sys/net/ipv4/ip_forward",
  }]);
  assertEquals(log.lines("initial sync done").length, 0);
  // The next run is still a full one: nothing was verified yet.
  answers.forwarding = {};
  answers.routes = ROUTES_OK;
  calls.length = 0;
  assertEquals(await s.run({ nodes: NODES }, { full: false, nodesChanged: false }), true);
  assertEquals(calls.at(-1), "routes 2");
  assertEquals(status.lastError, "");
});

Deno.test("createNodeSync() is not synced while a peer is unreachable, this node is unknown or policy is not listed", async () => {
  const { answers, status, log, calls, sync: s } = sync(true);
  answers.table = { changed: false, policySynced: false };
  await s.run({ nodes: NODES }, { full: true, nodesChanged: true });
  assertEquals(status.lastError, "Waiting for pods, namespaces and NetworkPolicies to be listed");
  answers.table = {
    changed: true,
    policySynced: true,
    gauges: {
      policies: 3,
      errors: 1,
      targets: 2,
      rules: 5,
      clusterPolicies: { Admin: 4, Baseline: 1 },
      clusterErrors: 1,
    },
  };
  answers.routes = { ...ROUTES_OK, unreachable: ["node n2 podCIDR 10.244.2.0/24: why"] };
  assertEquals(await s.run({ nodes: NODES }, { full: true, nodesChanged: true }), false);
  assertEquals(
    status.lastError,
    "1 peer podCIDR(s) unreachable, first: node n2 podCIDR 10.244.2.0/24: why",
  );
  assertEquals([status.policySynced, status.policies, status.policyErrors, status.policyTargets], [
    true,
    3,
    1,
    2,
  ]);
  assertEquals(
    [status.clusterPoliciesAdmin, status.clusterPoliciesBaseline, status.clusterPolicyErrors],
    [4, 1, 1],
  );
  assertEquals(status.errors, 0, "an unreachable peer is not an error");
  calls.length = 0;
  answers.routes = ROUTES_OK;
  await s.run({ nodes: new Map([["n2", N2]]) }, { full: true, nodesChanged: true });
  await s.run({ nodes: new Map([["n2", N2]]) }, { full: true, nodesChanged: true });
  assertEquals(status.synced, false);
  assertEquals(status.lastError, "Node n1 is not in the node list (or has no podCIDR/address)");
  assertEquals(calls.filter((c) => c.startsWith("conflist")), [], "a conflist without a podCIDR");
  assertEquals(log.lines("this node is not in the node list yet").length, 1);
});

Deno.test("createNodeSync() keeps what a step that threw last reported", async () => {
  const { answers, status, sync: s } = sync(true);
  answers.forwarding = { brNetfilter: false, problem: "br_netfilter is not loaded" };
  await s.run({ nodes: NODES }, { full: true, nodesChanged: true });
  assertEquals(status.brNetfilter, false);
  answers.plugin = new Error("ENOSPC");
  answers.forwarding = new Error("EIO");
  await s.run({ nodes: NODES }, { full: true, nodesChanged: true });
  assertEquals(status.pluginRuns, true);
  assertEquals(status.brNetfilter, false);
  assertEquals(status.lastError, "Cannot enable forwarding: EIO");
});

Deno.test("createNodeSync() reports policy not synced while the kernel refuses the table", async () => {
  const { answers, status, sync: s } = sync(true);
  const state = {
    nodes: NODES,
    policy: { pods: new Map(), namespaces: new Map(), policies: new Map() },
  };
  answers.table = { changed: true, policySynced: true };
  await s.run(state, { full: true, nodesChanged: true });
  assertEquals(status.policySynced, true);
  answers.table = new Error("nft exited 1: Could not process rule: No such file or directory");
  assertEquals(await s.run(state, { full: false, nodesChanged: false }), false);
  assertEquals(status.policySynced, false, "mycni_policy_synced must say 0 while refused");
});
