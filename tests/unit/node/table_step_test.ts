import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import type { Family } from "../../../lib/ip/cidr.ts";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import { createTableSync, type NftRunner } from "../../../lib/nft/sync.ts";
import type { ClusterState } from "../../../lib/node/sync.ts";
import {
  type AppliedPolicy,
  createTableStep,
  type TableBindings,
} from "../../../lib/node/table_step.ts";
import { NOT_SYN_RULE } from "../../../lib/policy/strict_rules.ts";
import { namespace, pod, policy } from "../policy/fixtures.ts";
import { cnp } from "../policy/cnp_fixtures.ts";
import type { ClusterPolicyEntry } from "../../../lib/kube/cluster_network_policy.ts";
import { fakeLog } from "./fake_log.ts";

const N1: NodeInfo = { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] };
const N2: NodeInfo = { name: "n2", ips: ["192.0.2.12"], podCIDRs: ["10.244.2.0/24"] };
const NODES = new Map([["n1", N1], ["n2", N2]]);
const CLUSTER = ["10.244.0.0/16"];

const DENY_X = policy("x/deny", { podSelector: {}, policyTypes: ["Ingress"] });

/** x/a on n1, y/b on n2, and the given policies. */
function stateWith(...policies: ReturnType<typeof policy>[]): ClusterState {
  return {
    nodes: NODES,
    policy: {
      pods: new Map([
        ["x/a", pod("x/a", { node: "n1", ips: ["10.244.1.5"] })],
        ["y/b", pod("y/b", { node: "n2", ips: ["10.244.2.6"] })],
      ]),
      namespaces: new Map([["x", namespace("x")], ["y", namespace("y")]]),
      policies: new Map(policies.map((p) => [`${p.policy.namespace}/${p.policy.name}`, p])),
    },
  };
}

/** `state` with these ClusterNetworkPolicies (and another node list, when given). */
function withCnps(
  state: ClusterState,
  cnps: ClusterPolicyEntry[],
  nodes: ReadonlyMap<string, NodeInfo> = state.nodes,
): ClusterState {
  return {
    nodes,
    policy: { ...state.policy!, clusterPolicies: new Map(cnps.map((e) => [e.policy.name, e])) },
  };
}

/** An nft that keeps the transactions it took and can be told to refuse them. */
function fakeNft() {
  const nft = {
    applied: [] as string[],
    refuse: "",
    reads: 0,
    runner: undefined as unknown as NftRunner,
  };
  nft.runner = {
    apply(text) {
      if (nft.refuse) return Promise.reject(new Error(nft.refuse));
      nft.applied.push(text);
      return Promise.resolve();
    },
    read() {
      nft.reads++;
      return Promise.resolve(undefined); // someone deleted the whole table
    },
    counters: () => Promise.resolve(new Map([["ingress_dropped", 4]])),
  };
  return nft;
}

/** What the table step told the admission: generations applied and failed, and stale asks. */
function bindingsWatcher() {
  const seen = { applied: [] as number[], failed: [] as string[], staleBelow: 0 };
  return {
    seen,
    watcher: {
      stale: (g: number) => g < seen.staleBelow,
      applied: (g: number) => void seen.applied.push(g),
      failed: (g: number, error: string) => void seen.failed.push(`${g}: ${error}`),
    },
  };
}

function tableStep(opts: { policy: boolean }, bindings?: TableBindings) {
  const nft = fakeNft();
  const log = fakeLog();
  const legacy: Family[] = [];
  const step = createTableStep({ nodeName: "n1", noMasqueradeCidrs: [], ...opts }, log, {
    tables: createTableSync(nft.runner),
    deleteChains: (family) => (legacy.push(family), Promise.resolve([])),
    bindings,
  });
  const run = (state: ClusterState, full = false) =>
    step.run({ state, own: state.nodes.get("n1"), cluster: CLUSTER, full });
  return { nft, log, legacy, step, run };
}

const fromYtoX = { from: "y/b", to: "x/a", port: 80, protocol: "TCP" } as const;

Deno.test("createTableStep() applies masquerade and policy, and answers explain for what it applied", async () => {
  const { nft, log, legacy, step, run } = tableStep({ policy: true });
  throws(() => step.explain(fromYtoX), /not synced yet/);
  const report = await run(stateWith(DENY_X));
  assertEquals(report.changed, true);
  assertEquals(report.policySynced, true);
  assertEquals(report.gauges, {
    policies: 1,
    errors: 0,
    targets: 1,
    rules: 1,
    clusterPolicies: { Admin: 0, Baseline: 0 },
    clusterErrors: 0,
  });
  assert(nft.applied[0].includes("10.244.1.5 : jump ing_"), "x/a is not in the ingress map");
  assertEquals(step.explain(fromYtoX).allowed, false);
  assertEquals(log.lines("nftables table synced")[0].whole, true);
  assertEquals(legacy, [4], "the legacy masquerade chain was not removed after the first apply");
  assertEquals((await run(stateWith(DENY_X))).changed, false);
  assertEquals(legacy, [4]);
  // 4 counted before the first (whole) load, carried, and 4 in the kernel now.
  assertEquals(await step.drops(), { ingress: 8, egress: 0 });
});

Deno.test("createTableStep() keeps explaining the applied policy when nft refuses the new one", async () => {
  const { nft, step, run } = tableStep({ policy: true });
  await run(stateWith(DENY_X));
  nft.refuse = "nft: Error: Could not process rule: No such file or directory";
  const refused = await run(stateWith());
  assertEquals(refused.changed, false);
  assertEquals(refused.problem, nft.refuse);
  assertEquals(refused.policySynced, undefined, "policy reported synced without the kernel");
  assertEquals(refused.gauges?.policies, 0);
  // The kernel still isolates x/a: explain must say so.
  assertEquals(step.explain(fromYtoX).allowed, false);
  nft.refuse = "";
  const healed = await run(stateWith());
  assertEquals(healed.changed, true);
  assert(nft.applied[1].startsWith("table inet mycni {}\ndelete table"), "not reloaded whole");
  assertEquals(step.explain(fromYtoX).allowed, true);
});

Deno.test("createTableStep() waits for the policy sources to be listed, keeping the kernel's table", async () => {
  const { nft, log, run } = tableStep({ policy: true });
  const unlisted = { nodes: NODES };
  assertEquals(await run(unlisted), { changed: false, policySynced: false });
  assertEquals(await run(unlisted), { changed: false, policySynced: false });
  assertEquals(nft.applied, []);
  assertEquals(log.lines("waiting for pods, namespaces and policies to be listed").length, 1);
  assertEquals(await run({ nodes: new Map([["n2", N2]]) }), { changed: false });
});

Deno.test("createTableStep() on a full resync repairs a table the kernel lost, and says so", async () => {
  const { nft, log, run } = tableStep({ policy: false });
  const state = { nodes: NODES };
  const first = await run(state, true);
  assertEquals(first.changed, true);
  assertEquals(first.gauges, undefined);
  assertEquals(first.policySynced, undefined);
  assertEquals(nft.reads, 0, "the first run has nothing to compare with");
  assertEquals((await run(state, false)).changed, false);
  assertEquals(nft.reads, 0);
  const repaired = await run(state, true);
  assertEquals(nft.reads, 1);
  assertEquals(repaired.changed, true);
  assertEquals(log.lines("nftables table differs from the one applied: loading it whole"), [
    { table: "inet mycni", differences: ["table inet mycni is missing"] },
  ]);
  assertEquals(log.lines("nftables table synced").map((f) => f.whole), [true, true]);
});

Deno.test("createTableStep() explains a node's bridge address as that node (its probes are never filtered)", async () => {
  const { step, run } = tableStep({ policy: true });
  await run(stateWith(DENY_X));
  const fromBridge = { from: "10.244.1.1", to: "x/a", port: 80, protocol: "TCP" } as const;
  assertEquals(step.explain(fromBridge).allowed, true);
  assertEquals(
    step.explain(fromBridge).ingress.reason,
    "always allowed: traffic between a pod and its own node",
  );
  // Another node's bridge is not x/a's node: its traffic crosses the forward hook.
  assertEquals(step.explain({ ...fromBridge, from: "10.244.2.1" }).allowed, false);
});

Deno.test("createTableStep() enforces ClusterNetworkPolicies, counts them per tier and logs each error once", async () => {
  const { log, step, run } = tableStep({ policy: true });
  const deny = cnp("deny-y", {
    tier: "Admin",
    priority: 10,
    subject: { namespaces: { matchLabels: { "kubernetes.io/metadata.name": "x" } } },
    ingress: [{ action: "Deny", from: [{ namespaces: {} }] }],
  });
  const broken = cnp("broken", {
    tier: "Baseline",
    priority: 5,
    subject: { namespaces: {} },
    egress: [{ action: "Allow", to: [{ namespaces: {} }] }],
  });
  assert(broken.error !== undefined, "the fixture should be invalid");
  const state = withCnps(stateWith(), [deny, broken]);
  const report = await run(state);
  assertEquals(report.gauges?.clusterPolicies, { Admin: 1, Baseline: 1 });
  assertEquals(report.gauges?.clusterErrors, 1);
  assertEquals(report.gauges?.targets, 1, "x/a: selected by both, on this node");
  const e = step.explain(fromYtoX);
  assertEquals([e.allowed, e.ingress.stage, e.ingress.decidedBy?.policy], [
    false,
    "Admin",
    "deny-y",
  ]);
  // The broken Baseline policy denies x/a's egress (its direction), fail-closed.
  const out = step.explain({ from: "x/a", to: "y/b", port: 80, protocol: "TCP" });
  assertEquals([out.egress.allowed, out.egress.stage, out.egress.decidedBy?.rule], [
    false,
    "Baseline",
    -1,
  ]);
  await run(state);
  await run(withCnps(stateWith(), [deny, broken]));
  const errors = log.lines(
    "ClusterNetworkPolicy cannot be enforced exactly: its subjects are " +
      "denied in the directions it has rules for, at its tier and priority",
  );
  assertEquals(errors.length, 1);
  assertEquals(errors[0].clusterNetworkPolicy, "broken");
  assert(/action/.test(String(errors[0].error)), `the error names no field: ${errors[0].error}`);
  // Gone and back: logged again (once).
  await run(withCnps(stateWith(), [deny]));
  await run(withCnps(stateWith(), [deny, broken]));
  assertEquals(
    log.lines(
      "ClusterNetworkPolicy cannot be enforced exactly: its subjects are " +
        "denied in the directions it has rules for, at its tier and priority",
    ).length,
    2,
  );
});

Deno.test("createTableStep() gives the compile the nodes' labels: node peers follow a relabel", async () => {
  const { step, run } = tableStep({ policy: true });
  const denyZoneA = cnp("no-zone-a", {
    tier: "Admin",
    priority: 1,
    subject: { namespaces: {} },
    egress: [{ action: "Deny", to: [{ nodes: { matchLabels: { zone: "a" } } }] }],
  });
  const toN2 = { from: "x/a", to: "192.0.2.12", port: 80, protocol: "TCP" } as const;
  const labelled = (zone: string) => new Map([["n1", N1], ["n2", { ...N2, labels: { zone } }]]);
  await run(withCnps(stateWith(), [denyZoneA], labelled("a")));
  assertEquals(step.explain(toN2).allowed, false);
  await run(withCnps(stateWith(), [denyZoneA], labelled("b")));
  assertEquals(step.explain(toN2).allowed, true);
});

Deno.test("createTableStep() with strict mode and the flow log renders their rules and tells who applied what", async () => {
  const nft = fakeNft();
  const applied: AppliedPolicy[] = [];
  const step = createTableStep(
    {
      nodeName: "n1",
      noMasqueradeCidrs: [],
      policy: true,
      policyStrict: true,
      flowLog: "denied",
      flowLogRate: 7,
    },
    fakeLog(),
    {
      tables: createTableSync(nft.runner),
      onPolicyApplied: (a) => applied.push(a),
    },
  );
  const state = stateWith(DENY_X);
  await step.run({ state, own: N1, cluster: CLUSTER, full: false });
  const text = nft.applied[0];
  assert(text.includes("  limit flowlog { rate 7/second burst 7 packets }"), text);
  assert(text.includes("    ct state established,related accept comment"), text);
  const fwd = text.slice(text.indexOf("chain forward {"));
  assert(fwd.indexOf(NOT_SYN_RULE) > fwd.indexOf("ct state established,related accept"));
  assert(fwd.indexOf(NOT_SYN_RULE) < fwd.indexOf("vmap"), "strict rules come before the maps");
  assert(text.includes('log prefix "mycni:i:'), "x/a's deny path logs");
  assertEquals(applied.length, 1);
  assertEquals(applied[0].plan.targets.map((t) => t.pod), ["x/a"]);
  assertEquals(applied[0].state.pods.size, 2);
  // A refused transaction is not applied: nobody hears of it.
  nft.refuse = "nft: no";
  await step.run({ state: stateWith(), own: N1, cluster: CLUSTER, full: false });
  assertEquals(applied.length, 1);
  // Both off: neither their rules nor their objects.
  const off = tableStep({ policy: true });
  await off.run(state);
  assert(!off.nft.applied[0].includes("flowlog") && !off.nft.applied[0].includes("strict_cut"));
  assert(!off.nft.applied[0].includes("tcp flags"));
});

Deno.test("createTableStep() compiles with the bindings, says which it applied, skips a stale table", async () => {
  const { seen, watcher } = bindingsWatcher();
  const { nft, step, run } = tableStep({ policy: true }, watcher);
  // x/c was ADDed on n1 at 10.244.1.9: the API has no Pod for it yet (isolated until known);
  // x/a's address is bound to another attachment: ADD outranks the API.
  const bindings = new Map([
    ["c-c@eth0", { containerId: "c-c", ifname: "eth0", ips: ["10.244.1.9"] }],
  ]);
  const state = { ...stateWith(DENY_X), bindings: { bindings, generation: 4 } };
  await run(state);
  assertEquals(seen.applied, [4]);
  assert(nft.applied[0].includes("10.244.1.9 : jump ing_"), "the bound address is not isolated");
  assert(nft.applied[0].includes("10.244.1.9 : jump egr_"), "not isolated both ways");
  assertEquals(step.explain({ ...fromYtoX, to: "10.244.1.9" }).allowed, false);
  // A fast admission closed generation 6: a table from generation 5 must not undo it.
  seen.staleBelow = 6;
  const stale = await run({
    ...stateWith(DENY_X),
    bindings: { bindings: new Map(), generation: 5 },
  });
  assertEquals(stale, { changed: false });
  assertEquals([nft.applied.length, seen.applied], [1, [4]]);
  nft.refuse = "nft: Error: Could not process rule";
  const moved = new Map([
    ["c-c@eth0", { containerId: "c-c", ifname: "eth0", ips: ["10.244.1.10"] }],
  ]);
  await run({ ...stateWith(DENY_X), bindings: { bindings: moved, generation: 6 } });
  assertEquals(seen.failed, ["6: nft: Error: Could not process rule"]);
});
