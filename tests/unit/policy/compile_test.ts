// compilePolicies() plan shapes: peers as merged ranges, ports resolved, targets filtered, shared
// peers, errors; the Kubernetes documentation's examples as the renderer will read them.
import { formatRange } from "../../../lib/ip/range.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import type { AddressSet, AllowRule, PolicyPlan, TargetPlan } from "../../../lib/policy/plan.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { DOC_POLICY_SPEC, e2eCluster, namespace, pod, policy, stateOf } from "./fixtures.ts";

/** Peers as nftables element texts, per family. */
function texts(peers: AddressSet | "any"): { v4: string[]; v6: string[] } | "any" {
  if (peers === "any") return "any";
  return { v4: peers.v4.map((r) => formatRange(4, r)), v6: peers.v6.map((r) => formatRange(6, r)) };
}

function target(plan: PolicyPlan, key: string): TargetPlan {
  const found = plan.targets.find((t) => t.pod === key);
  if (found === undefined) throw new Error(`no target ${key} in ${plan.targets.map((t) => t.pod)}`);
  return found;
}

function only<T>(list: readonly T[] | undefined): T {
  assertEquals(list?.length, 1);
  return list![0];
}

// The documentation's test-network-policy, in a small cluster around it.
const docPolicy = policy("default/test-network-policy", DOC_POLICY_SPEC);
const docState = stateOf({
  pods: [
    pod("default/db", { labels: { role: "db" }, ips: ["10.244.1.10", "fd00::10"] }),
    pod("default/frontend", { labels: { role: "frontend" }, ips: ["10.244.1.20", "fd00::20"] }),
    pod("default/other", { labels: { role: "other" }, ips: ["10.244.1.30"] }),
    pod("myproject/api", { labels: { role: "api" }, ips: ["10.244.2.30"], node: "n2" }),
    pod("myproject/web", { labels: { role: "web" }, ips: ["10.244.2.31"], node: "n2" }),
    pod("elsewhere/frontend", { labels: { role: "frontend" }, ips: ["10.244.3.40"] }),
  ],
  namespaces: [
    namespace("default"),
    namespace("myproject", { project: "myproject" }),
    namespace("elsewhere"),
  ],
  policies: [docPolicy],
});

Deno.test("compilePolicies() compiles the documentation's test-network-policy", () => {
  const plan = compilePolicies(docState);
  assertEquals(plan.targets.map((t) => t.pod), ["default/db"]);
  const db = target(plan, "default/db");
  assertEquals([db.node, db.ips], ["n1", ["10.244.1.10", "fd00::10"]]);
  const ingress = only(db.ingress?.allow);
  assertEquals(db.ingress?.policies, ["default/test-network-policy"]);
  assertEquals([ingress.policy, ingress.rule], ["default/test-network-policy", 0]);
  // frontend pods of the policy's namespace (both families), every pod of project=myproject,
  // and 172.17.0.0/16 but 172.17.1.0/24; not the frontend of another namespace.
  assertEquals(texts(ingress.peers), {
    v4: [
      "10.244.1.20",
      "10.244.2.30/31",
      "172.17.0.0/24",
      "172.17.2.0-172.17.255.255",
    ],
    v6: ["fd00::20"],
  });
  assertEquals(ingress.ports, [{ kind: "range", protocol: "TCP", port: 6379, endPort: 6379 }]);
  const egress = only(db.egress?.allow);
  assertEquals(texts(egress.peers), { v4: ["10.0.0.0/24"], v6: [] });
  assertEquals(egress.ports, [{ kind: "range", protocol: "TCP", port: 5978, endPort: 5978 }]);
  assertEquals(plan.errors, []);
});

Deno.test("compilePolicies() leaves pods no policy selects out of the plan", () => {
  const plan = compilePolicies(docState);
  assert(!plan.targets.some((t) => t.pod === "default/frontend"));
  assertEquals(compilePolicies({ ...docState, policies: new Map() }), { targets: [], errors: [] });
});

Deno.test("compilePolicies() lists an isolated direction with no rules as allow []", () => {
  const deny = policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  const xa = target(compilePolicies(e2eCluster([deny])), "x/a");
  assertEquals(xa.ingress, { policies: ["x/deny-all"], allow: [] });
  assertEquals(xa.egress, { policies: ["x/deny-all"], allow: [] });
});

Deno.test("compilePolicies() leaves a direction out when no policy isolates it", () => {
  const deny = policy("x/deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
  const xa = target(compilePolicies(e2eCluster([deny])), "x/a");
  assertEquals("egress" in xa, false);
});

Deno.test("compilePolicies() ignores the rules of a direction the policy does not isolate", () => {
  const p = policy("x/ingress-only", {
    podSelector: {},
    policyTypes: ["Ingress"],
    ingress: [{}],
    egress: [{ ports: [{ port: 53, protocol: "UDP" }] }],
  });
  const xa = target(compilePolicies(e2eCluster([p])), "x/a");
  assertEquals("egress" in xa, false);
  assertEquals(xa.ingress?.allow.length, 1);
});

Deno.test("compilePolicies() gives absent or empty from/to and ports as any", () => {
  const p = policy("x/open", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{}, { from: [], ports: [] }],
  });
  const allow = target(compilePolicies(e2eCluster([p])), "x/a").ingress?.allow;
  assertEquals(allow, [
    { policy: "x/open", rule: 0, peers: "any", ports: "any" },
    { policy: "x/open", rule: 1, peers: "any", ports: "any" },
  ]);
});

Deno.test("compilePolicies() gives a protocol without port every port, and endPort a range", () => {
  const p = policy("x/ports", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ ports: [{ protocol: "UDP" }, { protocol: "TCP", port: 32000, endPort: 32768 }] }],
  });
  const rule = only(target(compilePolicies(e2eCluster([p])), "x/a").ingress?.allow);
  assertEquals(rule.ports, [
    { kind: "range", protocol: "UDP", port: 1, endPort: 65535 },
    { kind: "range", protocol: "TCP", port: 32000, endPort: 32768 },
  ]);
});

Deno.test("compilePolicies() shares one peers object among the targets of a rule", () => {
  const p = policy("x/from-y", {
    podSelector: {},
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const plan = compilePolicies(e2eCluster([p]));
  const peers = ["x/a", "x/b", "x/c"].map((k) => only(target(plan, k).ingress?.allow).peers);
  assert(peers[0] === peers[1] && peers[1] === peers[2], "peers are not the same object");
  assertEquals(texts(peers[0]), {
    v4: ["10.0.2.1-10.0.2.3"],
    v6: ["fd00::2:1-fd00::2:3"],
  });
});

Deno.test("compilePolicies() resolves an ingress named port on each target's own ports", () => {
  const named = policy("x/http", {
    podSelector: {},
    ingress: [{ ports: [{ port: "http" }, { port: 9999 }] }],
  });
  const state = stateOf({
    pods: [
      pod("x/a", { ips: ["10.0.1.1"], ports: [{ name: "http", port: 8080, protocol: "TCP" }] }),
      pod("x/b", {
        ips: ["10.0.1.2"],
        ports: [
          { name: "http", port: 9090, protocol: "TCP" },
          // Names are unique per container only: a second container may reuse one.
          { name: "http", port: 9091, protocol: "TCP" },
          { name: "http", port: 53, protocol: "UDP" },
        ],
      }),
      pod("x/c", { ips: ["10.0.1.3"], ports: [{ name: "metrics", port: 9100, protocol: "TCP" }] }),
    ],
    policies: [named],
  });
  const plan = compilePolicies(state);
  const range = (port: number) => ({ kind: "range", protocol: "TCP", port, endPort: port });
  assertEquals(only(target(plan, "x/a").ingress?.allow).ports, [range(8080), range(9999)]);
  assertEquals(only(target(plan, "x/b").ingress?.allow).ports, [
    range(9090),
    range(9091),
    range(9999),
  ]);
  assertEquals(only(target(plan, "x/c").ingress?.allow).ports, [range(9999)]);
  // A rule whose every port failed to resolve stays listed, matching nothing.
  const nameOnly = policy("x/http-only", {
    podSelector: {},
    ingress: [{ ports: [{ port: "http" }] }],
  });
  const c = target(compilePolicies({ ...state, policies: new Map([["x/h", nameOnly]]) }), "x/c");
  assertEquals(c.ingress?.allow, [{ policy: "x/http-only", rule: 0, peers: "any", ports: [] }]);
});

Deno.test("compilePolicies() resolves an egress named port to the peers' addresses and ports", () => {
  const p = policy("x/to-y-http", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{
      to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
      ports: [{ port: "serve-81-udp", protocol: "UDP" }, { port: 53, protocol: "UDP" }],
    }],
  });
  const rule = only(target(compilePolicies(e2eCluster([p])), "x/a").egress?.allow);
  assertEquals(rule.ports, [
    {
      kind: "named",
      protocol: "UDP",
      name: "serve-81-udp",
      // Pods of y only (the rule's peers), both families, IPv4 first.
      endpoints: [
        { ip: "10.0.2.1", port: 81 },
        { ip: "10.0.2.2", port: 81 },
        { ip: "10.0.2.3", port: 81 },
        { ip: "fd00::2:1", port: 81 },
        { ip: "fd00::2:2", port: 81 },
        { ip: "fd00::2:3", port: 81 },
      ],
    },
    { kind: "range", protocol: "UDP", port: 53, endPort: 53 },
  ]);
});

Deno.test("compilePolicies() takes every pod with the name for an egress named port to any", () => {
  const p = policy("x/to-any-http", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ ports: [{ port: "http" }] }],
  });
  const state = stateOf({
    pods: [
      pod("x/a", { ips: ["10.0.1.1"] }),
      pod("y/web", { ips: ["10.0.2.9"], ports: [{ name: "http", port: 8080, protocol: "TCP" }] }),
      pod("z/web", { ips: ["10.0.3.9"], ports: [{ name: "http", port: 80, protocol: "TCP" }] }),
      pod("z/udp", { ips: ["10.0.3.8"], ports: [{ name: "http", port: 80, protocol: "UDP" }] }),
    ],
    policies: [p],
  });
  const rule = only(target(compilePolicies(state), "x/a").egress?.allow);
  assertEquals(rule.peers, "any");
  assertEquals(rule.ports, [{
    kind: "named",
    protocol: "TCP",
    name: "http",
    endpoints: [{ ip: "10.0.2.9", port: 8080 }, { ip: "10.0.3.9", port: 80 }],
  }]);
});

Deno.test("compilePolicies() never makes hostNetwork pods or pods without addresses targets or peers", () => {
  const p = policy("x/from-everywhere", {
    podSelector: {},
    ingress: [{ from: [{ namespaceSelector: {} }] }],
  });
  const state = stateOf({
    pods: [
      pod("x/a", { ips: ["10.0.1.1"] }),
      pod("x/host", { ips: ["192.0.2.11"], hostNetwork: true }),
      pod("x/pending", { ips: [] }),
      pod("y/b", { ips: ["10.0.2.2"] }),
      pod("y/host", { ips: ["192.0.2.12"], hostNetwork: true }),
    ],
    policies: [p],
  });
  const plan = compilePolicies(state);
  assertEquals(plan.targets.map((t) => t.pod), ["x/a"]);
  assertEquals(texts(only(plan.targets[0].ingress?.allow).peers), {
    v4: ["10.0.1.1", "10.0.2.2"],
    v6: [],
  });
});

Deno.test("compilePolicies() restricts targets to a node, to listed pods, or both", () => {
  const deny = policy("x/deny", { podSelector: {}, policyTypes: ["Ingress"] });
  const allowFromY = policy("z/from-y", {
    podSelector: {},
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const state = e2eCluster([deny, allowFromY]);
  const keys = (plan: PolicyPlan) => plan.targets.map((t) => t.pod);
  assertEquals(keys(compilePolicies(state)), ["x/a", "x/b", "x/c", "z/a", "z/b", "z/c"]);
  assertEquals(keys(compilePolicies(state, { node: "n2" })), ["x/b", "z/b"]);
  assertEquals(keys(compilePolicies(state, { pods: ["z/c", "y/a", "nope/x"] })), ["z/c"]);
  assertEquals(keys(compilePolicies(state, { node: "n1", pods: ["x/a", "x/b"] })), ["x/a"]);
  // Peers still come from every pod in the cluster, on any node.
  const zb = only(compilePolicies(state, { node: "n2" }).targets[1].ingress?.allow);
  assertEquals(texts(zb.peers), { v4: ["10.0.2.1-10.0.2.3"], v6: ["fd00::2:1-fd00::2:3"] });
});

Deno.test("compilePolicies() sorts targets and policies and keeps policy then rule order", () => {
  const b = policy("x/b-policy", { podSelector: {}, ingress: [{ ports: [{ port: 2 }] }, {}] });
  const a = policy("x/a-policy", { podSelector: {}, ingress: [{ ports: [{ port: 1 }] }] });
  const plan = compilePolicies(e2eCluster([b, a]));
  const xa = target(plan, "x/a");
  assertEquals(xa.ingress?.policies, ["x/a-policy", "x/b-policy"]);
  assertEquals(xa.ingress?.allow.map((r: AllowRule) => [r.policy, r.rule]), [
    ["x/a-policy", 0],
    ["x/b-policy", 0],
    ["x/b-policy", 1],
  ]);
  const sorted = [...plan.targets.map((t) => t.pod)].sort();
  assertEquals(plan.targets.map((t) => t.pod), sorted);
});

Deno.test("compilePolicies() lists a policy with an error and gives it no allow rules", () => {
  // Built by hand with rules left in: compile must not trust the entry's fallback alone.
  const broken = policy("x/broken", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{}] });
  const withError = {
    ...broken,
    error: 'spec.ingress[0].ports[0].protocol: "ICMP" is not supported',
  };
  const plan = compilePolicies(e2eCluster([withError]));
  assertEquals(plan.targets.map((t) => t.pod), ["x/a"]);
  assertEquals(target(plan, "x/a").ingress, { policies: ["x/broken"], allow: [] });
  assertEquals(plan.errors, [{ policy: "x/broken", error: withError.error }]);
  // Listed even when it selects no pod this compile looks at.
  assertEquals(compilePolicies(e2eCluster([withError]), { node: "n2" }).errors.length, 1);
});

Deno.test("compilePolicies() keeps each family of an ipBlock pair in its own list", () => {
  const p = policy("x/dual", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{
      to: [
        { ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "192.168.0.0/16"] } },
        { ipBlock: { cidr: "::/0", except: ["fd00::/8"] } },
      ],
    }],
  });
  const rule = only(target(compilePolicies(e2eCluster([p])), "x/a").egress?.allow);
  assertEquals(texts(rule.peers), {
    v4: ["0.0.0.0-9.255.255.255", "11.0.0.0-192.167.255.255", "192.169.0.0-255.255.255.255"],
    v6: ["::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::/7"],
  });
});

Deno.test("compilePolicies() merges a pod peer inside an ipBlock into one range", () => {
  const p = policy("x/overlap", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{ ipBlock: { cidr: "10.0.2.0/24" } }, {
        namespaceSelector: { matchLabels: { ns: "y" } },
      }],
    }],
  });
  const rule = only(target(compilePolicies(e2eCluster([p])), "x/a").ingress?.allow);
  assertEquals(texts(rule.peers), { v4: ["10.0.2.0/24"], v6: ["fd00::2:1-fd00::2:3"] });
});

Deno.test("compilePolicies() shares peers across namespaces only when they do not depend on one", () => {
  const fromB = { ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] };
  const fromZ = { ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }] };
  const plan = compilePolicies(e2eCluster([
    policy("x/from-b", { podSelector: { matchLabels: { pod: "a" } }, ...fromB }),
    policy("y/from-b", { podSelector: { matchLabels: { pod: "a" } }, ...fromB }),
    policy("x/from-z", { podSelector: { matchLabels: { pod: "c" } }, ...fromZ }),
    policy("y/from-z", { podSelector: { matchLabels: { pod: "c" } }, ...fromZ }),
  ]));
  // podSelector alone means the policy's own namespace: x/b for x, y/b for y.
  assertEquals(texts(only(target(plan, "x/a").ingress?.allow).peers), {
    v4: ["10.0.1.2"],
    v6: ["fd00::1:2"],
  });
  assertEquals(texts(only(target(plan, "y/a").ingress?.allow).peers), {
    v4: ["10.0.2.2"],
    v6: ["fd00::2:2"],
  });
  const xc = only(target(plan, "x/c").ingress?.allow).peers;
  assert(xc === only(target(plan, "y/c").ingress?.allow).peers, "same peers, not shared");
});

Deno.test("compilePolicies() sees a pod's new addresses in the next compile", () => {
  const p = policy("x/from-y-a", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: { matchLabels: { ns: "y" } },
        podSelector: { matchLabels: { pod: "a" } },
      }],
    }],
  });
  const before = e2eCluster([p]);
  const peersOf = (s: typeof before) =>
    texts(only(target(compilePolicies(s), "x/a").ingress?.allow).peers);
  assertEquals(peersOf(before), { v4: ["10.0.2.1"], v6: ["fd00::2:1"] });
  assertEquals(peersOf(before), { v4: ["10.0.2.1"], v6: ["fd00::2:1"] });
  const pods = new Map(before.pods);
  pods.set("y/a", { ...pods.get("y/a")!, ips: ["10.0.2.77"] });
  assertEquals(peersOf({ ...before, pods }), { v4: ["10.0.2.77"], v6: [] });
  assertEquals(peersOf(before), { v4: ["10.0.2.1"], v6: ["fd00::2:1"] });
});
