// parseClusterNetworkPolicy (lib/kube/cluster_network_policy.ts): the API documentation's examples,
// every field, every validation the CRD applies (each error naming its field), and the fail-closed
// fallback.
import {
  type ClusterPolicyEntry,
  parseClusterNetworkPolicy,
} from "../../../lib/kube/cluster_network_policy.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { cnpObject, DOC_EXAMPLES } from "../policy/cnp_fixtures.ts";

const all = { matchLabels: {}, matchExpressions: [] };
const byName = (name: string) => ({
  matchLabels: { "kubernetes.io/metadata.name": name },
  matchExpressions: [],
});

function entryOf(obj: unknown): ClusterPolicyEntry {
  const parsed = parseClusterNetworkPolicy(obj);
  if (!parsed.ok) throw new Error(`not ok: ${parsed.reason}`);
  return parsed.entry;
}

/** A valid Admin policy with one egress rule, `rule` merged into that rule. */
function egress(rule: Record<string, unknown>, spec: Record<string, unknown> = {}): unknown {
  return cnpObject("p", {
    tier: "Admin",
    priority: 5,
    subject: { namespaces: {} },
    egress: [{ action: "Deny", to: [{ namespaces: {} }], ...rule }],
    ...spec,
  });
}

function errorOf(obj: unknown): string | undefined {
  return entryOf(obj).error;
}

Deno.test("parseClusterNetworkPolicy() reads the documentation's cluster-wide allow example", () => {
  assertEquals(parseClusterNetworkPolicy(DOC_EXAMPLES.story2), {
    ok: true,
    entry: {
      policy: {
        name: "cluster-wide-allow-example",
        tier: "Admin",
        priority: 30,
        subject: { namespaces: all },
        ingress: [{
          name: "allow-monitoring-ns-ingress",
          action: "Accept",
          peers: [{ namespaces: byName("monitoring-ns") }],
        }],
        egress: [{
          name: "allow-kube-dns-egress",
          action: "Accept",
          peers: [{
            pods: {
              namespaceSelector: byName("kube-system"),
              podSelector: { matchLabels: { app: "kube-dns" }, matchExpressions: [] },
            },
          }],
        }],
      },
    },
  });
});

Deno.test("parseClusterNetworkPolicy() reads the documentation's deny, delegate and baseline examples", () => {
  const deny = entryOf(DOC_EXAMPLES.story1);
  assertEquals(deny.error, undefined);
  assertEquals(deny.policy.subject, { namespaces: byName("sensitive-ns") });
  assertEquals(deny.policy.ingress, [{
    name: "select-all-deny-all",
    action: "Deny",
    peers: [{ namespaces: all }],
  }]);
  const delegate = entryOf(DOC_EXAMPLES.story3);
  assertEquals(delegate.error, undefined);
  assertEquals(delegate.policy.egress[0].action, "Pass");
  assertEquals(delegate.policy.egress[0].name, "");
  assertEquals(delegate.policy.egress[0].protocols, [
    { protocol: "TCP", start: 8080, end: 8080 },
    { namedPort: "web-alt" },
    { protocol: "UDP", start: 53, end: 53 },
  ]);
  const baseline = entryOf(DOC_EXAMPLES.story5);
  assertEquals(baseline.error, undefined);
  assertEquals(baseline.policy.tier, "Baseline");
  assertEquals(baseline.policy.egress, []);
});

Deno.test("parseClusterNetworkPolicy() fails the documentation's unimplementable tenant example closed", () => {
  // Story 4 is "currently not implementable": its inter-tenant peer has no field, which the API
  // documentation says to read as an incompatible CRD and fail closed on.
  const entry = entryOf(DOC_EXAMPLES.story4);
  assertEquals(
    entry.error,
    "spec.ingress[0].from[0]: no field set (want exactly one of namespaces, pods)",
  );
  assertEquals(entry.failClosed, { ingress: true, egress: false });
  assertEquals(entry.policy, {
    name: "tenant-creation-example",
    tier: "Admin",
    priority: 50,
    subject: {
      namespaces: {
        matchLabels: {},
        matchExpressions: [{ key: "tenant", operator: "Exists", values: [] }],
      },
    },
    ingress: [],
    egress: [],
  });
});

Deno.test("parseClusterNetworkPolicy() reads every peer and port form", () => {
  const entry = entryOf(cnpObject("forms", {
    tier: "Baseline",
    priority: 0,
    subject: {
      pods: { podSelector: { matchLabels: { app: "web" } } }, // namespaceSelector defaults to all
    },
    egress: [{
      name: "everything",
      action: "Accept",
      to: [
        { nodes: { matchLabels: { "kubernetes.io/os": "linux" } } },
        { networks: ["10.1.2.3/8", "fd00::1/64", "10.0.0.0/8"] },
        { pods: { namespaceSelector: {}, podSelector: {} } },
      ],
      protocols: [
        { tcp: {} },
        { udp: { destinationPort: { range: { start: 1000, end: 2000 } } } },
        { sctp: { destinationPort: { number: 9003 } } },
      ],
    }],
  }));
  assertEquals(entry.error, undefined);
  assertEquals(entry.policy.subject, {
    pods: {
      namespaceSelector: all,
      podSelector: { matchLabels: { app: "web" }, matchExpressions: [] },
    },
  });
  assertEquals(entry.policy.egress[0].peers, [
    { nodes: { matchLabels: { "kubernetes.io/os": "linux" }, matchExpressions: [] } },
    // Canonical, host bits cleared as Go's net.ParseCIDR does; a repeat (listType=set) once.
    { networks: ["10.0.0.0/8", "fd00::/64"] },
    { pods: { namespaceSelector: all, podSelector: all } },
  ]);
  assertEquals(entry.policy.egress[0].protocols, [
    { protocol: "TCP", start: 1, end: 65535 },
    { protocol: "UDP", start: 1000, end: 2000 },
    { protocol: "SCTP", start: 9003, end: 9003 },
  ]);
});

Deno.test("parseClusterNetworkPolicy() names the field of every value the CRD rejects", () => {
  const cases: [unknown, string][] = [
    [egress({}, { tier: "Developer" }), 'spec.tier: "Developer" is not a tier'],
    [egress({}, { tier: undefined }), "spec.tier: nothing is not a tier"],
    [egress({}, { priority: 1001 }), "spec.priority: 1001 is out of range (want 0-1000)"],
    [egress({}, { priority: -1 }), "spec.priority: -1 is out of range"],
    [egress({}, { priority: "5" }), 'spec.priority: want an integer, got "5"'],
    [egress({}, { priority: 1.5 }), "spec.priority: want an integer, got 1.5"],
    [egress({}, { subject: {} }), "spec.subject: no field set"],
    [
      egress({}, { subject: { namespaces: {}, pods: { podSelector: {} } } }),
      "spec.subject: more than one field set",
    ],
    [
      egress({}, { subject: { pods: { namespaceSelector: {} } } }),
      "spec.subject.pods.podSelector: required",
    ],
    [
      egress({}, { subject: { namespaces: { matchExpressions: [{ key: "a", operator: "Is" }] } } }),
      'spec.subject.namespaces.matchExpressions[0].operator: "Is" is not a valid selector operator',
    ],
    [
      egress({ action: "Allow" }),
      'spec.egress[0].action: "Allow" is not an action (want Accept, Deny or Pass)',
    ],
    [egress({ to: undefined }), "spec.egress[0].to: must have at least one item"],
    [egress({ to: [] }), "spec.egress[0].to: must have at least one item"],
    [egress({ name: "x".repeat(101) }), "spec.egress[0].name: 101 characters, at most 100 allowed"],
    [
      egress({ to: [{ networks: ["10.0.0.0/33"] }] }),
      'spec.egress[0].to[0].networks[0]: "10.0.0.0/33" is not a CIDR',
    ],
    [
      egress({ to: [{ networks: [] }] }),
      "spec.egress[0].to[0].networks: must have at least one item",
    ],
    [
      egress({ to: [{ networks: Array.from({ length: 26 }, (_, i) => `10.${i}.0.0/16`) }] }),
      "spec.egress[0].to[0].networks: 26 items, at most 25 allowed",
    ],
    [
      egress({ to: [{ domainNames: ["kubernetes.io"] }] }),
      "spec.egress[0].to[0].domainNames: not supported by this agent",
    ],
    [
      egress({ to: [{ serviceAccounts: {} }] }),
      'spec.egress[0].to[0]: unknown field "serviceAccounts"',
    ],
    [
      egress({ to: [{ namespaces: {}, networks: ["10.0.0.0/8"] }] }),
      "spec.egress[0].to[0]: more than one field set",
    ],
    [egress({ protocols: [] }), "spec.egress[0].protocols: must have at least one item"],
    [
      egress({ protocols: [{ tcp: {}, udp: {} }] }),
      "spec.egress[0].protocols[0]: more than one field set (want exactly one of tcp, udp, sctp, destinationNamedPort)",
    ],
    [egress({ protocols: [{ icmp: {} }] }), 'spec.egress[0].protocols[0]: unknown field "icmp"'],
    [
      egress({ protocols: [{ tcp: { destinationPort: { number: 0 } } }] }),
      "spec.egress[0].protocols[0].tcp.destinationPort.number: 0 is not a port number (want 1-65535)",
    ],
    [
      egress({ protocols: [{ udp: { destinationPort: { range: { start: 53, end: 53 } } } }] }),
      "spec.egress[0].protocols[0].udp.destinationPort.range: start 53 must be less than end 53",
    ],
    [
      egress({
        protocols: [{ sctp: { destinationPort: { number: 1, range: { start: 1, end: 2 } } } }],
      }),
      "spec.egress[0].protocols[0].sctp.destinationPort: more than one field set",
    ],
    [
      egress({ protocols: [{ destinationNamedPort: "" }] }),
      "spec.egress[0].protocols[0].destinationNamedPort: must not be empty",
    ],
    [
      egress({ to: [{ networks: ["0.0.0.0/0"] }], protocols: [{ destinationNamedPort: "web" }] }),
      "spec.egress[0].protocols[0].destinationNamedPort: may not be used with a networks or nodes peer (spec.egress[0].to[0])",
    ],
    [
      egress({}, { ingress: [{ action: "Deny", from: [{ networks: ["0.0.0.0/0"] }] }] }),
      'spec.ingress[0].from[0]: unknown field "networks" (want exactly one of namespaces, pods)',
    ],
    [
      egress({}, { ingress: [{ action: "Deny", from: [{ nodes: {} }] }] }),
      'spec.ingress[0].from[0]: unknown field "nodes"',
    ],
    [
      egress({}, {
        egress: Array.from({ length: 26 }, () => ({ action: "Deny", to: [{ namespaces: {} }] })),
      }),
      "spec.egress: 26 rules, at most 25 allowed",
    ],
    [egress({}, { egress: {} }), "spec.egress: want a list, got {}"],
    [cnpObject("p", undefined), "spec: want an object, got nothing"],
  ];
  for (const [obj, want] of cases) {
    const error = errorOf(obj);
    assert(error?.startsWith(want), `want an error starting ${JSON.stringify(want)}, got ${error}`);
  }
});

Deno.test("parseClusterNetworkPolicy() fails closed at the policy's tier and priority, in the directions it has rules for", () => {
  const bad = entryOf(
    egress({ to: [{ networks: ["nonsense"] }] }, { tier: "Baseline", priority: 7 }),
  );
  assertEquals(bad.failClosed, { ingress: false, egress: true });
  assertEquals(bad.policy, {
    name: "p",
    tier: "Baseline",
    priority: 7,
    subject: { namespaces: all },
    ingress: [],
    egress: [],
  });
  // Both directions with rules; the priority as written even out of range (it still sorts).
  const both = entryOf(egress({}, {
    priority: 5000,
    ingress: [{ action: "Accept", from: [{ namespaces: {} }] }],
  }));
  assertEquals(both.error, "spec.priority: 5000 is out of range (want 0-1000)");
  assertEquals(both.failClosed, { ingress: true, egress: true });
  assertEquals(both.policy.priority, 5000);
  // Unreadable parts: every pod, the Admin tier, priority 0, both directions.
  const worst = entryOf(cnpObject("worst", { tier: 3, priority: "high", subject: [], egress: 1 }));
  assertEquals(worst.policy.tier, "Admin");
  assertEquals(worst.policy.priority, 0);
  assertEquals(worst.policy.subject, { namespaces: all });
  assertEquals(worst.failClosed, { ingress: false, egress: true });
  assertEquals(
    worst.error,
    [
      "spec.tier: 3 is not a tier (want Admin or Baseline)",
      'spec.priority: want an integer, got "high"',
      "spec.subject: want an object, got []",
      "spec.egress: want a list, got 1",
    ].join("; "),
  );
  // A policy without rules denies nothing, even when broken.
  const empty = entryOf(cnpObject("empty", { tier: "Admin", priority: 1, subject: {} }));
  assertEquals(empty.failClosed, { ingress: false, egress: false });
});

Deno.test("parseClusterNetworkPolicy() has no entry for an object without a name", () => {
  assertEquals(parseClusterNetworkPolicy({ metadata: {}, spec: {} }), {
    ok: false,
    key: "?",
    reason: "clusternetworkpolicy object has no metadata.name",
  });
  assertEquals(parseClusterNetworkPolicy("x").ok, false);
});
