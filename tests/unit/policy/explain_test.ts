// explainFlow (lib/policy/explain.ts): verdicts and reasons per direction, the always-allowed
// cases, the address family used, the errors, and agreement with the full compiled plan.
import { explainFlow } from "../../../lib/policy/explain.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import { assert, assertEquals, assertThrows } from "../../harness/assert.ts";
import { ALL_PODS, e2eCluster, pod, policy, stateOf, truthTableDiff } from "./fixtures.ts";

const denyIngress = policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress"] });
const denyEgress = policy("x/deny-egress", { podSelector: {}, policyTypes: ["Egress"] });
const tcp80 = { protocol: "TCP" as const, port: 80 };

Deno.test("explainFlow() says neither end is isolated when no policy selects them", () => {
  assertEquals(explainFlow(e2eCluster(), { from: "y/b", to: "x/a", ...tcp80 }), {
    allowed: true,
    src: "10.0.2.2",
    dst: "10.0.1.1",
    egress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for egress" },
    ingress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for ingress" },
  });
});

Deno.test("explainFlow() names the isolating policy when no rule allows the flow", () => {
  const e = explainFlow(e2eCluster([denyIngress]), { from: "y/b", to: "x/a", ...tcp80 });
  assertEquals(e.allowed, false);
  assertEquals(e.ingress, {
    allowed: false,
    policies: ["x/deny-all"],
    allowedBy: [],
    reason: "isolated by x/deny-all and no rule allows TCP 80 from 10.0.2.2",
  });
  assertEquals(e.egress.allowed, true);
});

Deno.test("explainFlow() names every rule that allows the flow", () => {
  const web = policy("x/allow-web", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ ports: [{ port: 443 }] }, {
      from: [{ namespaceSelector: {} }],
      ports: [{ port: 80 }],
    }],
  });
  const fromY = policy("x/from-y", {
    podSelector: {},
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const e = explainFlow(e2eCluster([denyIngress, web, fromY]), {
    from: "y/b",
    to: "x/a",
    ...tcp80,
  });
  assertEquals(e.ingress, {
    allowed: true,
    policies: ["x/allow-web", "x/deny-all", "x/from-y"],
    allowedBy: [{ policy: "x/allow-web", rule: 1 }, { policy: "x/from-y", rule: 0 }],
    reason: "allowed by x/allow-web ingress rule 1, x/from-y ingress rule 0",
  });
  const other = explainFlow(e2eCluster([web]), {
    from: "y/b",
    to: "x/a",
    protocol: "UDP",
    port: 80,
  });
  assertEquals(
    other.ingress.reason,
    "isolated by x/allow-web and no rule allows UDP 80 from 10.0.2.2",
  );
});

Deno.test("explainFlow() evaluates egress on the source with the destination address", () => {
  const e = explainFlow(e2eCluster([denyEgress]), { from: "x/a", to: "y/a", ...tcp80 });
  assertEquals(e.allowed, false);
  assertEquals(e.egress.reason, "isolated by x/deny-egress and no rule allows TCP 80 to 10.0.2.1");
  assertEquals(e.ingress.reason, "not isolated for ingress");
});

Deno.test("explainFlow() takes an address that is no pod as the far end, not a target", () => {
  const toWeb = policy("x/to-web", {
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ to: [{ ipBlock: { cidr: "203.0.113.0/24", except: ["203.0.113.128/25"] } }] }],
  });
  const state = e2eCluster([toWeb]);
  const out = explainFlow(state, { from: "x/a", to: "203.0.113.9", ...tcp80 });
  assertEquals([out.allowed, out.dst, out.egress.reason, out.ingress.reason], [
    true,
    "203.0.113.9",
    "allowed by x/to-web egress rule 0",
    "not a pod",
  ]);
  const excepted = explainFlow(state, { from: "x/a", to: "203.0.113.200", ...tcp80 });
  assertEquals(excepted.allowed, false);
  const inbound = explainFlow(e2eCluster([denyIngress]), {
    from: "198.51.100.7",
    to: "x/b",
    ...tcp80,
  });
  assertEquals([inbound.allowed, inbound.egress.reason], [false, "not a pod"]);
});

Deno.test("explainFlow() always allows a pod to itself", () => {
  const state = e2eCluster([denyIngress, denyEgress]);
  for (const to of ["x/a", "10.0.1.1"]) {
    const e = explainFlow(state, { from: "x/a", to, ...tcp80 });
    assertEquals(e.allowed, true, to);
    assertEquals(e.ingress.reason, "always allowed: a pod to itself");
    assertEquals(e.egress.reason, "always allowed: a pod to itself");
    if (to === "x/a") assertEquals(e.ingress.policies, ["x/deny-all"]);
  }
});

Deno.test("explainFlow() always allows traffic between a pod and its own node", () => {
  const state = e2eCluster([denyIngress, denyEgress]);
  // x/a runs on n1 (192.0.2.11); n2 is 192.0.2.12.
  const toNode = explainFlow(state, { from: "x/a", to: "192.0.2.11", ...tcp80 });
  assertEquals([toNode.allowed, toNode.egress.reason], [
    true,
    "always allowed: traffic between a pod and its own node",
  ]);
  const fromNode = explainFlow(state, { from: "192.0.2.11", to: "x/a", ...tcp80 });
  assertEquals([fromNode.allowed, fromNode.ingress.reason], [
    true,
    "always allowed: traffic between a pod and its own node",
  ]);
  const otherNode = explainFlow(state, { from: "192.0.2.12", to: "x/a", ...tcp80 });
  assertEquals(otherNode.ingress, {
    allowed: false,
    policies: ["x/deny-all"],
    allowedBy: [],
    reason: "isolated by x/deny-all and no rule allows TCP 80 from 192.0.2.12",
  });
});

Deno.test("explainFlow() uses the first family both ends have, and the one asked for", () => {
  const state = e2eCluster([denyIngress]);
  const v4 = explainFlow(state, { from: "y/a", to: "x/b", ...tcp80 });
  assertEquals([v4.src, v4.dst], ["10.0.2.1", "10.0.1.2"]);
  const v6 = explainFlow(state, { from: "y/a", to: "fd00::1:2", ...tcp80 });
  assertEquals([v6.src, v6.dst], ["fd00::2:1", "fd00::1:2"]);
  assertEquals(
    v6.ingress.reason,
    "isolated by x/deny-all and no rule allows TCP 80 from fd00::2:1",
  );
  const v6Only = stateOf({
    pods: [pod("x/v6", { ips: ["fd00::9"] }), pod("x/dual", { ips: ["10.0.0.9", "fd00::8"] })],
  });
  const e = explainFlow(v6Only, { from: "x/dual", to: "x/v6", ...tcp80 });
  assertEquals([e.src, e.dst], ["fd00::8", "fd00::9"]);
});

Deno.test("explainFlow() matches an egress named port on the destination pod", () => {
  const http = policy("x/egress-http", {
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ ports: [{ port: "serve-81-tcp" }] }],
  });
  const state = e2eCluster([http]);
  assertEquals(
    explainFlow(state, { from: "x/a", to: "y/b", protocol: "TCP", port: 81 }).allowed,
    true,
  );
  assertEquals(explainFlow(state, { from: "x/a", to: "y/b", ...tcp80 }).allowed, false);
  // An outside address has no container ports: the name cannot match it.
  assertEquals(
    explainFlow(state, { from: "x/a", to: "203.0.113.9", protocol: "TCP", port: 81 }).allowed,
    false,
  );
});

Deno.test("explainFlow() says a host-network pod is never a target", () => {
  const state = stateOf({
    pods: [
      pod("x/a", { ips: ["10.0.1.1"], node: "n1" }),
      pod("x/host", { ips: ["192.0.2.12"], hostNetwork: true, node: "n2" }),
    ],
    policies: [policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })],
  });
  const e = explainFlow(state, { from: "x/a", to: "x/host", ...tcp80 });
  assertEquals(e.ingress.reason, "not isolated: a host-network pod is never a policy target");
  assertEquals(e.egress.allowed, false);
});

Deno.test("explainFlow() throws naming what it cannot explain", () => {
  const state = stateOf({
    pods: [pod("x/a", { ips: ["10.0.1.1"] }), pod("x/pending", { ips: [] })],
  });
  const cases: [string, string, string, number, string][] = [
    ["x/a", "x/nope", "TCP", 80, "Cannot explain x/a -> x/nope: pod x/nope is unknown"],
    [
      "x/pending",
      "x/a",
      "TCP",
      80,
      "Cannot explain x/pending -> x/a: pod x/pending has no addresses",
    ],
    [
      "x/a",
      "10.0.0.300",
      "TCP",
      80,
      'Cannot explain x/a -> 10.0.0.300: "10.0.0.300" is neither a pod (namespace/name) nor an IP address',
    ],
    [
      "x/a",
      "fd00::1",
      "TCP",
      80,
      "Cannot explain x/a -> fd00::1: x/a (10.0.1.1) and fd00::1 (fd00::1) have no address family in common",
    ],
    ["x/a", "10.0.0.1", "TCP", 0, "Cannot explain x/a -> 10.0.0.1: port 0 is not 1-65535"],
    [
      "x/a",
      "10.0.0.1",
      "ICMP",
      1,
      'Cannot explain x/a -> 10.0.0.1: protocol "ICMP" is not TCP, UDP or SCTP',
    ],
  ];
  for (const [from, to, protocol, port, message] of cases) {
    const err = assertThrows(() =>
      explainFlow(state, { from, to, protocol: protocol as "TCP", port })
    );
    assertEquals(err.message, message);
  }
});

Deno.test("explainFlow() agrees with the full plan on every pair (same data as the kernel)", () => {
  const policies = [
    policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    policy("x/web", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{
        from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
        ports: [{ port: "serve-80-tcp" }],
      }],
    }),
    policy("x/egress", {
      podSelector: { matchLabels: { pod: "b" } },
      policyTypes: ["Egress"],
      egress: [{
        to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.0.3.0/24"] } }],
        ports: [{ port: 79, endPort: 80 }],
      }],
    }),
    policy("z/from-x-b", {
      podSelector: {},
      ingress: [{
        from: [{
          namespaceSelector: { matchLabels: { ns: "x" } },
          podSelector: { matchLabels: { pod: "b" } },
        }],
      }],
    }),
  ];
  const state = e2eCluster(policies);
  const full = compilePolicies(state);
  for (
    const flow of [tcp80, { protocol: "TCP" as const, port: 81 }, {
      protocol: "UDP" as const,
      port: 80,
    }]
  ) {
    const byExplain = (from: string, to: string) =>
      explainFlow(state, { from, to, ...flow }).allowed;
    assertEquals(truthTableDiff(state, full, flow, byExplain), []);
  }
  assert(ALL_PODS.length === 9);
});
