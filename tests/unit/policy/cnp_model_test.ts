// ClusterNetworkPolicy semantics on the model (compile + explain, every answer checked against the
// rendered tables): the API documentation's examples, tiers and Pass around NetworkPolicy on both
// sides of a flow, priorities and the same-priority tie-break, networks, node peers, named ports,
// both families, and policies enforced fail-closed.
import { assert, assertEquals } from "../../harness/assert.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import type { Protocol } from "../../../lib/kube/policy_objects.ts";
import { cnp, DOC_EXAMPLES, explainChecked, withCluster } from "./cnp_fixtures.ts";
import { e2eCluster, namespace, pod, policy, stateOf } from "./fixtures.ts";
import { parseClusterNetworkPolicy } from "../../../lib/kube/cluster_network_policy.ts";

const fromDoc = (obj: unknown) => {
  const parsed = parseClusterNetworkPolicy(obj);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.entry;
};

/** Whether the flow is allowed (explain, checked against the tables). */
function allowed(
  state: PolicyState,
  from: string,
  to: string,
  protocol: Protocol = "TCP",
  port = 80,
) {
  return explainChecked(state, { from, to, protocol, port }).allowed;
}

/**
 * The cluster the documentation's stories talk about: a sensitive namespace, monitoring,
 * kube-dns, a tenant pair, bar-ns-1's public service pods (named port web-alt, 8443 on one and
 * 9443 on the other) and foo-ns-1's clients.
 */
function docCluster(): PolicyState {
  const web = [{ name: "web-alt", port: 8443, protocol: "TCP" as const }];
  return stateOf({
    pods: [
      pod("sensitive-ns/db", { node: "n1", ips: ["10.1.0.1"] }),
      pod("monitoring-ns/prom", { node: "n2", ips: ["10.1.0.2"] }),
      pod("kube-system/coredns", { node: "n1", ips: ["10.1.0.3"], labels: { app: "kube-dns" } }),
      pod("bar-ns-1/pub-a", {
        node: "n2",
        ips: ["10.1.0.4"],
        labels: { app: "svc-pub" },
        ports: web,
      }),
      pod("bar-ns-1/pub-b", {
        node: "n3",
        ips: ["10.1.0.5"],
        labels: { app: "svc-pub" },
        ports: [{ name: "web-alt", port: 9443, protocol: "TCP" }],
      }),
      pod("bar-ns-1/private", { node: "n3", ips: ["10.1.0.6"], labels: { app: "private" } }),
      pod("foo-ns-1/client", { node: "n1", ips: ["10.1.0.7"] }),
      pod("tenant-a/app", { node: "n2", ips: ["10.1.0.8"] }),
    ],
    namespaces: [
      namespace("sensitive-ns"),
      namespace("monitoring-ns"),
      namespace("kube-system"),
      namespace("bar-ns-1"),
      namespace("foo-ns-1"),
      namespace("tenant-a", { tenant: "a" }),
    ],
    nodes: { n1: ["192.0.2.11"], n2: ["192.0.2.12"], n3: ["192.0.2.13"] },
  });
}

Deno.test("story 1: an Admin Deny isolates sensitive-ns from every pod, not from other addresses", () => {
  const state = withCluster(docCluster(), [fromDoc(DOC_EXAMPLES.story1)]);
  assertEquals(allowed(state, "foo-ns-1/client", "sensitive-ns/db"), false);
  assertEquals(allowed(state, "monitoring-ns/prom", "sensitive-ns/db", "UDP", 53), false);
  // `namespaces: {}` selects pods: an address outside the cluster is no peer of it.
  assertEquals(allowed(state, "203.0.113.9", "sensitive-ns/db"), true);
  // Only ingress has rules: the pod's egress is untouched.
  assertEquals(allowed(state, "sensitive-ns/db", "foo-ns-1/client"), true);
  const e = explainChecked(state, {
    from: "foo-ns-1/client",
    to: "sensitive-ns/db",
    protocol: "TCP",
    port: 80,
  });
  assertEquals(e.ingress.stage, "Admin");
  assertEquals(e.ingress.decidedBy, {
    tier: "Admin",
    policy: "cluster-wide-deny-example",
    priority: 10,
    rule: 0,
    name: "select-all-deny-all",
    action: "Deny",
  });
  assertEquals(
    e.ingress.reason,
    'denied by ClusterNetworkPolicy cluster-wide-deny-example (Admin, priority 10) ingress rule 0 "select-all-deny-all"',
  );
  assertEquals(e.egress.stage, "default");
});

Deno.test("story 2: an Admin Accept holds against NetworkPolicies that isolate both ends", () => {
  const isolate = (ns: string) =>
    policy(`${ns}/deny-all`, { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  const base = docCluster();
  const state = withCluster(
    {
      ...base,
      policies: stateOf({
        pods: [],
        policies: [
          isolate("sensitive-ns"),
          isolate("monitoring-ns"),
          isolate("foo-ns-1"),
          isolate("kube-system"),
        ],
      }).policies,
    },
    [fromDoc(DOC_EXAMPLES.story2)],
  );
  // Monitoring is accepted into every pod, over the destination's NetworkPolicy; its own
  // egress is still its NetworkPolicy's (the story's policy has no egress rule for it).
  assertEquals(allowed(state, "monitoring-ns/prom", "sensitive-ns/db"), false);
  const e = explainChecked(state, {
    from: "monitoring-ns/prom",
    to: "sensitive-ns/db",
    protocol: "TCP",
    port: 80,
  });
  assertEquals(e.ingress.allowed, true);
  assertEquals(e.ingress.stage, "Admin");
  assertEquals(e.egress.stage, "NetworkPolicy");
  // Every pod's egress to kube-dns is accepted over its NetworkPolicy; kube-dns's ingress is
  // still its own NetworkPolicy's to decide (deny-all here).
  const dns = explainChecked(state, {
    from: "foo-ns-1/client",
    to: "kube-system/coredns",
    protocol: "UDP",
    port: 53,
  });
  assertEquals(dns.egress.allowed, true);
  assertEquals(dns.egress.decidedBy?.name, "allow-kube-dns-egress");
  assertEquals(dns.ingress.allowed, false);
  // Without kube-system's own policy the whole flow goes through.
  const open = withCluster(
    { ...base, policies: stateOf({ pods: [], policies: [isolate("foo-ns-1")] }).policies },
    [fromDoc(DOC_EXAMPLES.story2)],
  );
  assertEquals(allowed(open, "foo-ns-1/client", "kube-system/coredns", "UDP", 53), true);
  assertEquals(allowed(open, "foo-ns-1/client", "bar-ns-1/private"), false); // NetworkPolicy's
});

Deno.test("story 3: a Pass delegates the public service's ports to NetworkPolicy, named ports per destination", () => {
  const denyEgress = policy("foo-ns-1/deny-egress", { podSelector: {}, policyTypes: ["Egress"] });
  const delegate = fromDoc(DOC_EXAMPLES.story3);
  const baseline = cnp("baseline-deny", {
    tier: "Baseline",
    priority: 1,
    subject: { namespaces: {} },
    egress: [{
      action: "Deny",
      to: [{ namespaces: { matchLabels: { "kubernetes.io/metadata.name": "bar-ns-1" } } }],
    }],
  });
  const withNp = withCluster(
    { ...docCluster(), policies: stateOf({ pods: [], policies: [denyEgress] }).policies },
    [delegate, baseline],
  );
  const without = withCluster(docCluster(), [delegate, baseline]);
  // Passed to NetworkPolicy: foo-ns-1's deny-all decides there; elsewhere Baseline denies.
  const passed = explainChecked(withNp, {
    from: "foo-ns-1/client",
    to: "bar-ns-1/pub-a",
    protocol: "TCP",
    port: 8080,
  });
  assertEquals(passed.allowed, false);
  assertEquals(passed.egress.stage, "NetworkPolicy");
  assertEquals(passed.egress.passedBy?.map((r) => r.policy), ["pub-svc-delegate-example"]);
  const toBaseline = explainChecked(without, {
    from: "foo-ns-1/client",
    to: "bar-ns-1/pub-a",
    protocol: "UDP",
    port: 53,
  });
  assertEquals(toBaseline.egress.stage, "Baseline");
  assertEquals(toBaseline.allowed, false);
  // web-alt is 8443 on pub-a and 9443 on pub-b: the Pass matches each at its own number only.
  const named = (to: string, port: number) =>
    explainChecked(without, { from: "foo-ns-1/client", to, protocol: "TCP", port }).egress.passedBy
      ?.length ?? 0;
  assertEquals([named("bar-ns-1/pub-a", 8443), named("bar-ns-1/pub-a", 9443)], [1, 0]);
  assertEquals([named("bar-ns-1/pub-b", 9443), named("bar-ns-1/pub-b", 8443)], [1, 0]);
  // Not a public pod: no Pass, straight to Baseline.
  assertEquals(named("bar-ns-1/private", 8080), 0);
});

Deno.test("story 4: the unimplementable tenant policy fails closed on the tenants' ingress", () => {
  const state = withCluster(docCluster(), [fromDoc(DOC_EXAMPLES.story4)]);
  const plan = compilePolicies(state);
  assertEquals(plan.clusterErrors, [{
    policy: "tenant-creation-example",
    error: "spec.ingress[0].from[0]: no field set (want exactly one of namespaces, pods)",
  }]);
  // Everything into the tenant is denied, from pods and from anywhere else.
  assertEquals(allowed(state, "foo-ns-1/client", "tenant-a/app"), false);
  assertEquals(allowed(state, "203.0.113.9", "tenant-a/app", "UDP", 53), false);
  // Not a tenant, or the tenant's egress: untouched.
  assertEquals(allowed(state, "tenant-a/app", "foo-ns-1/client"), true);
  const e = explainChecked(state, {
    from: "foo-ns-1/client",
    to: "tenant-a/app",
    protocol: "TCP",
    port: 80,
  });
  assertEquals(e.ingress.decidedBy?.rule, -1);
  assert(
    e.ingress.reason.includes("which cannot be enforced exactly: spec.ingress[0].from[0]"),
    e.ingress.reason,
  );
});

Deno.test("story 5: a Baseline Deny flips the default, and NetworkPolicy overrides it", () => {
  const allowFromFoo = policy("bar-ns-1/from-foo", {
    podSelector: { matchLabels: { app: "svc-pub" } },
    ingress: [{
      from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "foo-ns-1" } } }],
    }],
  });
  const state = withCluster(
    { ...docCluster(), policies: stateOf({ pods: [], policies: [allowFromFoo] }).policies },
    [fromDoc(DOC_EXAMPLES.story5)],
  );
  assertEquals(allowed(state, "foo-ns-1/client", "sensitive-ns/db"), false);
  assertEquals(allowed(state, "foo-ns-1/client", "bar-ns-1/pub-a"), true);
  // Isolated by the NetworkPolicy, which decides: Baseline is never reached, allow or deny.
  assertEquals(allowed(state, "tenant-a/app", "bar-ns-1/pub-a"), false);
  const np = explainChecked(state, {
    from: "tenant-a/app",
    to: "bar-ns-1/pub-a",
    protocol: "TCP",
    port: 80,
  });
  assertEquals(np.ingress.stage, "NetworkPolicy");
  assertEquals(np.ingress.policies, ["bar-ns-1/from-foo"]);
  // Addresses that are no pod are no peer of `namespaces: {}`.
  assertEquals(allowed(state, "203.0.113.9", "sensitive-ns/db"), true);
});

// ---- Tiers, priorities and Pass --------------------------------------------------------------

const nsSel = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
const admin = (name: string, priority: number, spec: Record<string, unknown>) =>
  cnp(name, { tier: "Admin", priority, subject: { namespaces: nsSel("x") }, ...spec });
const baseline = (name: string, priority: number, spec: Record<string, unknown>) =>
  cnp(name, { tier: "Baseline", priority, subject: { namespaces: nsSel("x") }, ...spec });
const fromNs = (action: string, ns: string, extra: Record<string, unknown> = {}) => ({
  action,
  from: [{ namespaces: nsSel(ns) }],
  ...extra,
});
const toNs = (action: string, ns: string, extra: Record<string, unknown> = {}) => ({
  action,
  to: [{ namespaces: nsSel(ns) }],
  ...extra,
});

Deno.test("tiers: lower priority first; same priority by name; rules in order", () => {
  const deny10 = admin("deny", 10, { ingress: [fromNs("Deny", "y")] });
  const accept5 = admin("zz-accept", 5, { ingress: [fromNs("Accept", "y")] });
  assertEquals(allowed(withCluster(e2eCluster(), [deny10, accept5]), "y/a", "x/a"), true);
  const accept20 = admin("zz-accept", 20, { ingress: [fromNs("Accept", "y")] });
  assertEquals(allowed(withCluster(e2eCluster(), [deny10, accept20]), "y/a", "x/a"), false);
  // Same priority: the name decides (upstream leaves it open; ours is documented).
  const a = admin("a-accept", 10, { ingress: [fromNs("Accept", "y")] });
  const b = admin("b-deny", 10, { ingress: [fromNs("Deny", "y")] });
  assertEquals(allowed(withCluster(e2eCluster(), [b, a]), "y/a", "x/a"), true);
  const a2 = admin("a-deny", 10, { ingress: [fromNs("Deny", "y")] });
  const b2 = admin("b-accept", 10, { ingress: [fromNs("Accept", "y")] });
  assertEquals(allowed(withCluster(e2eCluster(), [b2, a2]), "y/a", "x/a"), false);
  // Within a policy, rule order: the first match decides.
  const ordered = admin("o", 1, {
    ingress: [
      fromNs("Deny", "y", { protocols: [{ tcp: { destinationPort: { number: 80 } } }] }),
      fromNs("Accept", "y"),
    ],
  });
  const s = withCluster(e2eCluster(), [ordered]);
  assertEquals([allowed(s, "y/a", "x/a", "TCP", 80), allowed(s, "y/a", "x/a", "TCP", 81)], [
    false,
    true,
  ]);
  const plan = compilePolicies(withCluster(e2eCluster(), [deny10, accept5, b, a]), {
    pods: ["x/a"],
  });
  assertEquals(
    plan.targets[0].cluster?.ingress?.admin.map((r) => `${r.priority}/${r.policy}/${r.rule}`),
    ["5/zz-accept/0", "10/a-accept/0", "10/b-deny/0", "10/deny/0"],
  );
});

Deno.test("tiers: an Admin Pass skips the rest of Admin to NetworkPolicy, on ingress and on egress", () => {
  const pass = admin("pass", 1, { ingress: [fromNs("Pass", "y")], egress: [toNs("Pass", "y")] });
  const deny = admin("deny", 2, { ingress: [fromNs("Deny", "y")], egress: [toNs("Deny", "y")] });
  const allowFromY = policy("x/from-y", {
    podSelector: {},
    policyTypes: ["Ingress", "Egress"],
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] }],
  });
  const s = withCluster(e2eCluster([allowFromY]), [pass, deny]);
  assertEquals(allowed(s, "y/b", "x/a"), true); // Pass, then the NetworkPolicy's allow
  assertEquals(allowed(s, "x/a", "y/b", "TCP", 80), true);
  assertEquals(allowed(s, "x/a", "y/b", "TCP", 81), false); // NetworkPolicy's egress: port 80 only
  assertEquals(allowed(s, "z/b", "x/a"), false); // no Pass for z: the NetworkPolicy isolates
  // Without the Pass, the Deny at priority 2 wins over any NetworkPolicy.
  const noPass = withCluster(e2eCluster([allowFromY]), [deny]);
  assertEquals(allowed(noPass, "y/b", "x/a"), false);
  assertEquals(allowed(noPass, "x/a", "y/b"), false);
});

Deno.test("tiers: Baseline counts only where no NetworkPolicy isolates; a Baseline Pass is the default", () => {
  const denyY = baseline("deny-y", 5, { ingress: [fromNs("Deny", "y")] });
  const acceptZ = baseline("accept-z", 5, { ingress: [fromNs("Accept", "z")] });
  const isolate = policy("x/deny-all", { podSelector: { matchLabels: { pod: "a" } } });
  const s = withCluster(e2eCluster([isolate]), [denyY, acceptZ]);
  assertEquals(allowed(s, "y/a", "x/b"), false); // Baseline denies
  assertEquals(allowed(s, "y/a", "x/a"), false); // the NetworkPolicy isolates (and decides)
  assertEquals(allowed(s, "z/a", "x/a"), false); // Baseline's Accept is never reached
  assertEquals(allowed(s, "z/a", "x/b"), true);
  const passFirst = baseline("a-pass", 1, { ingress: [fromNs("Pass", "y")] });
  const p = withCluster(e2eCluster(), [passFirst, denyY]);
  const e = explainChecked(p, { from: "y/a", to: "x/b", protocol: "TCP", port: 80 });
  assertEquals(e.allowed, true);
  assertEquals(e.ingress.stage, "default");
  assertEquals(e.ingress.passedBy?.map((r) => `${r.tier}/${r.policy}`), ["Baseline/a-pass"]);
});

Deno.test("tiers: both ends must accept: an egress Accept does not open the destination's ingress", () => {
  const out = cnp("x-out", {
    tier: "Admin",
    priority: 1,
    subject: { namespaces: nsSel("x") },
    egress: [toNs("Accept", "y")],
  });
  const yIn = cnp("y-in", {
    tier: "Admin",
    priority: 2,
    subject: { namespaces: nsSel("y") },
    ingress: [fromNs("Deny", "x")],
  });
  const s = withCluster(e2eCluster(), [out, yIn]);
  const e = explainChecked(s, { from: "x/a", to: "y/b", protocol: "TCP", port: 80 });
  assertEquals([e.egress.allowed, e.ingress.allowed, e.allowed], [true, false, false]);
  // Same node (x/a and y/a are both on n1): one table, both chains.
  assertEquals(allowed(s, "x/a", "y/a"), false);
});

// ---- Peers ------------------------------------------------------------------------------

Deno.test("networks: a narrower Deny before a wider Accept, each family its own", () => {
  const nets = admin("nets", 3, {
    egress: [
      { action: "Deny", to: [{ networks: ["198.51.100.0/25", "fd00:dead::/64"] }] },
      { action: "Accept", to: [{ networks: ["198.51.100.0/24", "fd00:dead::/48"] }] },
      { action: "Deny", to: [{ networks: ["0.0.0.0/0"] }] },
    ],
  });
  const s = withCluster(e2eCluster(), [nets]);
  assertEquals(allowed(s, "x/a", "198.51.100.7"), false);
  assertEquals(allowed(s, "x/a", "198.51.100.200"), true);
  assertEquals(allowed(s, "x/a", "203.0.113.1"), false);
  assertEquals(allowed(s, "x/a", "fd00:dead::7"), false);
  assertEquals(allowed(s, "x/a", "fd00:dead:0:1::7"), true);
  // 0.0.0.0/0 is IPv4's: an IPv6 destination outside the Accept meets no rule.
  assertEquals(allowed(s, "x/a", "2001:db8::1"), true);
  // Pods are addresses too: 0.0.0.0/0 covers y/a's IPv4 address.
  assertEquals(allowed(s, "x/a", "y/a"), false);
  const e = explainChecked(s, { from: "x/a", to: "198.51.100.200", protocol: "UDP", port: 53 });
  assertEquals(e.egress.decidedBy?.rule, 1);
});

Deno.test("nodes: a node label selector matches those nodes' addresses, kept current with the nodes", () => {
  const noInfra = admin("no-infra", 1, {
    egress: [{ action: "Deny", to: [{ nodes: { matchLabels: { role: "infra" } } }] }],
  });
  const labels = { n1: { role: "infra" }, n2: { role: "infra" }, n3: { role: "worker" } };
  const s = withCluster(e2eCluster(), [noInfra], labels);
  // x/b runs on n2: n1 is another infra node, n3 a worker, n2 its own node (always allowed).
  assertEquals(allowed(s, "x/b", "192.0.2.11"), false);
  assertEquals(allowed(s, "x/b", "192.0.2.13"), true);
  assertEquals(allowed(s, "x/b", "192.0.2.12"), true);
  assertEquals(
    explainChecked(s, { from: "x/b", to: "192.0.2.12", protocol: "TCP", port: 22 }).egress.stage,
    "always",
  );
  // n3 becomes infra, n1 leaves: the same chains, other set elements.
  const moved = withCluster(e2eCluster(), [noInfra], {
    n1: {},
    n2: { role: "infra" },
    n3: { role: "infra" },
  });
  assertEquals(allowed(moved, "x/b", "192.0.2.11"), true);
  assertEquals(allowed(moved, "x/b", "192.0.2.13"), false);
  // Nodes coming and going, or relabelled, change set elements only: the same chains.
  const objs = (st: PolicyState) => policyObjects(compilePolicies(st, { node: "n2" }));
  assertEquals(objs(s).chains, objs(moved).chains);
  assertEquals([...objs(s).sets.keys()], [...objs(moved).sets.keys()]);
});

Deno.test("named ports: ingress resolves on the target, egress on each destination, any protocol", () => {
  const dnsIn = admin("dns-in", 1, {
    ingress: [
      fromNs("Accept", "y", { protocols: [{ destinationNamedPort: "serve-80-udp" }] }),
      fromNs("Deny", "y"),
    ],
  });
  const s = withCluster(e2eCluster(), [dnsIn]);
  assertEquals(allowed(s, "y/a", "x/a", "UDP", 80), true);
  assertEquals(allowed(s, "y/a", "x/a", "TCP", 80), false); // serve-80-udp is UDP
  const webOut = cnp("web-out", {
    tier: "Baseline",
    priority: 1,
    subject: { namespaces: nsSel("x") },
    egress: [
      toNs("Accept", "y", { protocols: [{ destinationNamedPort: "serve-81-tcp" }] }),
      toNs("Deny", "y"),
    ],
  });
  const t = withCluster(e2eCluster(), [webOut]);
  assertEquals(allowed(t, "x/a", "y/c", "TCP", 81), true);
  assertEquals(allowed(t, "x/a", "y/c", "TCP", 80), false);
  assertEquals(allowed(t, "x/a", "y/c", "SCTP", 81), false);
});

// ---- Bad input --------------------------------------------------------------------------

Deno.test("fail closed: a broken policy denies its subjects where it has rules, at its tier and priority", () => {
  const broken = admin("broken", 10, {
    egress: [{ action: "Deny", to: [{ networks: ["10.0.0.0/99"] }] }],
  });
  const before = admin("before", 5, { egress: [toNs("Accept", "y")] });
  const after = admin("after", 20, { egress: [toNs("Accept", "z")] });
  const s = withCluster(e2eCluster(), [broken, before, after]);
  assertEquals(allowed(s, "x/a", "y/b"), true); // an earlier Accept still decides
  assertEquals(allowed(s, "x/a", "z/b"), false); // a later one never gets a say
  assertEquals(allowed(s, "x/a", "203.0.113.1", "UDP", 53), false); // every destination
  assertEquals(allowed(s, "y/a", "x/a"), true); // no ingress rules: ingress untouched
  assertEquals(allowed(s, "y/a", "z/a"), true); // other pods: untouched
  const e = explainChecked(s, { from: "x/a", to: "z/b", protocol: "TCP", port: 80 });
  assertEquals(
    e.egress.reason,
    'denied by ClusterNetworkPolicy broken (Admin, priority 10), which cannot be enforced exactly: spec.egress[0].to[0].networks[0]: "10.0.0.0/99" is not a CIDR',
  );
  assertEquals(compilePolicies(s).clusterErrors?.map((x) => x.policy), ["broken"]);
  // In the Baseline tier it fails closed there: a NetworkPolicy that isolates still decides.
  const brokenBaseline = baseline("broken", 10, {
    ingress: [{ action: "Shrug", from: [{ namespaces: {} }] }],
  });
  const allowFromY = policy("x/from-y", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const b = withCluster(e2eCluster([allowFromY]), [brokenBaseline]);
  assertEquals(allowed(b, "y/b", "x/a"), true);
  assertEquals(allowed(b, "y/b", "x/b"), false);
});

Deno.test("without ClusterNetworkPolicies explain and the plan are NetworkPolicy's alone", () => {
  const np = policy("x/deny-all", { podSelector: {} });
  const plain = e2eCluster([np]);
  const empty = withCluster(plain, []);
  assertEquals(compilePolicies(empty), compilePolicies(plain));
  const e = explainChecked(empty, { from: "y/a", to: "x/a", protocol: "TCP", port: 80 });
  assertEquals(e.ingress.stage, undefined);
  assertEquals("clusterErrors" in compilePolicies(plain), false);
  // With one (selecting nobody) the plan gains clusterErrors and explain its stages.
  const other = withCluster(plain, [
    cnp("nobody", {
      tier: "Admin",
      priority: 1,
      subject: { namespaces: nsSel("none") },
      ingress: [fromNs("Deny", "y")],
    }),
  ]);
  assertEquals(compilePolicies(other).targets, compilePolicies(plain).targets);
  assertEquals(
    explainChecked(other, { from: "y/a", to: "x/a", protocol: "TCP", port: 80 }).ingress.stage,
    "NetworkPolicy",
  );
});
