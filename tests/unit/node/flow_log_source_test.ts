// How the agent names flow records: from the policy table the kernel holds (the applied state's
// pods on any node, the applied plan's deciders), and a record whose decider that table no
// longer holds kept without names.
import { attributionOf } from "../../../lib/node/flow_log_source.ts";
import { flowRecord } from "../../../lib/node/flow_log.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import { cnpPolicyRef, flowLogPrefix } from "../../../lib/policy/flow_log_rules.ts";
import { assertEquals } from "../../harness/assert.ts";
import { cnp, withCluster } from "../policy/cnp_fixtures.ts";
import { e2eCluster, policy } from "../policy/fixtures.ts";

const packet = (prefix: string, src: string, dst: string) => ({
  prefix,
  time: Date.UTC(2025, 0, 1),
  family: 4 as const,
  src,
  dst,
  proto: 6,
  sport: 40000,
  dport: 80,
});

Deno.test("attributionOf() names both pods and the deciding NetworkPolicies or ClusterNetworkPolicy rule", () => {
  const deny = policy("y/deny", { podSelector: {} });
  const admin = cnp("deny-z", {
    tier: "Admin",
    priority: 1,
    subject: { namespaces: { matchLabels: { "kubernetes.io/metadata.name": "x" } } },
    egress: [
      { action: "Accept", to: [{ networks: ["192.0.2.0/24"] }] },
      { action: "Deny", to: [{ namespaces: {} }] },
    ],
  });
  const state = withCluster(e2eCluster([deny]), [admin]);
  // y/b is on n2: its ingress decider is n2's; x/a on n1 meets deny-z's rule 1 on egress.
  const n2 = attributionOf({ state, plan: compilePolicies(state, { node: "n2" }) });
  const ingress = { direction: "ingress" as const, policies: ["y/deny"] };
  assertEquals(flowRecord(packet(flowLogPrefix(ingress), "10.0.1.1", "10.0.2.2"), n2), {
    time: "2025-01-01T00:00:00.000Z",
    verdict: "deny",
    direction: "ingress",
    src: "10.0.1.1",
    dst: "10.0.2.2",
    proto: "TCP",
    dport: 80,
    srcPod: "x/a",
    dstPod: "y/b",
    policies: ["y/deny"],
  });
  const n1 = attributionOf({ state, plan: compilePolicies(state, { node: "n1" }) });
  const egress = { direction: "egress" as const, policies: [cnpPolicyRef("deny-z", 1)] };
  const r = flowRecord(packet(flowLogPrefix(egress), "10.0.1.1", "10.0.3.3"), n1);
  assertEquals([r.srcPod, r.dstPod, r.policies], ["x/a", "z/c", ["deny-z[1]"]]);
  // A decider the table no longer holds (logged under an older one, y/gone since deleted):
  // kept without pods and policies.
  const gone = { direction: "ingress" as const, policies: ["y/gone"] };
  const stale = flowRecord(packet(flowLogPrefix(gone), "10.0.1.1", "10.0.2.2"), n1);
  assertEquals([stale.direction, stale.srcPod, stale.policies], ["ingress", undefined, undefined]);
  // Before any table: nothing is named.
  assertEquals(attributionOf(undefined).podOf("10.0.1.1"), undefined);
});
