// ClusterNetworkPolicy tiers as nftables objects (lib/policy/nft_tiers.ts through policyObjects):
// the chain shapes, one verdict-map lookup per direction, pod changes as elements only, and a
// table without ClusterNetworkPolicies exactly as before. What the chains decide is checked
// against explain in cnp_model_test.ts and cnp_conformance_test.ts.
import { assert, assertEquals } from "../../harness/assert.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { cnpPolicyRef, flowLogRules, planDeciders } from "../../../lib/policy/flow_log_rules.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import { cnp, withCluster } from "./cnp_fixtures.ts";
import { e2eCluster, pod, policy } from "./fixtures.ts";

const nsSel = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
const objectsOn = (state: PolicyState, node = "n1") =>
  policyObjects(compilePolicies(state, { node }));
const entryChain = (objs: ReturnType<typeof policyObjects>, map: string, ip: string) =>
  objs.sets.get(map)!.elements.get(ip)!.split(" jump ")[1];

// Its peers differ from every ClusterNetworkPolicy peer below: a set with the same addresses
// would be shared, named after the first rule (by name) that needs it.
const allowFromY = policy("x/from-y", {
  podSelector: {},
  ingress: [{
    from: [{
      namespaceSelector: { matchLabels: { ns: "y" } },
      podSelector: { matchLabels: { pod: "b" } },
    }],
    ports: [{ port: 80 }],
  }],
});
const passY = cnp("pass-y", {
  tier: "Admin",
  priority: 1,
  subject: { namespaces: nsSel("x") },
  ingress: [
    { action: "Pass", from: [{ namespaces: nsSel("y") }] },
    { action: "Deny", from: [{ namespaces: {} }] },
  ],
});

Deno.test("policyObjects() renders an Admin Pass as a goto to the NetworkPolicy chain, shared with NetworkPolicy-only targets", () => {
  const npOnly = objectsOn(e2eCluster([allowFromY]));
  const npChain = entryChain(npOnly, "ingress4", "10.0.1.1");
  const objs = objectsOn(withCluster(e2eCluster([allowFromY]), [passY]));
  const head = entryChain(objs, "ingress4", "10.0.1.1");
  assert(head !== npChain);
  const rules = objs.chains.get(head)!.rules;
  const [passSet, denySet] = [rules[0], rules[2]].map((r) => r.match(/@(\S+)/)![1]);
  assertEquals(rules, [
    `ip saddr @${passSet} goto ${npChain}`,
    `ip6 saddr @${passSet.replace(/_4$/, "_6")} goto ${npChain}`,
    `ip saddr @${denySet} counter name ingress_dropped drop`,
    `ip6 saddr @${denySet.replace(/_4$/, "_6")} counter name ingress_dropped drop`,
    `goto ${npChain}`,
  ]);
  // The rest is the very chain a target of that NetworkPolicy alone jumps to.
  assertEquals(objs.chains.get(npChain), npOnly.chains.get(npChain));
  // Still one map lookup per direction and family: the forward rules do not change.
  assertEquals(objs.forwardRules, npOnly.forwardRules);
});

Deno.test("policyObjects() writes Admin rules, the NetworkPolicy stage and Baseline into one chain when nothing passes", () => {
  const acceptZ = cnp("accept-z", {
    tier: "Admin",
    priority: 1,
    subject: { namespaces: nsSel("x") },
    egress: [{ action: "Accept", to: [{ networks: ["203.0.113.0/24"] }] }],
  });
  const denyRest = cnp("deny-rest", {
    tier: "Baseline",
    priority: 1,
    subject: { namespaces: nsSel("x") },
    egress: [
      { action: "Pass", to: [{ networks: ["198.51.100.0/24"] }] },
      { action: "Deny", to: [{ networks: ["0.0.0.0/0"] }] },
    ],
  });
  const objs = objectsOn(withCluster(e2eCluster(), [acceptZ, denyRest]));
  const rules = objs.chains.get(entryChain(objs, "egress4", "10.0.1.1"))!.rules;
  const sets = rules.map((r) => r.match(/@(\S+)/)![1]);
  // Egress allows `return` (the destination's ingress is judged next); Baseline's Pass is the
  // default, allow; a chain's end is the default too.
  assertEquals(rules, [
    `ip daddr @${sets[0]} return`,
    `ip daddr @${sets[1]} return`,
    `ip daddr @${sets[2]} counter name egress_dropped drop`,
  ]);
  assertEquals(objs.chains.size, 1);
  assertEquals([...objs.sets.get(sets[2])!.elements.values()], ["0.0.0.0/0"]);
  // NetworkPolicy isolation puts its allows and its drop before (and instead of) Baseline.
  const isolated = objectsOn(
    withCluster(e2eCluster([policy("x/deny-out", { podSelector: {}, policyTypes: ["Egress"] })]), [
      acceptZ,
      denyRest,
    ]),
  );
  assertEquals(isolated.chains.get(entryChain(isolated, "egress4", "10.0.1.1"))!.rules, [
    `ip daddr @${sets[0]} return`,
    "counter name egress_dropped drop",
  ]);
});

Deno.test("policyObjects() changes only elements when a pod joins a ClusterNetworkPolicy's subject or peers", () => {
  const base = withCluster(e2eCluster([allowFromY]), [passY]);
  const before = objectsOn(base);
  const pods = new Map(base.pods);
  // A new pod in x (a subject) on n1, and one in y (a Pass peer).
  pods.set("x/d", pod("x/d", { node: "n1", ips: ["10.0.1.9"], labels: { pod: "d" } }));
  pods.set("y/d", pod("y/d", { node: "n2", ips: ["10.0.2.9"], labels: { pod: "d" } }));
  const after = objectsOn({ ...base, pods });
  assertEquals(after.chains, before.chains);
  assertEquals([...after.sets.keys()], [...before.sets.keys()]);
  assertEquals(
    after.sets.get("ingress4")!.elements.get("10.0.1.9"),
    `10.0.1.9 : jump ${entryChain(before, "ingress4", "10.0.1.1")}`,
  );
  const passSet =
    before.chains.get(entryChain(before, "ingress4", "10.0.1.1"))!.rules[0].match(/@(\S+)/)![1];
  assert(after.sets.get(passSet)!.elements.has("10.0.2.9"));
  assert(!before.sets.get(passSet)!.elements.has("10.0.2.9"));
});

Deno.test("policyObjects() renders a table without ClusterNetworkPolicies exactly as before", () => {
  const state = e2eCluster([
    allowFromY,
    policy("y/deny-out", { podSelector: {}, policyTypes: ["Egress"] }),
  ]);
  const plain = objectsOn(state);
  assertEquals(objectsOn(withCluster(state, [])), plain);
  // One that selects no pod here changes nothing either.
  const elsewhere = cnp("elsewhere", {
    tier: "Admin",
    priority: 1,
    subject: { namespaces: nsSel("nobody") },
    ingress: [{ action: "Deny", from: [{ namespaces: {} }] }],
  });
  assertEquals(objectsOn(withCluster(state, [elsewhere])), plain);
});

Deno.test("policyObjects() with the flow log sends a Deny rule to a chain that logs its rule, then drops", () => {
  const state = withCluster(e2eCluster([allowFromY]), [passY]);
  const plain = objectsOn(state);
  const objs = policyObjects(compilePolicies(state, { node: "n1" }), { flowLog: true });
  const head = objs.chains.get(entryChain(objs, "ingress4", "10.0.1.1"))!.rules;
  const deny = head[2].match(/goto (\S+)$/)![1];
  assertEquals(
    head[2],
    plain.chains.get(entryChain(plain, "ingress4", "10.0.1.1"))!.rules[2]
      .replace("counter name ingress_dropped drop", `goto ${deny}`),
  );
  // pass-y's ingress rule 1 (the Deny), in its own chain: the log rules, the counted drop.
  assertEquals(objs.chains.get(deny)!.rules, [
    ...flowLogRules({ direction: "ingress", policies: [cnpPolicyRef("pass-y", 1)] }),
    "counter name ingress_dropped drop",
  ]);
  // The Pass leads to the NetworkPolicy chain, whose end logs x/from-y before its drop.
  const np = objs.chains.get(head[0].match(/goto (\S+)$/)![1])!.rules;
  assertEquals(np.slice(-5), [
    ...flowLogRules({ direction: "ingress", policies: ["x/from-y"] }),
    "counter name ingress_dropped drop",
  ]);
  // The deciders the agent attributes records by are exactly these two (and the plan's others).
  const deciders = planDeciders(compilePolicies(state, { node: "n1" }));
  assert(deciders.some((d) => d.policies[0] === "pass-y[1]" && d.direction === "ingress"));
  assert(deciders.some((d) => d.policies.join() === "x/from-y" && d.direction === "ingress"));
});
