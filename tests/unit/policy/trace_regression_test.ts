// Disagreements the trace property test (trace_property_test.ts) found between explainFlow and
// the rendered rules, each pinned as a small case: the flow, what NetworkPolicy says, what
// explain says, and what a packet meets in the node's table (tests/harness/nft_tracer.ts).
import { desiredTable } from "../../../lib/node/desired_table.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { explainFlow } from "../../../lib/policy/explain.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import { assertEquals } from "../../harness/assert.ts";
import { forwardTracer } from "../../harness/nft_tracer.ts";
import { namespace, pod, policy, stateOf } from "./fixtures.ts";

/** What explain says and what n1's rules do with a new TCP connection, side by side. */
function bothSay(state: PolicyState, from: string, to: string, port: number) {
  const explained = explainFlow(state, { from, to, protocol: "TCP", port });
  const table = desiredTable({
    clusterCidrs: ["10.244.0.0/16"],
    podCIDRs: ["10.244.1.0/24"],
    policy: policyObjects(compilePolicies(state, { node: "n1" })),
  });
  const traced = forwardTracer(table)({
    family: 4,
    saddr: explained.src,
    daddr: explained.dst,
    l4proto: "tcp",
    dport: port,
    ct: "new",
  });
  return { explain: explained.allowed, rules: traced.verdict === "accept" };
}

const HTTP = [{ name: "http", port: 80, protocol: "TCP" as const }];

Deno.test("a named egress port opens no peer without it when two pods hold one address", () => {
  // x/old's object outlives its sandbox; x/new got its address. Both have "http" on 80, x/other
  // has no "http": NetworkPolicy allows x/src to reach x/other on no port. Counting the
  // address twice made the peer set look like every peer had the port (coversPeers), and the
  // rules let x/src reach x/other on 80.
  const state = stateOf({
    pods: [
      pod("x/src", { ips: ["10.244.1.9"], labels: { app: "src" } }),
      pod("x/old", { ips: ["10.244.1.5"], labels: { app: "dst" }, ports: HTTP }),
      pod("x/new", { ips: ["10.244.1.5"], labels: { app: "dst" }, ports: HTTP }),
      pod("x/other", { ips: ["10.244.1.6"], labels: { app: "dst" } }),
    ],
    namespaces: [namespace("x")],
    policies: [policy("x/out", {
      podSelector: { matchLabels: { app: "src" } },
      policyTypes: ["Egress"],
      egress: [{
        to: [{ podSelector: { matchLabels: { app: "dst" } } }],
        ports: [{ port: "http" }],
      }],
    })],
  });
  assertEquals(bothSay(state, "x/src", "x/other", 80), { explain: false, rules: false });
  assertEquals(bothSay(state, "x/src", "x/new", 80), { explain: true, rules: true });
});

Deno.test("the first isolated pod by key decides for an address two pods hold, in explain and rules", () => {
  // x/a (isolated, nothing allowed) and x/b (isolated, everything allowed) hold 10.244.1.5.
  // Explain judged by the first holder and the rules by the last target written to the map.
  const pods = [
    pod("x/a", { ips: ["10.244.1.5"], labels: { app: "a" } }),
    pod("x/b", { ips: ["10.244.1.5"], labels: { app: "b" } }),
    pod("x/c", { ips: ["10.244.1.6"], labels: { app: "c" } }),
  ];
  const denyA = policy("x/deny-a", {
    podSelector: { matchLabels: { app: "a" } },
    policyTypes: ["Ingress", "Egress"],
  });
  const allowB = policy("x/allow-b", {
    podSelector: { matchLabels: { app: "b" } },
    policyTypes: ["Ingress", "Egress"],
    ingress: [{}],
    egress: [{}],
  });
  const both = stateOf({ pods, namespaces: [namespace("x")], policies: [denyA, allowB] });
  for (const [from, to] of [["x/c", "10.244.1.5"], ["x/c", "x/b"], ["x/b", "x/c"]]) {
    assertEquals(bothSay(both, from, to, 80), { explain: false, rules: false }, `${from} -> ${to}`);
  }
  const reason = explainFlow(both, { from: "x/c", to: "x/b", protocol: "TCP", port: 80 }).ingress
    .reason;
  assertEquals(
    reason,
    "x/a holds 10.244.1.5 too: isolated by x/deny-a and no rule allows TCP 80 from 10.244.1.6",
  );
  // Only the later holder isolated: its rules apply to the address (explain took x/a's none).
  const onlyB = stateOf({
    pods,
    namespaces: [namespace("x")],
    policies: [
      allowB,
      policy("x/b-80", {
        podSelector: { matchLabels: { app: "b" } },
        ingress: [{ ports: [{ port: 80 }] }],
      }),
    ],
  });
  const onlyDeny = stateOf({
    pods,
    namespaces: [namespace("x")],
    policies: [policy("x/deny-b", {
      podSelector: { matchLabels: { app: "b" } },
      policyTypes: ["Ingress"],
    })],
  });
  assertEquals(bothSay(onlyB, "x/c", "10.244.1.5", 80), { explain: true, rules: true });
  assertEquals(bothSay(onlyDeny, "x/c", "10.244.1.5", 80), { explain: false, rules: false });
  assertEquals(bothSay(onlyDeny, "x/c", "x/a", 80), { explain: false, rules: false });
});
