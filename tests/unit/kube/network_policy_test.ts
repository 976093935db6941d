// parseNetworkPolicy (lib/kube/network_policy.ts): the Kubernetes documentation's examples, policy
// type inference, every validation the API server applies, and the fail-closed fallback.
import { parseNetworkPolicy } from "../../../lib/kube/network_policy.ts";
import type { NetworkPolicy, PolicyEntry } from "../../../lib/kube/policy_objects.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { DOC_POLICY_SPEC } from "../policy/fixtures.ts";

function np(spec: unknown, name = "p", namespace = "default"): unknown {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name, resourceVersion: "1" },
    spec,
  };
}

function entryOf(obj: unknown): PolicyEntry {
  const parsed = parseNetworkPolicy(obj);
  if (!parsed.ok) throw new Error(`not ok: ${parsed.reason}`);
  return parsed.entry;
}

function policyOf(obj: unknown): NetworkPolicy {
  const entry = entryOf(obj);
  assertEquals(entry.error, undefined);
  return entry.policy;
}

const none = { matchLabels: {}, matchExpressions: [] };

Deno.test("parseNetworkPolicy() reads the documentation's test-network-policy", () => {
  // kubernetes.io/docs/concepts/services-networking/network-policies, "The NetworkPolicy resource".
  const doc = np(DOC_POLICY_SPEC, "test-network-policy");
  assertEquals(parseNetworkPolicy(doc), {
    ok: true,
    entry: {
      policy: {
        namespace: "default",
        name: "test-network-policy",
        podSelector: { matchLabels: { role: "db" }, matchExpressions: [] },
        types: { ingress: true, egress: true },
        ingress: [{
          peers: [
            { ipBlock: { cidr: "172.17.0.0/16", except: ["172.17.1.0/24"] } },
            { namespaces: { matchLabels: { project: "myproject" }, matchExpressions: [] } },
            { pods: { matchLabels: { role: "frontend" }, matchExpressions: [] } },
          ],
          ports: [{ protocol: "TCP", port: 6379 }],
        }],
        egress: [{
          peers: [{ ipBlock: { cidr: "10.0.0.0/24", except: [] } }],
          ports: [{ protocol: "TCP", port: 5978 }],
        }],
      },
    },
  });
});

Deno.test("parseNetworkPolicy() reads the documentation's default policies", () => {
  const denyIngress = policyOf(np({ podSelector: {}, policyTypes: ["Ingress"] }));
  assertEquals([denyIngress.podSelector, denyIngress.types, denyIngress.ingress], [
    none,
    { ingress: true, egress: false },
    [],
  ]);
  const allowIngress = policyOf(np({ podSelector: {}, ingress: [{}], policyTypes: ["Ingress"] }));
  assertEquals(allowIngress.ingress, [{}]);
  const denyEgress = policyOf(np({ podSelector: {}, policyTypes: ["Egress"] }));
  assertEquals([denyEgress.types, denyEgress.egress], [{ ingress: false, egress: true }, []]);
  const allowEgress = policyOf(np({ podSelector: {}, egress: [{}], policyTypes: ["Egress"] }));
  assertEquals([allowEgress.types, allowEgress.egress], [{ ingress: false, egress: true }, [{}]]);
  const denyAll = policyOf(np({ podSelector: {}, policyTypes: ["Ingress", "Egress"] }));
  assertEquals(denyAll.types, { ingress: true, egress: true });
});

Deno.test("parseNetworkPolicy() infers Ingress always and Egress only when egress rules exist", () => {
  assertEquals(policyOf(np({ podSelector: {} })).types, { ingress: true, egress: false });
  assertEquals(policyOf(np({ podSelector: {}, egress: [] })).types, {
    ingress: true,
    egress: false,
  });
  // The documentation's warning: an egress-only policy without policyTypes also isolates ingress.
  assertEquals(policyOf(np({ podSelector: {}, egress: [{}] })).types, {
    ingress: true,
    egress: true,
  });
  // An empty list is defaulted like an absent one (SetDefaults_NetworkPolicy).
  assertEquals(policyOf(np({ podSelector: {}, policyTypes: [], egress: [{}] })).types, {
    ingress: true,
    egress: true,
  });
  assertEquals(policyOf(np({ podSelector: {}, policyTypes: null })).types, {
    ingress: true,
    egress: false,
  });
  // A missing spec is an empty one: every pod of the namespace, isolated for ingress.
  const bare = policyOf({ metadata: { namespace: "x", name: "bare" } });
  assertEquals([bare.podSelector, bare.types], [none, { ingress: true, egress: false }]);
});

Deno.test("parseNetworkPolicy() keeps absent from/ports apart from empty ones", () => {
  const p = policyOf(np({
    podSelector: {},
    ingress: [{}, { from: [], ports: [] }, { from: null, ports: null }],
  }));
  assertEquals(p.ingress, [{}, { peers: [], ports: [] }, {}]);
});

Deno.test("parseNetworkPolicy() reads AND (one peer) apart from OR (two peers)", () => {
  // "Behavior of to and from selectors": user=alice AND role=client, versus either.
  const and = policyOf(np({
    podSelector: {},
    ingress: [{
      from: [{
        namespaceSelector: { matchLabels: { user: "alice" } },
        podSelector: { matchLabels: { role: "client" } },
      }],
    }],
  }));
  assertEquals(and.ingress[0].peers, [{
    pods: { matchLabels: { role: "client" }, matchExpressions: [] },
    namespaces: { matchLabels: { user: "alice" }, matchExpressions: [] },
  }]);
  const or = policyOf(np({
    podSelector: {},
    ingress: [{
      from: [
        { namespaceSelector: { matchLabels: { user: "alice" } } },
        { podSelector: { matchLabels: { role: "client" } } },
      ],
    }],
  }));
  assertEquals(or.ingress[0].peers?.length, 2);
});

Deno.test("parseNetworkPolicy() reads endPort ranges, named ports and protocol defaults", () => {
  // "Targeting a range of ports": multi-port-egress.
  const p = policyOf(np({
    podSelector: { matchLabels: { role: "db" } },
    policyTypes: ["Egress"],
    egress: [{
      to: [{ ipBlock: { cidr: "10.0.0.0/24" } }],
      ports: [
        { protocol: "TCP", port: 32000, endPort: 32768 },
        { port: "serve-80-tcp" },
        { protocol: "UDP" },
        { protocol: "SCTP", port: 81 },
      ],
    }],
  }, "multi-port-egress"));
  assertEquals(p.egress[0].ports, [
    { protocol: "TCP", port: 32000, endPort: 32768 },
    { protocol: "TCP", port: "serve-80-tcp" },
    { protocol: "UDP" },
    { protocol: "SCTP", port: 81 },
  ]);
});

Deno.test("parseNetworkPolicy() reads every matchExpressions operator", () => {
  const p = policyOf(np({
    podSelector: {
      matchExpressions: [
        { key: "pod", operator: "In", values: ["a", "b"] },
        { key: "app.kubernetes.io/name", operator: "NotIn", values: ["db"] },
        { key: "env", operator: "Exists" },
        { key: "legacy", operator: "DoesNotExist", values: [] },
      ],
    },
  }));
  assertEquals(p.podSelector.matchExpressions, [
    { key: "pod", operator: "In", values: ["a", "b"] },
    { key: "app.kubernetes.io/name", operator: "NotIn", values: ["db"] },
    { key: "env", operator: "Exists", values: [] },
    { key: "legacy", operator: "DoesNotExist", values: [] },
  ]);
});

Deno.test("parseNetworkPolicy() writes ipBlock CIDRs canonically, for both families", () => {
  const p = policyOf(np({
    podSelector: {},
    ingress: [{
      from: [
        { ipBlock: { cidr: "10.0.0.1/8", except: ["10.1.2.3/16"] } },
        { ipBlock: { cidr: "FD00:10:244:0:0:0:0:0/48", except: ["fd00:10:244:1::/64"] } },
      ],
    }],
  }));
  assertEquals(p.ingress[0].peers, [
    { ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } },
    { ipBlock: { cidr: "fd00:10:244::/48", except: ["fd00:10:244:1::/64"] } },
  ]);
});

// Each bad part, the error naming it, as the API server would refuse the object.
const invalid: [string, unknown, string][] = [
  [
    "a CIDR with a prefix too long",
    { ingress: [{ from: [{ podSelector: {} }, { ipBlock: { cidr: "10.0.0.0/33" } }] }] },
    'spec.ingress[0].from[1].ipBlock.cidr: "10.0.0.0/33" is not a CIDR',
  ],
  [
    "an ipBlock without cidr",
    { ingress: [{ from: [{ ipBlock: { except: ["10.0.0.0/8"] } }] }] },
    "spec.ingress[0].from[0].ipBlock.cidr: required",
  ],
  [
    "an except outside the cidr",
    { egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }] }] },
    'spec.egress[0].to[0].ipBlock.except[0]: "10.1.0.0/24" must be a strict subset of cidr 10.0.0.0/16',
  ],
  [
    "an except equal to the cidr",
    { egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.0.0/16"] } }] }] },
    "spec.egress[0].to[0].ipBlock.except[0]",
  ],
  [
    "an except of the other family",
    { egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["::/1"] } }] }] },
    "spec.egress[0].to[0].ipBlock.except[0]",
  ],
  [
    "an except that is not a CIDR",
    { egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.0.0.0"] } }] }] },
    'spec.egress[0].to[0].ipBlock.except[0]: "10.0.0.0" is not a CIDR',
  ],
  [
    "ipBlock beside a selector",
    { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] },
    "spec.ingress[0].from[0]: may not specify both ipBlock and another peer",
  ],
  [
    "an empty peer",
    { ingress: [{ from: [{}] }] },
    "spec.ingress[0].from[0]: must specify a peer",
  ],
  [
    "an unknown operator",
    { podSelector: { matchExpressions: [{ key: "a", operator: "Equals", values: ["b"] }] } },
    'spec.podSelector.matchExpressions[0].operator: "Equals" is not a valid selector operator',
  ],
  [
    "In without values",
    {
      ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }] }],
    },
    "spec.ingress[0].from[0].podSelector.matchExpressions[0].values: must be specified",
  ],
  [
    "NotIn with an empty list",
    {
      ingress: [{
        from: [{
          namespaceSelector: { matchExpressions: [{ key: "a", operator: "NotIn", values: [] }] },
        }],
      }],
    },
    "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be specified",
  ],
  [
    "Exists with values",
    { podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } },
    "spec.podSelector.matchExpressions[0].values: may not be specified when operator is Exists",
  ],
  [
    "DoesNotExist with values",
    { podSelector: { matchExpressions: [{ key: "a", operator: "DoesNotExist", values: ["x"] }] } },
    "spec.podSelector.matchExpressions[0].values: may not be specified",
  ],
  [
    "a bad label key",
    { podSelector: { matchLabels: { "-app": "web" } } },
    'spec.podSelector.matchLabels: "-app" is not a valid label key',
  ],
  [
    "a label key with a bad prefix",
    { podSelector: { matchExpressions: [{ key: "Example.com/app", operator: "Exists" }] } },
    'spec.podSelector.matchExpressions[0].key: "Example.com/app" is not a valid label key',
  ],
  [
    "a label value too long",
    { podSelector: { matchLabels: { app: "x".repeat(64) } } },
    'spec.podSelector.matchLabels["app"]',
  ],
  [
    "a bad value in an expression",
    { podSelector: { matchExpressions: [{ key: "a", operator: "In", values: ["ok", "not ok"] }] } },
    'spec.podSelector.matchExpressions[0].values[1]: "not ok" is not a valid label value',
  ],
  [
    "an unknown protocol",
    { ingress: [{ ports: [{ protocol: "ICMP", port: 80 }] }] },
    'spec.ingress[0].ports[0].protocol: "ICMP" is not supported (want TCP, UDP or SCTP)',
  ],
  [
    "a protocol in lower case",
    { ingress: [{ ports: [{ protocol: "tcp" }] }] },
    'spec.ingress[0].ports[0].protocol: "tcp" is not supported',
  ],
  ["port 0", { ingress: [{ ports: [{ port: 0 }] }] }, "spec.ingress[0].ports[0].port: 0 is not"],
  [
    "port 65536",
    { ingress: [{ ports: [{ port: 65536 }] }] },
    "spec.ingress[0].ports[0].port: 65536 is not a port number (want 1-65535)",
  ],
  [
    "a fractional port",
    { ingress: [{ ports: [{ port: 80.5 }] }] },
    "spec.ingress[0].ports[0].port",
  ],
  [
    "a port name in upper case",
    { ingress: [{ ports: [{ port: "HTTP" }] }] },
    'spec.ingress[0].ports[0].port: "HTTP" is not a port name',
  ],
  [
    "a port name of digits",
    { ingress: [{ ports: [{ port: "8080" }] }] },
    'spec.ingress[0].ports[0].port: "8080" is not a port name',
  ],
  [
    "a port name with --",
    { ingress: [{ ports: [{ port: "a--b" }] }] },
    'spec.ingress[0].ports[0].port: "a--b" is not a port name',
  ],
  [
    "a port name starting with -",
    { ingress: [{ ports: [{ port: "-ab" }] }] },
    'spec.ingress[0].ports[0].port: "-ab" is not a port name',
  ],
  [
    "a port name ending with -",
    { ingress: [{ ports: [{ port: "ab-" }] }] },
    'spec.ingress[0].ports[0].port: "ab-" is not a port name',
  ],
  [
    "a port name of 16",
    { ingress: [{ ports: [{ port: "abcdefghijklmnop" }] }] },
    'spec.ingress[0].ports[0].port: "abcdefghijklmnop" is not a port name',
  ],
  [
    "a port of the wrong type",
    { ingress: [{ ports: [{ port: true }] }] },
    "spec.ingress[0].ports[0].port: want a number or a name, got true",
  ],
  [
    "endPort without port",
    { egress: [{ ports: [{ endPort: 90 }] }] },
    "spec.egress[0].ports[0].endPort: may not be specified when port is not specified",
  ],
  [
    "endPort with a named port",
    { egress: [{ ports: [{ port: "http", endPort: 90 }] }] },
    "spec.egress[0].ports[0].endPort: may not be specified when port is non-numeric",
  ],
  [
    "endPort below port",
    { egress: [{ ports: [{ port: 100, endPort: 90 }] }] },
    "spec.egress[0].ports[0].endPort: 90 must be greater than or equal to port",
  ],
  [
    "endPort above 65535",
    { egress: [{ ports: [{ port: 100, endPort: 70000 }] }] },
    "spec.egress[0].ports[0].endPort: 70000 is not a port number",
  ],
  [
    "an unknown policy type",
    { policyTypes: ["Ingress", "Sideways"] },
    'spec.policyTypes[1]: "Sideways" is not a policy type (want Ingress or Egress)',
  ],
  [
    "three policy types",
    { policyTypes: ["Ingress", "Egress", "Ingress"] },
    "spec.policyTypes: may not specify more than two policyTypes",
  ],
  ["ingress not a list", { ingress: { from: [] } }, "spec.ingress: want a list"],
  ["a rule not an object", { egress: ["all"] }, 'spec.egress[0]: want an object, got "all"'],
  ["from not a list", { ingress: [{ from: {} }] }, "spec.ingress[0].from: want a list, got {}"],
  ["a podSelector not an object", { podSelector: "app=web" }, "spec.podSelector: want an object"],
];

Deno.test("parseNetworkPolicy() names the field of everything the API server would refuse", () => {
  for (const [what, spec, message] of invalid) {
    const entry = entryOf(np({ podSelector: {}, ...spec as object }));
    assert(entry.error !== undefined, `${what}: no error`);
    assert(entry.error.startsWith(message), `${what}: ${entry.error}\n  want: ${message}...`);
  }
});

Deno.test("parseNetworkPolicy() falls back to isolating the policy's targets with no rules", () => {
  const entry = entryOf(np(
    {
      podSelector: { matchLabels: { role: "db" } },
      policyTypes: ["Ingress"],
      ingress: [
        { from: [{ podSelector: {} }] },
        { from: [{ ipBlock: { cidr: "10.0.0.0/33" } }], ports: [{ port: 5432 }] },
      ],
    },
    "bad-cidr",
    "x",
  ));
  assertEquals(entry, {
    policy: {
      namespace: "x",
      name: "bad-cidr",
      podSelector: { matchLabels: { role: "db" }, matchExpressions: [] },
      types: { ingress: true, egress: false },
      ingress: [],
      egress: [],
    },
    error: 'spec.ingress[1].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR',
  });
});

Deno.test("parseNetworkPolicy() keeps readable policy types when falling back", () => {
  const egressOnly = entryOf(np({
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ ports: [{ protocol: "ICMP" }] }],
  }));
  assertEquals(egressOnly.policy.types, { ingress: false, egress: true });
  // Inferred types still count the unreadable egress rule: it is a rule, so Egress is isolated.
  const inferred = entryOf(np({ podSelector: {}, egress: [{ to: [{}] }] }));
  assertEquals(inferred.policy.types, { ingress: true, egress: true });
  assertEquals([inferred.policy.ingress, inferred.policy.egress], [[], []]);
});

Deno.test("parseNetworkPolicy() isolates the whole namespace both ways when it can read less", () => {
  const badSelector = entryOf(np({
    podSelector: { matchExpressions: [{ key: "a", operator: "Near" }] },
    policyTypes: ["Ingress"],
  }));
  assertEquals(badSelector.policy.podSelector, none);
  assertEquals(badSelector.policy.types, { ingress: true, egress: false });
  const badTypes = entryOf(np({ podSelector: { matchLabels: { a: "b" } }, policyTypes: ["In"] }));
  assertEquals(badTypes.policy.types, { ingress: true, egress: true });
  assertEquals(badTypes.policy.podSelector.matchLabels, { a: "b" });
  // Without policyTypes, an unreadable egress list leaves egress isolation unknown: both.
  const badEgress = entryOf(np({ podSelector: {}, egress: "all" }));
  assertEquals(badEgress.policy.types, { ingress: true, egress: true });
  assertEquals(badEgress.error, 'spec.egress: want a list, got "all"');
  const badSpec = entryOf(np("spec"));
  assertEquals(badSpec.policy, {
    namespace: "default",
    name: "p",
    podSelector: none,
    types: { ingress: true, egress: true },
    ingress: [],
    egress: [],
  });
  assertEquals(badSpec.error, 'spec: want an object, got "spec"');
});

Deno.test("parseNetworkPolicy() reports every problem at once, joined by '; '", () => {
  const entry = entryOf(np({
    podSelector: {},
    ingress: [{ ports: [{ port: 0 }, { protocol: "ICMP" }] }],
    egress: [{ to: [{}] }],
  }));
  assertEquals(entry.error?.split("; ").map((e) => e.split(":")[0]), [
    "spec.ingress[0].ports[0].port",
    "spec.ingress[0].ports[1].protocol",
    "spec.egress[0].to[0]",
  ]);
});

Deno.test("parseNetworkPolicy() is not ok only without namespace or name", () => {
  assertEquals(parseNetworkPolicy({ metadata: { name: "p" }, spec: {} }), {
    ok: false,
    key: "?/p",
    reason: "networkpolicy object has no metadata.namespace",
  });
  assertEquals(parseNetworkPolicy({ metadata: { namespace: "x" } }), {
    ok: false,
    key: "x/?",
    reason: "networkpolicy object has no metadata.name",
  });
  assertEquals(parseNetworkPolicy(42), {
    ok: false,
    key: "?/?",
    reason: "networkpolicy: want an object, got 42",
  });
});
