// The admission's fast path (lib/node/fast_admission.ts): the element batch that closes a new
// pod's addresses, and the claim it rests on, checked packet by packet with the table tracer on
// random worlds: the closed table never accepts a packet to or from the new pod that the table
// the reconcile computes next (the same state, the binding applied) drops.
import type { Family } from "../../../lib/ip/cidr.ts";
import { objectKey, type PodInfo } from "../../../lib/kube/policy_objects.ts";
import { withElementChanges } from "../../../lib/nft/element_diff.ts";
import type { NftTable } from "../../../lib/nft/ruleset.ts";
import { desiredTable, ISOLATED_CHAINS } from "../../../lib/node/desired_table.ts";
import { closingChanges, fastIsolation } from "../../../lib/node/fast_admission.ts";
import {
  applyBindings,
  bindPod,
  type PodBinding,
  type PodBindings,
} from "../../../lib/node/pod_bindings.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { forwardTracer, type L4Proto, type TracePacket } from "../../harness/nft_tracer.ts";
import {
  CLUSTER_CIDRS,
  randomWorld,
  Rng,
  stateOf,
  type World,
} from "../../harness/policy_world.ts";
import { namespace, pod, policy, stateOf as fixtureState } from "../policy/fixtures.ts";

const PODCIDRS = ["10.244.1.0/24", "fd00:10:244:1::/64"];

/** Node n1's table for `state` with `bindings` applied, as the table step computes it. */
function tableOf(state: PolicyState, bindings: PodBindings = new Map(), node = "n1"): NftTable {
  const bound = bindings.size > 0 ? applyBindings(state, bindings, node) : state;
  const plan = compilePolicies(bound, { node });
  const podCIDRs = node === "n1" ? PODCIDRS : [`10.244.${node.slice(1)}.0/24`];
  return desiredTable({ clusterCidrs: CLUSTER_CIDRS, podCIDRs, policy: policyObjects(plan) });
}

const ALLOW_CLIENTS = policy("x/allow-clients", {
  podSelector: { matchLabels: { pod: "b" } },
  ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }] }],
});
const DENY_ALL_X = policy("x/deny", { podSelector: {}, policyTypes: ["Ingress"] });

/** x/old (a client) on 10.244.1.5, x/b on 10.244.1.6 admitting clients; `more` policies. */
function reuseWorld(...more: ReturnType<typeof policy>[]): PolicyState {
  return fixtureState({
    pods: [
      pod("x/old", { node: "n1", ips: ["10.244.1.5"], labels: { role: "client" } }),
      pod("x/b", { node: "n1", ips: ["10.244.1.6"], labels: { pod: "b" } }),
      pod("x/new", { node: "n1", ips: [], labels: { pod: "new" } }),
    ],
    namespaces: [namespace("x")],
    policies: [ALLOW_CLIENTS, ...more],
  });
}

const NEW: PodBinding = {
  containerId: "c-new",
  ifname: "eth0",
  pod: { namespace: "x", name: "new" },
  ips: ["10.244.1.5"],
};

Deno.test("closingChanges() takes a reused address out of the old pod's sets and maps", () => {
  const state = reuseWorld(DENY_ALL_X);
  const before = tableOf(state);
  const peers = [...before.sets].find(([n, s]) =>
    n.startsWith("i_") && s.elements.has("10.244.1.5")
  );
  assert(peers !== undefined, "the old pod is in no peer set: the test proves nothing");
  const iso = fastIsolation(state, NEW, "n1")!;
  assertEquals(iso, { ingress: true, egress: false });
  const changes = closingChanges(before, NEW.ips, iso)!;
  const oldChain = before.sets.get("ingress4")!.elements.get("10.244.1.5")!;
  assertEquals(changes, [
    { op: "delete", set: peers[0], type: "ipv4_addr", element: "10.244.1.5" },
    { op: "delete", set: "ingress4", type: "ipv4_addr : verdict", element: oldChain },
    {
      op: "add",
      set: "ingress4",
      type: "ipv4_addr : verdict",
      element: `10.244.1.5 : jump ${ISOLATED_CHAINS.ingress}`,
    },
  ]);
  // The self element was there already (the old pod's), so it stays: neither deleted nor added.
  const after = withElementChanges(before, changes);
  const trace = forwardTracer(after);
  const tcp = (saddr: string, daddr: string) =>
    trace({ family: 4, saddr, daddr, l4proto: "tcp", dport: 80, ct: "new" }).verdict;
  assertEquals(tcp("10.244.1.5", "10.244.1.6"), "drop", "the new pod inherited role=client");
  assertEquals(tcp("10.244.1.7", "10.244.1.5"), "drop", "the new pod is not closed");
  assertEquals(tcp("10.244.1.5", "10.244.1.5"), "accept", "a pod to itself");
  assertEquals(
    forwardTracer(before)({
      family: 4,
      saddr: "10.244.1.5",
      daddr: "10.244.1.6",
      l4proto: "tcp",
      dport: 80,
      ct: "new",
    }).verdict,
    "accept",
  );
});

Deno.test("closingChanges() of a pod no policy isolates: no map entry, nothing else of the old pod's", () => {
  const state = reuseWorld();
  const before = tableOf(state);
  const iso = fastIsolation(state, NEW, "n1")!;
  assertEquals(iso, { ingress: false, egress: false });
  const changes = closingChanges(before, NEW.ips, iso)!;
  // Out of the old pod's peer set; into the self set (x/old was no target: it had none).
  assertEquals(changes.map((c) => `${c.op} ${c.set.replace(/_.*/, "_")} ${c.element}`), [
    "delete i_ 10.244.1.5",
    "add self4 10.244.1.5 . 10.244.1.5",
  ]);
  // Unknown: isolated both ways; the same when CNI_ARGS named no pod.
  const unknown = { ...NEW, pod: { namespace: "x", name: "nosuch" } };
  assertEquals(fastIsolation(state, unknown, "n1"), { ingress: true, egress: true });
  assertEquals(fastIsolation(state, { ...NEW, pod: undefined }, "n1"), {
    ingress: true,
    egress: true,
  });
  const both = closingChanges(before, ["10.244.1.9", "fd00:10:244:1::9"], {
    ingress: true,
    egress: true,
  })!;
  assertEquals(both.map((c) => `${c.op} ${c.set} ${c.element}`), [
    "add self4 10.244.1.9 . 10.244.1.9",
    "add ingress4 10.244.1.9 : jump ing_isolated",
    "add egress4 10.244.1.9 : jump egr_isolated",
    "add self6 fd00:10:244:1::9 . fd00:10:244:1::9",
    "add ingress6 fd00:10:244:1::9 : jump ing_isolated",
    "add egress6 fd00:10:244:1::9 : jump egr_isolated",
  ]);
});

Deno.test("closingChanges() declines where elements cannot close: an interval set covers the address", () => {
  const wide = policy("y/to-pods", {
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ to: [{ ipBlock: { cidr: "10.244.0.0/16" } }] }],
  });
  const state = reuseWorld(wide);
  const before = tableOf({
    ...state,
    pods: new Map([...state.pods, ["y/c", pod("y/c", { ips: ["10.244.1.8"] })]]),
  });
  assertEquals(closingChanges(before, NEW.ips, { ingress: true, egress: true }), undefined);
  // The masquerade sets cover every pod address: they are not the policy's, never a reason.
  assert(before.sets.get("podnets4")!.interval);
  const plain = tableOf(reuseWorld());
  assert(closingChanges(plain, NEW.ips, { ingress: true, egress: true }) !== undefined);
  // A rule that tests a set and drops (a ClusterNetworkPolicy's Deny): taking the address out
  // of that set would open, so declined, whatever the state says.
  const chains = new Map(plain.chains);
  const peers = [...plain.sets.keys()].find((n) => n.startsWith("i_"))!;
  chains.set("ing_deny", { rules: [`ip saddr @${peers} counter name ingress_dropped drop`] });
  const denying = { ...plain, chains };
  assertEquals(closingChanges(denying, NEW.ips, { ingress: true, egress: true }), undefined);
  const passing = new Map(plain.chains);
  passing.set("ing_pass", { rules: [`ip saddr @${peers} goto ing_isolated`] });
  assertEquals(
    closingChanges({ ...plain, chains: passing }, NEW.ips, { ingress: true, egress: true }),
    undefined,
  );
  // No policy table (the chains the fast path maps to are missing): declined.
  const noPolicy = desiredTable({ clusterCidrs: CLUSTER_CIDRS, podCIDRs: PODCIDRS });
  assertEquals(closingChanges(noPolicy, NEW.ips, { ingress: true, egress: true }), undefined);
});

Deno.test("fastIsolation() says the directions of its namespace's policies that select it, else nothing", () => {
  const egress = policy("x/egress-new", {
    podSelector: { matchLabels: { pod: "new" } },
    policyTypes: ["Egress"],
  });
  const elsewhere = policy("y/deny", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  const notNew = policy("x/not-new", {
    podSelector: { matchLabels: { pod: "b" } },
    policyTypes: ["Ingress"],
  });
  assertEquals(fastIsolation(reuseWorld(egress, elsewhere, notNew), NEW, "n1"), {
    ingress: false,
    egress: true,
  });
  // A Pod object on another node is an older incarnation: isolated until known, as compiled.
  const moved = reuseWorld();
  const pods = new Map(moved.pods);
  pods.set("x/new", { ...pods.get("x/new")!, node: "n2" });
  assertEquals(fastIsolation({ ...moved, pods }, NEW, "n1"), { ingress: true, egress: true });
  // ClusterNetworkPolicies: their Deny rules test sets too; the fast path does not decide.
  const cluster = new Map([["c", {} as never]]);
  assertEquals(fastIsolation({ ...moved, clusterPolicies: cluster }, NEW, "n1"), undefined);
});

const PROTOS: readonly L4Proto[] = ["tcp", "udp", "sctp"];
const PORTS = [53, 80, 81, 443, 8080, 9090];

/** Every other address the world knows of a family, and a few outside the pods. */
function peersOf(world: World, family: Family, not: readonly string[]): string[] {
  const out = new Set<string>();
  for (const p of world.pods.values()) {
    for (const ip of p.ips) if (ip.includes(":") === (family === 6)) out.add(ip);
  }
  for (const n of world.nodes) out.add(n.ips[family === 4 ? 0 : 1]);
  out.add(family === 4 ? "203.0.113.9" : "2001:db8:ff::9");
  out.add(family === 4 ? "10.244.1.77" : "fd00:10:244:1::77");
  for (const ip of not) out.delete(ip);
  return [...out];
}

Deno.test("closingChanges() is never more open than the reconcile that follows (random worlds)", () => {
  const seed = Number(Deno.env.get("TRACE_SEED") ?? Date.now() % 100000);
  const rng = new Rng(seed);
  let closedFlows = 0, inherited = 0, declined = 0, checked = 0;
  for (let w = 0; w < 60; w++) {
    const world = randomWorld(rng);
    const here = [...world.pods.values()].filter((p) =>
      p.node === "n1" && !p.hostNetwork && p.ips.length > 0
    );
    if (here.length === 0) continue;
    const old = rng.pick(here);
    // The new pod: a new Pod object (random labels and namespace), or none known yet, on the
    // old pod's addresses while the old object lingers (terminating).
    const ns = rng.pick([...world.namespaces.keys()]);
    const known = rng.chance(0.8);
    const newPod: PodInfo = {
      namespace: ns,
      name: "newcomer",
      labels: rng.chance(0.5) ? { ...old.labels } : { app: rng.pick(["web", "db", "api"]) },
      node: "n1",
      ips: [],
      hostNetwork: false,
      ports: old.ports,
    };
    if (known) world.pods.set(objectKey(ns, "newcomer"), newPod);
    const state = stateOf(world);
    const before = tableOf(state, new Map(), "n1");
    const binding: PodBinding = {
      containerId: "c-newcomer",
      ifname: "eth0",
      pod: { namespace: ns, name: "newcomer" },
      ips: old.ips,
    };
    const iso = fastIsolation(state, binding, "n1")!;
    const changes = closingChanges(before, binding.ips, iso);
    if (changes === undefined) {
      declined++;
      continue;
    }
    const closed = forwardTracer(withElementChanges(before, changes));
    const prior = forwardTracer(before);
    const next = forwardTracer(tableOf(state, bindPod(new Map(), binding), "n1"));
    for (const ip of binding.ips) {
      const family: Family = ip.includes(":") ? 6 : 4;
      for (const other of peersOf(world, family, binding.ips)) {
        for (const [saddr, daddr] of [[ip, other], [other, ip]]) {
          const l4proto = rng.pick(PROTOS), dport = rng.pick(PORTS);
          const p: TracePacket = { family, saddr, daddr, l4proto, dport, ct: "new" };
          const fast = closed(p).verdict, real = next(p).verdict;
          checked++;
          if (fast === "accept" && real === "drop") {
            throw new Error(
              `seed ${seed}: the closed table accepts ${JSON.stringify(p)}, the reconcile drops it`,
            );
          }
          if (fast === "drop" && real === "accept") closedFlows++;
          if (prior(p).verdict === "accept" && real === "drop") inherited++;
        }
      }
    }
  }
  // Not vacuous: the old table let through what the new owner must not get, and the fast path
  // sometimes closes more than the pod will end with.
  assert(checked > 500, `only ${checked} packets checked (seed ${seed})`);
  assert(inherited > 0, `no world where the old owner's allowance mattered (seed ${seed})`);
  assert(closedFlows > 0, `the fast path never closed more than needed (seed ${seed})`);
  assert(declined < 60, `every world declined (seed ${seed})`);
});
