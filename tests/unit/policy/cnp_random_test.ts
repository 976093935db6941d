// Random states with ClusterNetworkPolicies (both tiers, tied priorities, Pass, every peer and
// port form, now and then one that fails closed) and NetworkPolicies over the e2e cluster: on
// every random flow, explain and the rendered tables must agree. Seeded, so a failure repeats.
import type { NetworkPolicy } from "../../../lib/kube/policy_objects.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { type PolicyObjects, policyObjects } from "../../../lib/policy/nft_rules.ts";
import { assertEquals } from "../../harness/assert.ts";
import { cnp, explainChecked, withCluster } from "./cnp_fixtures.ts";
import { ALL_PODS, e2eCluster, policy } from "./fixtures.ts";

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMESPACES = ["x", "y", "z"];
const POD_NAMES = ["a", "b", "c"];
const EXTERNAL = ["203.0.113.5", "198.51.100.7", "2001:db8::5", "192.0.2.11", "192.0.2.13"];

function generator(seed: number) {
  const r = random(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)];
  const some = <T>(make: () => T, max: number): T[] =>
    Array.from({ length: 1 + Math.floor(r() * max) }, make);
  const nsSel = () => pick([{}, { matchLabels: { ns: pick(NAMESPACES) } }]);
  const podSel = () => pick([{}, { matchLabels: { pod: pick(POD_NAMES) } }]);
  const peer = (egress: boolean): unknown => {
    const kinds = egress ? ["namespaces", "pods", "networks", "nodes"] : ["namespaces", "pods"];
    switch (pick(kinds)) {
      case "namespaces":
        return { namespaces: nsSel() };
      case "pods":
        return { pods: { namespaceSelector: nsSel(), podSelector: podSel() } };
      case "networks":
        return {
          networks: some(
            () =>
              pick([
                "10.0.1.0/24",
                "10.0.0.0/16",
                "0.0.0.0/0",
                "::/0",
                "fd00::2:0/112",
                "203.0.113.0/24",
                "10.0.2.2/32",
                "10.0.0.0/33", // invalid: the policy fails closed
              ]),
            2,
          ),
        };
      default:
        return { nodes: { matchLabels: { role: pick(["infra", "worker"]) } } };
    }
  };
  const protocols = (): unknown =>
    pick([
      undefined,
      [{ tcp: { destinationPort: { number: 80 } } }],
      [{ udp: { destinationPort: { range: { start: 80, end: 81 } } } }, { sctp: {} }],
      [{ destinationNamedPort: pick(["serve-80-tcp", "serve-81-udp"]) }],
    ]);
  const rule = (egress: boolean) => {
    const out: Record<string, unknown> = {
      action: pick(["Accept", "Deny", "Pass"]),
      [egress ? "to" : "from"]: some(() => peer(egress), 2),
    };
    const p = protocols();
    if (p !== undefined) out.protocols = p;
    return out;
  };
  const clusterPolicy = (i: number) => {
    const spec: Record<string, unknown> = {
      tier: pick(["Admin", "Baseline"]),
      priority: pick([1, 2, 2, 3]),
      subject: pick([
        { namespaces: nsSel() },
        { pods: { namespaceSelector: nsSel(), podSelector: podSel() } },
      ]),
    };
    if (r() < 0.7) spec.ingress = some(() => rule(false), 3);
    if (r() < 0.7) spec.egress = some(() => rule(true), 3);
    return cnp(`cnp-${i}`, spec);
  };
  const networkPolicy = (i: number) => {
    const ns = pick(NAMESPACES);
    const ingress = r() < 0.5
      ? []
      : [{ from: [{ namespaceSelector: nsSel() }], ports: [{ port: 80 }] }];
    const egress = r() < 0.5 ? [] : [{ to: [{ podSelector: podSel() }] }];
    const types = pick([["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
    return policy(`${ns}/np-${i}`, { podSelector: podSel(), policyTypes: types, ingress, egress });
  };
  const state = (): PolicyState => {
    const nps = Array.from({ length: Math.floor(r() * 3) }, (_, i) => networkPolicy(i));
    const cnps = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, i) => clusterPolicy(i));
    const labels = Object.fromEntries(
      ["n1", "n2", "n3"].map((n) => [n, { role: pick(["infra", "worker"]) }]),
    );
    return withCluster(e2eCluster(nps), cnps, labels);
  };
  const flow = () => ({
    from: pick(ALL_PODS),
    to: r() < 0.8 ? pick(ALL_PODS) : pick(EXTERNAL),
    protocol: pick(["TCP", "UDP", "SCTP"] as const),
    port: pick([80, 81]),
  });
  return { state, flow };
}

Deno.test("random states: explain and the rendered tables agree on every flow", () => {
  let checked = 0, denied = 0, failClosed = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const g = generator(seed);
    const state = g.state();
    const cache = new Map<string, PolicyObjects>();
    const objectsOn = (node: string) => {
      let objs = cache.get(node);
      if (objs === undefined) {
        cache.set(node, objs = policyObjects(compilePolicies(state, { node })));
      }
      return objs;
    };
    failClosed += compilePolicies(state).clusterErrors?.length ?? 0;
    for (let i = 0; i < 25; i++) {
      const q = g.flow();
      if (q.from === q.to) continue;
      try {
        if (!explainChecked(state, q, objectsOn).allowed) denied++;
      } catch (err) {
        const policies = [...state.clusterPolicies!.values()].map((e) => e.policy);
        const nps: NetworkPolicy[] = [...state.policies.values()].map((e) => e.policy);
        throw new Error(
          `seed ${seed}: ${(err as Error).message}\n${JSON.stringify({ policies, nps }, null, 1)}`,
        );
      }
      checked++;
    }
  }
  // The states must exercise both answers and the fail-closed path, or they prove little.
  assertEquals(checked > 3000, true);
  assertEquals(denied > checked / 10 && denied < checked * 0.9, true, `${denied} of ${checked}`);
  assertEquals(failClosed > 5, true, `${failClosed} fail-closed policies`);
});
