// The upstream ClusterNetworkPolicy conformance suite (cnp_conformance_cases.ts) on the model: each
// subtest's policies through the real parsers, each probe through explain and through the
// rendered tables of the nodes it crosses, in an IPv4 and in an IPv6 cluster. Upstream's
// expectation, explain and the tables must all agree.
import { parseClusterNetworkPolicy } from "../../../lib/kube/cluster_network_policy.ts";
import { parseNetworkPolicy } from "../../../lib/kube/network_policy.ts";
import { objectKey, type PodInfo } from "../../../lib/kube/policy_objects.ts";
import type { PolicyState } from "../../../lib/policy/compile.ts";
import { explainFlow } from "../../../lib/policy/explain.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import {
  BASE,
  CONFORMANCE_CASES,
  instantiatePolicies,
  needsSctp,
  type Subtest,
} from "./cnp_conformance_cases.ts";
import { tablesAllow } from "./cnp_fixtures.ts";

type Family = 4 | 6;

/** Node addresses: 192.0.2.1N / 2001:db8::1N; pods: 10.244.N.K / fd00:10:244:N::K. */
function nodeAddress(node: string, family: Family): string {
  const n = node.slice(1);
  return family === 4 ? `192.0.2.1${n}` : `2001:db8::1${n}`;
}

function podAddresses(family: Family): Map<string, string> {
  const out = new Map<string, string>();
  const next = new Map<string, number>();
  for (const p of BASE.pods) {
    const key = objectKey(p.namespace, p.name);
    if (p.hostNetwork) {
      out.set(key, nodeAddress(p.node, family));
      continue;
    }
    const k = (next.get(p.node) ?? 1) + 1;
    next.set(p.node, k);
    const n = p.node.slice(1);
    out.set(key, family === 4 ? `10.244.${n}.${k}` : `fd00:10:244:${n}::${k}`);
  }
  return out;
}

/** The base cluster in one family, with the subtest's objects in force. */
function stateFor(subtest: Subtest, family: Family): PolicyState {
  const ips = podAddresses(family);
  const pods = new Map<string, PodInfo>(BASE.pods.map((p) => {
    const key = objectKey(p.namespace, p.name);
    return [key, {
      namespace: p.namespace,
      name: p.name,
      labels: p.labels,
      node: p.node,
      ips: [ips.get(key)!],
      hostNetwork: p.hostNetwork,
      ports: p.ports,
    }];
  }));
  const namespaces = new Map(BASE.namespaces.map((n) => [n.name, {
    name: n.name,
    labels: subtest.namespaceLabels?.[n.name] ?? n.labels,
  }]));
  const policies = new Map(subtest.networkPolicies.map((obj) => {
    const parsed = parseNetworkPolicy(obj);
    if (!parsed.ok || parsed.entry.error) throw new Error(`bad fixture NetworkPolicy`);
    const key = objectKey(parsed.entry.policy.namespace, parsed.entry.policy.name);
    return [key, parsed.entry];
  }));
  const cnps = instantiatePolicies(subtest.clusterNetworkPolicies, (key) => ips.get(key)!);
  const clusterPolicies = new Map(cnps.map((obj) => {
    const parsed = parseClusterNetworkPolicy(obj);
    if (!parsed.ok) throw new Error(`bad fixture ClusterNetworkPolicy: ${parsed.reason}`);
    assertEquals(parsed.entry.error, undefined, `${subtest.name}: ${parsed.entry.error}`);
    return [parsed.entry.policy.name, parsed.entry];
  }));
  return {
    pods,
    namespaces,
    policies,
    clusterPolicies,
    nodes: new Map(BASE.nodes.map((n) => [n.name, [nodeAddress(n.name, family)]])),
    nodeLabels: new Map(BASE.nodes.map((n) => [n.name, n.labels])),
  };
}

function mismatches(family: Family): string[] {
  const out: string[] = [];
  for (const c of CONFORMANCE_CASES) {
    for (const subtest of c.subtests) {
      const state = stateFor(subtest, family);
      for (const probe of subtest.probes) {
        const explained = explainFlow(state, probe);
        const tables = tablesAllow(state, probe, explained);
        if (explained.allowed === probe.allowed && tables === probe.allowed) continue;
        out.push(
          `IPv${family} ${c.test} / ${subtest.name}: ${probe.from} -> ${probe.to} ` +
            `${probe.protocol} ${probe.port}: upstream ${probe.allowed}, explain ` +
            `${explained.allowed} (egress: ${explained.egress.reason}; ingress: ` +
            `${explained.ingress.reason}), tables ${tables}`,
        );
      }
    }
  }
  return out;
}

Deno.test("conformance cases: every upstream test and subtest is ported", () => {
  assertEquals(CONFORMANCE_CASES.length, 24);
  const v020 = CONFORMANCE_CASES.flatMap((c) => c.subtests.filter((s) => s.since === undefined));
  assertEquals(v020.length, 92);
  assertEquals(v020.reduce((n, s) => n + s.probes.length, 0), 289);
  assert(v020.some(needsSctp) && !v020.every(needsSctp));
});

for (const family of [4, 6] as const) {
  Deno.test(`conformance cases: explain and the rendered tables give upstream's verdict on every probe (IPv${family})`, () => {
    assertEquals(mismatches(family), []);
  });
}

Deno.test("conformance cases: explain names the stage, policy, priority, rule and action upstream's comments name", () => {
  const ingressTcp = CONFORMANCE_CASES.find((c) => c.test === "CNPAdminTierIngressTCP")!;
  const passFirst = ingressTcp.subtests[4];
  const state = stateFor(passFirst, 4);
  const e = explainFlow(state, passFirst.probes[0]);
  assertEquals(e.ingress.stage, "default");
  assertEquals(e.ingress.passedBy, [{
    tier: "Admin",
    policy: "ingress-tcp",
    priority: 3,
    rule: 0,
    name: "pass-from-ravenclaw-everything",
    action: "Pass",
  }]);
  const integration = CONFORMANCE_CASES.find((c) => c.test === "CNPAdminTierIntegration")!;
  const viaNp = explainFlow(
    stateFor(integration.subtests[2], 4),
    integration.subtests[2].probes[0],
  );
  assertEquals(viaNp.ingress.stage, "NetworkPolicy");
  assertEquals(viaNp.ingress.allowedBy, [{
    policy: "network-policy-conformance-gryffindor/allow-gress-from-to-slytherin-to-gryffindor",
    rule: 0,
  }]);
  const viaBaseline = explainFlow(
    stateFor(integration.subtests[4], 4),
    integration.subtests[4].probes[0],
  );
  assertEquals(viaBaseline.ingress.stage, "Baseline");
  assertEquals(viaBaseline.ingress.decidedBy?.policy, "default");
  assertEquals(viaBaseline.ingress.decidedBy?.action, "Deny");
});
