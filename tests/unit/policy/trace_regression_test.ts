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
