// The upstream ClusterNetworkPolicy conformance suite (network-policy-api v0.2.0, conformance/tests
// with the base manifests in conformance/base) as data: the cluster the base manifests build, and
// per upstream test and subtest the policies in force (upstream's patches accumulate within a
// test: a subtest sees its predecessors' changes) and the expected connectivity. The unit tests
// evaluate every probe through explain and the rendered tables (cnp_conformance_test.ts); the
// simulated cluster can run the same cases (instantiate the `networks` placeholders with the
// pods' real addresses, see {@linkcode instantiatePolicies}).
//
// Probes the simulated cluster cannot send: SCTP (no SCTP sockets in our kernel) — see
// {@linkcode needsSctp}; none of the upstream tests goes through a Service. Ported from upstream
// main after v0.2.0 as well: the inline-CIDR tests' namespace relabelling (marked `since`).
import type { ContainerPort, Protocol } from "../../../lib/kube/policy_objects.ts";

/** The base manifests' namespaces are these houses, prefixed. */
export const NS_PREFIX = "network-policy-conformance-";
const G = `${NS_PREFIX}gryffindor`;
const S = `${NS_PREFIX}slytherin`;
const H = `${NS_PREFIX}hufflepuff`;
const R = `${NS_PREFIX}ravenclaw`;
const F = `${NS_PREFIX}forbidden-forrest`;

/** The suite's default host-network ports (suite.go: 8 from 34345). */
export const HOST_PORTS = [34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352];

/** A node of the cluster the cases assume. */
export interface BaseNode {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** A pod of the base manifests: where it runs, its labels, ports it names, ports it serves. */
export interface BasePod {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly node: string;
  readonly hostNetwork: boolean;
  /** `spec.containers[].ports[]` (the targets of named ports). */
  readonly ports: readonly ContainerPort[];
  /** Every port a server in the pod listens on, named or not. */
  readonly serves: readonly { readonly protocol: Protocol; readonly port: number }[];
}

/** The cluster of conformance/base/manifests.yaml. */
export interface BaseCluster {
  readonly nodes: readonly BaseNode[];
  readonly namespaces: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
  }[];
  readonly pods: readonly BasePod[];
}

/** One connection attempt upstream makes (`kubernetes.PokeServer`), from a pod to a pod's IP. */
export interface Probe {
  /** `namespace/name` of the client pod. */
  readonly from: string;
  /** `namespace/name` of the server pod (its `status.podIP`). */
  readonly to: string;
  readonly protocol: Protocol;
  readonly port: number;
  readonly allowed: boolean;
}

/** The objects in force during a subtest. */
export interface PolicySet {
  /** ClusterNetworkPolicy objects (JSON as the API serves them, placeholders in `networks`). */
  readonly clusterNetworkPolicies: readonly unknown[];
  /** networking.k8s.io/v1 NetworkPolicy objects. */
  readonly networkPolicies: readonly unknown[];
  /** Namespaces whose labels differ from the base (all their labels). */
  readonly namespaceLabels?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** One upstream `t.Run`. */
export interface Subtest extends PolicySet {
  readonly name: string;
  /** What upstream changed before this subtest's probes, in words ("" for nothing). */
  readonly change: string;
  readonly probes: readonly Probe[];
  /** Set on subtests upstream added after v0.2.0. */
  readonly since?: string;
}

/** One upstream conformance test. */
export interface ConformanceCase {
  /** Its `ShortName`. */
  readonly test: string;
  /** Its file under conformance/tests. */
  readonly source: string;
  /** Its manifest under conformance/base. */
  readonly manifest: string;
  /** `SupportClusterNetworkPolicy`, or the experimental feature it needs as well. */
  readonly feature: "standard" | "named-ports" | "egress-node-peers";
  readonly subtests: readonly Subtest[];
}

const HOUSES: Record<string, { readonly ns: string; readonly set: string }> = {
  gryffindor: { ns: G, set: "harry-potter" },
  slytherin: { ns: S, set: "draco-malfoy" },
  hufflepuff: { ns: H, set: "cedric-diggory" },
  ravenclaw: { ns: R, set: "luna-lovegood" },
};

/** Nodes: the StatefulSets' pod 0 on n1, pod 1 on n2, the host-network centaurs on n1 and n3. */
const NODES: BaseNode[] = ["n1", "n2", "n3"].map((name) => ({
  name,
  labels: { "kubernetes.io/os": "linux", "kubernetes.io/hostname": name },
}));

/**
 * The base cluster. Pods are placed so that no probe of a node peer goes from a pod to its own
 * node (traffic between a pod and its own node is always allowed, as for NetworkPolicy, and
 * upstream's centaur-1 would otherwise be unreachable to deny): the regular pods `-0` on n1 and
 * `-1` on n2, centaur-0 on n1 and centaur-1 on n3 (host-network pods of one StatefulSet, serving
 * the same ports, need distinct nodes anyway).
 */
export const BASE: BaseCluster = {
  nodes: NODES,
  namespaces: [...Object.keys(HOUSES), "forbidden-forrest"].map((house) => ({
    name: NS_PREFIX + house,
    labels: { "conformance-house": house, "kubernetes.io/metadata.name": NS_PREFIX + house },
  })),
  pods: [
    ...Object.entries(HOUSES).flatMap(([house, { ns, set }]) =>
      [0, 1].map((i): BasePod => ({
        namespace: ns,
        name: `${set}-${i}`,
        labels: {
          "conformance-house": house,
          "statefulset.kubernetes.io/pod-name": `${set}-${i}`,
        },
        node: `n${i + 1}`,
        hostNetwork: false,
        ports: [
          { name: "web", port: 80, protocol: "TCP" },
          { name: "dns", port: 53, protocol: "UDP" },
        ],
        serves: [
          { protocol: "TCP", port: 80 },
          { protocol: "TCP", port: 8080 },
          { protocol: "UDP", port: 53 },
          { protocol: "UDP", port: 5353 },
          { protocol: "SCTP", port: 9003 },
          { protocol: "SCTP", port: 9005 },
        ],
      }))
    ),
    ...[0, 1].map((i): BasePod => ({
      namespace: F,
      name: `centaur-${i}`,
      labels: {
        "conformance-house": "forbidden-forrest",
        "statefulset.kubernetes.io/pod-name": `centaur-${i}`,
      },
      node: i === 0 ? "n1" : "n3",
      hostNetwork: true,
      ports: [
        { name: `web-${HOST_PORTS[0]}`, port: HOST_PORTS[0], protocol: "TCP" },
        { name: `web-${HOST_PORTS[1]}`, port: HOST_PORTS[1], protocol: "TCP" },
        { name: `dns-${HOST_PORTS[2]}`, port: HOST_PORTS[2], protocol: "UDP" },
        { name: `dns-${HOST_PORTS[4]}`, port: HOST_PORTS[4], protocol: "UDP" },
      ],
      serves: [
        { protocol: "TCP", port: HOST_PORTS[0] },
        { protocol: "TCP", port: HOST_PORTS[1] },
        { protocol: "UDP", port: HOST_PORTS[2] },
        { protocol: "UDP", port: HOST_PORTS[4] },
        { protocol: "SCTP", port: HOST_PORTS[6] },
        { protocol: "SCTP", port: HOST_PORTS[7] },
      ],
    })),
  ],
};

const POD_NAMESPACE = new Map(BASE.pods.map((p) => [p.name, p.namespace]));

// ---- Writing policies --------------------------------------------------------------------

type Json = Record<string, unknown>;
type Proto = Json;

const byName = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
const house = (h: string) => ({ matchLabels: { "conformance-house": h } });
/** A `namespaces` peer or subject by namespace name. */
const nsPeer = (ns: string) => ({ namespaces: byName(ns) });
/** A `pods` peer or subject: the house's pods in the house's namespaces, by label. */
const housePods = (h: string) => ({
  pods: { namespaceSelector: house(h), podSelector: house(h) },
});
const linuxNodes = { nodes: { matchLabels: { "kubernetes.io/os": "linux" } } };
const internet = { networks: ["0.0.0.0/0", "::/0"] };
const tcp = (n: number): Proto => ({ tcp: { destinationPort: { number: n } } });
const udp = (n: number): Proto => ({ udp: { destinationPort: { number: n } } });
const sctp = (n: number): Proto => ({ sctp: { destinationPort: { number: n } } });

function cnp(name: string, tier: "Admin" | "Baseline", priority: number, spec: Json): Json {
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name },
    spec: { tier, priority, ...spec },
  };
}

function rule(
  direction: "ingress" | "egress",
  name: string,
  action: "Accept" | "Deny" | "Pass",
  peers: unknown[],
  protocols?: Proto[],
): Json {
  const r: Json = { name, action, [direction === "ingress" ? "from" : "to"]: peers };
  if (protocols !== undefined) r.protocols = protocols;
  return r;
}

/**
 * A `networks` entry standing for a pod's `status.podIP` as a host CIDR (/32 or /128), as the
 * inline-CIDR tests write it: replaced by {@linkcode instantiatePolicies}.
 */
export function podIpCidr(key: string): string {
  return `{podIP ${key}}`;
}

/**
 * The objects with every {@linkcode podIpCidr} placeholder replaced by `ipOf(pod)` and the
 * prefix of its family.
 *
 * @example
 * instantiatePolicies(subtest.clusterNetworkPolicies, (key) => addresses.get(key)!);
 */
export function instantiatePolicies(
  objects: readonly unknown[],
  ipOf: (podKey: string) => string,
): unknown[] {
  return JSON.parse(JSON.stringify(objects), (_key, value) => {
    if (typeof value !== "string") return value;
    const m = /^\{podIP (\S+)\}$/.exec(value);
    if (m === null) return value;
    const ip = ipOf(m[1]);
    return `${ip}/${ip.includes(":") ? 128 : 32}`;
  });
}

/** A copy of `policy` with `change` applied to its spec (upstream's DeepCopy + patch). */
function patched(policy: Json, change: (spec: Json & { ingress: Json[]; egress: Json[] }) => void) {
  const copy = structuredClone(policy);
  change(copy.spec as Json & { ingress: Json[]; egress: Json[] });
  return copy;
}

/** Upstream's `mutate.Spec.<dir>[i], mutate.Spec.<dir>[j] = ...[j], ...[i]`. */
function swap(policy: Json, dir: "ingress" | "egress", i: number, j: number): Json {
  return patched(policy, (spec) => {
    [spec[dir][i], spec[dir][j]] = [spec[dir][j], spec[dir][i]];
  });
}

/** Replaces the protocols of rule `i` with one `destinationNamedPort`. */
function namedPort(policy: Json, dir: "ingress" | "egress", i: number, name: string): Json {
  return patched(policy, (spec) => {
    spec[dir][i] = { ...spec[dir][i], protocols: [{ destinationNamedPort: name }] };
  });
}

// ---- The tests ---------------------------------------------------------------------------

/** What a "protocol" test's policy says: a subject and three houses ruled three ways. */
interface ProtocolShape {
  readonly name: string;
  readonly tier: "Admin" | "Baseline";
  readonly priority: number;
  readonly subject: string;
  /** Accepted, denied (and in Admin passed) entirely, in that order. */
  readonly whole: string;
  /** Denied (and in Admin passed) at `denyPorts`. */
  readonly ported: string;
  /** Accepted at `allowPorts`, the rest denied. */
  readonly partial: string;
  readonly denyPorts: Proto[];
  readonly allowPorts: { ingress: Proto[]; egress: Proto[] };
  readonly directions: readonly ("ingress" | "egress")[];
}

/**
 * The rules of conformance/base/{admin,baseline}_tier/standard-{ingress,egress}-*-rules.yaml and
 * standard-gress-rules-combined.yaml: Accept, Deny, (Pass,) for one house entirely; Deny, (Pass,)
 * for one at some ports; Accept at some ports then Deny for the third.
 */
function protocolPolicy(s: ProtocolShape): Json {
  const spec: Json = { subject: nsPeer(s.subject) };
  const admin = s.tier === "Admin";
  for (const d of s.directions) {
    const way = d === "ingress" ? "from" : "to";
    const whole = [nsPeer(s.whole)];
    const ported = [nsPeer(s.ported)];
    const partial = [nsPeer(s.partial)];
    const [w, p, q] = [s.whole, s.ported, s.partial].map((ns) => ns.slice(NS_PREFIX.length));
    spec[d] = [
      rule(d, `allow-${way}-${w}-everything`, "Accept", whole),
      rule(d, `deny-${way}-${w}-everything`, "Deny", whole),
      ...(admin ? [rule(d, `pass-${way}-${w}-everything`, "Pass", whole)] : []),
      rule(d, `deny-${way}-${p}-at-ports`, "Deny", ported, s.denyPorts),
      ...(admin ? [rule(d, `pass-${way}-${p}-at-ports`, "Pass", ported, s.denyPorts)] : []),
      rule(d, `allow-${way}-${q}-at-ports`, "Accept", partial, s.allowPorts[d]),
      rule(d, `deny-${way}-${q}-everything-else`, "Deny", partial),
    ];
  }
  return cnp(s.name, s.tier, s.priority, spec);
}

/**
 * The policy states of a protocol test's subtests. Admin: as written, as written, rules 0 and 1
 * swapped, still, then 0 and 2 swapped, then 3 and 4. Baseline: the first four.
 */
function protocolStates(policy: Json, directions: readonly ("ingress" | "egress")[]): Step[] {
  const swapAll = (p: Json, i: number, j: number) =>
    directions.reduce((acc, d) => swap(acc, d, i, j), p);
  const swapped = swapAll(policy, 0, 1);
  const passFirst = swapAll(swapped, 0, 2);
  const passPorts = swapAll(passFirst, 3, 4);
  const rules = directions.map((d) => `${d} rules`).join(" and ");
  return [
    { cnps: [policy] },
    { cnps: [policy] },
    { cnps: [swapped], change: `${rules} 0 and 1 swapped` },
    { cnps: [swapped] },
    { cnps: [passFirst], change: `${rules} 0 and 2 swapped` },
    { cnps: [passPorts], change: `${rules} 3 and 4 swapped` },
  ];
}

/** One subtest's policies, and what changed to get there. */
interface Step {
  readonly cnps: Json[];
  readonly nps?: Json[];
  readonly change?: string;
  readonly namespaceLabels?: Record<string, Record<string, string>>;
  /** Steps upstream added after v0.2.0 carry their own name and probes. */
  readonly since?: string;
  readonly name?: string;
  readonly rows?: readonly Row[];
}

const shapes = {
  ingressTcp: { subject: G, whole: R, ported: S, partial: H, deny: [tcp(80)], allow: [tcp(80)] },
  ingressUdp: { subject: H, whole: R, ported: S, partial: G, deny: [udp(5353)], allow: [udp(53)] },
  ingressSctp: {
    subject: R,
    whole: G,
    ported: S,
    partial: H,
    deny: [sctp(9003)],
    allow: [sctp(9003)],
  },
  egressTcp: { subject: G, whole: R, ported: S, partial: H, deny: [tcp(80)], allow: [tcp(8080)] },
  egressUdp: { subject: H, whole: R, ported: S, partial: G, deny: [udp(5353)], allow: [udp(53)] },
  egressSctp: {
    subject: R,
    whole: G,
    ported: S,
    partial: H,
    deny: [sctp(9003)],
    allow: [sctp(9003)],
  },
};

function shaped(
  key: keyof typeof shapes,
  name: string,
  tier: "Admin" | "Baseline",
  priority: number,
): Json {
  const s = shapes[key];
  const direction = key.startsWith("ingress") ? "ingress" : "egress";
  return protocolPolicy({
    name,
    tier,
    priority,
    subject: s.subject,
    whole: s.whole,
    ported: s.ported,
    partial: s.partial,
    denyPorts: s.deny,
    allowPorts: { ingress: s.allow, egress: s.allow },
    directions: [direction],
  });
}

function gressPolicy(tier: "Admin" | "Baseline"): Json {
  return protocolPolicy({
    name: tier === "Admin" ? "gress-rules" : "default",
    tier,
    priority: tier === "Admin" ? 15 : 10,
    subject: G,
    whole: R,
    ported: S,
    partial: H,
    denyPorts: [tcp(80), udp(53), sctp(9003)],
    allowPorts: {
      ingress: [tcp(80), udp(5353), sctp(9003)],
      egress: [tcp(8080), udp(5353), sctp(9003)],
    },
    directions: ["egress", "ingress"],
  });
}

const adminStates = (key: keyof typeof shapes, name: string, priority: number) =>
  protocolStates(shaped(key, name, "Admin", priority), [
    key.startsWith("ingress") ? "ingress" : "egress",
  ]);
const baselineStates = (key: keyof typeof shapes) =>
  protocolStates(shaped(key, "default", "Baseline", 10), [
    key.startsWith("ingress") ? "ingress" : "egress",
  ]).slice(0, 4);

/** standard-anp-np-banp.yaml: an Admin deny, a NetworkPolicy allow, a Baseline deny. */
function integrationStates(): Step[] {
  const admin = cnp("pass-example", "Admin", 10, {
    subject: { namespaces: house("gryffindor") },
    ingress: [rule("ingress", "deny-all-ingress-from-slytherin", "Deny", [{
      namespaces: house("slytherin"),
    }])],
    egress: [rule("egress", "deny-all-egress-to-slytherin", "Deny", [{
      namespaces: house("slytherin"),
    }])],
  });
  const np = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: G, name: "allow-gress-from-to-slytherin-to-gryffindor" },
    spec: {
      podSelector: {},
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ from: [{ namespaceSelector: house("slytherin") }] }],
      egress: [{ to: [{ namespaceSelector: house("slytherin") }] }],
    },
  };
  const baseline = cnp("default", "Baseline", 10, {
    subject: { namespaces: house("gryffindor") },
    ingress: [rule("ingress", "deny-all-ingress-from-slytherin", "Deny", [{
      namespaces: house("slytherin"),
    }])],
    egress: [rule("egress", "deny-all-egress-to-slytherin", "Deny", [{
      namespaces: house("slytherin"),
    }])],
  });
  const passIn = patched(admin, (spec) => {
    spec.ingress[0] = { ...spec.ingress[0], action: "Pass" };
  });
  const passBoth = patched(passIn, (spec) => {
    spec.egress[0] = { ...spec.egress[0], action: "Pass" };
  });
  return [
    { cnps: [admin, baseline], nps: [np] },
    { cnps: [admin, baseline], nps: [np] },
    { cnps: [passIn, baseline], nps: [np], change: "pass-example ingress rule 0 action Pass" },
    { cnps: [passBoth, baseline], nps: [np], change: "pass-example egress rule 0 action Pass" },
    { cnps: [passBoth, baseline], change: "the NetworkPolicy deleted" },
    { cnps: [passBoth, baseline] },
  ];
}

/** standard-priority-field.yaml: a Deny at 50, a Pass at 60 (then 40), a Baseline Accept. */
function priorityStates(): Step[] {
  const slytherin = housePods("slytherin");
  const subject = housePods("gryffindor");
  const deny = cnp("priority-50-example", "Admin", 50, {
    subject,
    ingress: [rule("ingress", "deny-all-ingress-from-slytherin", "Deny", [slytherin])],
    egress: [rule("egress", "deny-all-egress-to-slytherin", "Deny", [slytherin])],
  });
  const pass = cnp("old-priority-60-new-priority-40-example", "Admin", 60, {
    subject,
    ingress: [rule("ingress", "pass-all-ingress-from-slytherin", "Pass", [slytherin])],
    egress: [rule("egress", "pass-all-egress-to-slytherin", "Pass", [slytherin])],
  });
  const baseline = cnp("default", "Baseline", 10, {
    subject,
    ingress: [rule("ingress", "allow-all-ingress-from-slytherin", "Accept", [slytherin])],
    egress: [rule("egress", "allow-all-egress-to-slytherin", "Accept", [slytherin])],
  });
  const raised = patched(pass, (spec) => {
    spec.priority = 40;
  });
  return [
    { cnps: [deny, pass, baseline] },
    { cnps: [deny, pass, baseline] },
    {
      cnps: [deny, raised, baseline],
      change: "old-priority-60-new-priority-40-example priority 40",
    },
  ];
}

/**
 * standard-egress-inline-cidr-rules.yaml: Accept to slytherin's pods, Deny to every address;
 * then an Accept of two pods' addresses inserted first. After v0.2.0 upstream also relabels
 * slytherin away from its peer and back.
 */
function inlineCidrStates(tier: "Admin" | "Baseline"): Step[] {
  const policy = cnp(
    tier === "Admin" ? "inline-cidr-as-peers-example" : "default",
    tier,
    tier === "Admin" ? 85 : 10,
    {
      subject: tier === "Admin" ? housePods("gryffindor") : nsPeer(G),
      egress: [
        rule("egress", "allow-egress-to-slytherin", "Accept", [housePods("slytherin")]),
        rule("egress", "deny-egress-to-internet", "Deny", [internet]),
      ],
    },
  );
  const withIps = patched(policy, (spec) => {
    spec.egress = [
      rule("egress", "allow-egress-to-specific-podIPs", "Accept", [{
        networks: [podIpCidr(`${R}/luna-lovegood-0`), podIpCidr(`${H}/cedric-diggory-0`)],
      }]),
      ...spec.egress,
    ];
  });
  return [
    { cnps: [policy] },
    { cnps: [withIps], change: "an Accept of luna-lovegood-0's and cedric-diggory-0's IPs first" },
  ];
}

/**
 * The steps upstream added to the inline-CIDR tests' first subtest after v0.2.0: slytherin
 * relabelled away from the Accept's peer (its pods now meet the Deny), then back.
 */
function relabelSteps(first: Step): Step[] {
  const since = "network-policy-api main after v0.2.0";
  const to = (allowed: boolean): Row[] =>
    ([["TCP", 80], ["UDP", 53], ["SCTP", 9003]] as const).map(([protocol, port]) =>
      ["harry-potter-1", "draco-malfoy-0", protocol, port, allowed] as const
    );
  return [
    {
      ...first,
      change: `namespace ${S} relabelled conformance-house=denied-namespace-label`,
      namespaceLabels: {
        [S]: { "conformance-house": "denied-namespace-label", "kubernetes.io/metadata.name": S },
      },
      since,
      name: "Should deny egress to slytherin once its label no longer matches the accept rule",
      rows: to(false),
    },
    {
      ...first,
      change: `namespace ${S} relabelled back`,
      since,
      name: "Should allow egress to slytherin again once its label matches the accept rule",
      rows: to(true),
    },
  ];
}

/** v0.2.0's subtests, with the steps upstream added after it placed where upstream has them. */
function withRelabelling(states: Step[]): Step[] {
  return [states[0], ...relabelSteps(states[0]), ...states.slice(1)];
}

/** experimental-egress-selector-rules.yaml: node peers (and pods and networks to deny). */
function nodePeerStates(tier: "Admin" | "Baseline"): Step[] {
  const policy = tier === "Admin"
    ? cnp("node-and-cidr-as-peers-example", "Admin", 75, {
      subject: housePods("gryffindor"),
      egress: [
        rule("egress", `allow-egress-to-${HOST_PORTS[0]}-on-nodes`, "Accept", [linuxNodes], [
          tcp(HOST_PORTS[0]),
        ]),
        rule("egress", `pass-egress-to-${HOST_PORTS[2]}-on-nodes`, "Pass", [linuxNodes], [
          udp(HOST_PORTS[2]),
        ]),
        rule("egress", "deny-egress-to-slytherin-and-nodes-and-internet", "Deny", [
          housePods("slytherin"),
          linuxNodes,
          internet,
        ]),
      ],
    })
    : cnp("default", "Baseline", 10, {
      subject: nsPeer(G),
      egress: [
        rule("egress", `allow-egress-to-${HOST_PORTS[0]}-on-nodes`, "Accept", [linuxNodes], [
          { tcp: { destinationPort: { range: { start: HOST_PORTS[0], end: HOST_PORTS[1] } } } },
        ]),
        rule("egress", "deny-egress-to-nodes-and-internet", "Deny", [linuxNodes, internet]),
      ],
    });
  return (tier === "Admin" ? [0, 1, 2] : [0, 1]).map(() => ({ cnps: [policy] }));
}

const CASES: [string, string, string, ConformanceCase["feature"], Step[]][] = [
  [
    "CNPAdminTierIngressTCP",
    "admin-network-policy-standard-ingress-tcp-rules.go",
    "admin_tier/standard-ingress-tcp-rules.yaml",
    "standard",
    adminStates("ingressTcp", "ingress-tcp", 3),
  ],
  [
    "CNPAdminTierIngressUDP",
    "admin-network-policy-standard-ingress-udp-rules.go",
    "admin_tier/standard-ingress-udp-rules.yaml",
    "standard",
    adminStates("ingressUdp", "ingress-udp", 4),
  ],
  [
    "CNPAdminTierIngressSCTP",
    "admin-network-policy-standard-ingress-sctp-rules.go",
    "admin_tier/standard-ingress-sctp-rules.yaml",
    "standard",
    adminStates("ingressSctp", "ingress-sctp", 5),
  ],
  [
    "CNPAdminTierEgressTCP",
    "admin-network-policy-standard-egress-tcp-rules.go",
    "admin_tier/standard-egress-tcp-rules.yaml",
    "standard",
    adminStates("egressTcp", "egress-tcp", 6),
  ],
  [
    "CNPAdminTierEgressUDP",
    "admin-network-policy-standard-egress-udp-rules.go",
    "admin_tier/standard-egress-udp-rules.yaml",
    "standard",
    adminStates("egressUdp", "egress-udp", 7),
  ],
  [
    "CNPAdminTierEgressSCTP",
    "admin-network-policy-standard-egress-sctp-rules.go",
    "admin_tier/standard-egress-sctp-rules.yaml",
    "standard",
    adminStates("egressSctp", "egress-sctp", 8),
  ],
  [
    "CNPAdminTierGress",
    "admin-network-policy-standard-gress-rules.go",
    "admin_tier/standard-gress-rules-combined.yaml",
    "standard",
    protocolStates(gressPolicy("Admin"), ["egress", "ingress"]),
  ],
  [
    "CNPAdminTierIntegration",
    "admin-network-policy-standard-integration.go",
    "api_integration/standard-anp-np-banp.yaml",
    "standard",
    integrationStates(),
  ],
  [
    "CNPAdminTierPriorityField",
    "admin-network-policy-standard-priority.go",
    "admin_tier/standard-priority-field.yaml",
    "standard",
    priorityStates(),
  ],
  [
    "CNPAdminTierEgressInlineCIDRPeers",
    "admin-network-policy-standard-egress-inline-cidr-rules.go",
    "admin_tier/standard-egress-inline-cidr-rules.yaml",
    "standard",
    withRelabelling(inlineCidrStates("Admin")),
  ],
  [
    "CNPAdminTierEgressNamedPort",
    "admin-network-policy-experimental-egress-rules.go",
    "admin_tier/standard-egress-tcp-rules.yaml",
    "named-ports",
    [{
      cnps: [namedPort(shaped("egressTcp", "egress-tcp", "Admin", 6), "egress", 5, "web")],
      change: "egress rule 5's protocols: destinationNamedPort web",
    }],
  ],
  [
    "CNPAdminTierIngressNamedPort",
    "admin-network-policy-experimental-ingress-rules.go",
    "admin_tier/standard-ingress-udp-rules.yaml",
    "named-ports",
    [{
      cnps: [namedPort(shaped("ingressUdp", "ingress-udp", "Admin", 4), "ingress", 5, "dns")],
      change: "ingress rule 5's protocols: destinationNamedPort dns",
    }],
  ],
  [
    "CNPAdminTierEgressNodePeers",
    "admin-network-policy-experimental-egress-rules.go",
    "admin_tier/experimental-egress-selector-rules.yaml",
    "egress-node-peers",
    nodePeerStates("Admin"),
  ],
  [
    "CNPBaselineTierIngressTCP",
    "baseline-admin-network-policy-standard-ingress-tcp-rules.go",
    "baseline_tier/standard-ingress-tcp-rules.yaml",
    "standard",
    baselineStates("ingressTcp"),
  ],
  [
    "CNPBaselineTierIngressUDP",
    "baseline-admin-network-policy-standard-ingress-udp-rules.go",
    "baseline_tier/standard-ingress-udp-rules.yaml",
    "standard",
    baselineStates("ingressUdp"),
  ],
  [
    "CNPBaselineTierIngressSCTP",
    "baseline-admin-network-policy-standard-ingress-sctp-rules.go",
    "baseline_tier/standard-ingress-sctp-rules.yaml",
    "standard",
    baselineStates("ingressSctp"),
  ],
  [
    "CNPBaselineTierEgressTCP",
    "baseline-admin-network-policy-standard-egress-tcp-rules.go",
    "baseline_tier/standard-egress-tcp-rules.yaml",
    "standard",
    baselineStates("egressTcp"),
  ],
  [
    "CNPBaselineTierEgressUDP",
    "baseline-admin-network-policy-standard-egress-udp-rules.go",
    "baseline_tier/standard-egress-udp-rules.yaml",
    "standard",
    baselineStates("egressUdp"),
  ],
  [
    "CNPBaselineTierEgressSCTP",
    "baseline-admin-network-policy-standard-egress-sctp-rules.go",
    "baseline_tier/standard-egress-sctp-rules.yaml",
    "standard",
    baselineStates("egressSctp"),
  ],
  [
    "CNPBaselineTierGress",
    "baseline-admin-network-policy-standard-gress-rules.go",
    "baseline_tier/standard-gress-rules-combined.yaml",
    "standard",
    protocolStates(gressPolicy("Baseline"), ["egress", "ingress"]).slice(0, 4),
  ],
  [
    "CNPBaselineTierEgressInlineCIDRPeers",
    "baseline-admin-network-policy-standard-egress-inline-cidr-rules.go",
    "baseline_tier/standard-egress-inline-cidr-rules.yaml",
    "standard",
    withRelabelling(inlineCidrStates("Baseline")),
  ],
  [
    "CNPBaselineTierEgressNamedPort",
    "baseline-admin-network-policy-experimental-egress-rules.go",
    "baseline_tier/standard-egress-udp-rules.yaml",
    "named-ports",
    [{
      cnps: [namedPort(shaped("egressUdp", "default", "Baseline", 10), "egress", 3, "dns")],
      change: "egress rule 3's protocols: destinationNamedPort dns",
    }],
  ],
  [
    "CNPBaselineTierIngressNamedPort",
    "baseline-admin-network-policy-experimental-ingress-rules.go",
    "baseline_tier/standard-ingress-tcp-rules.yaml",
    "named-ports",
    [{
      cnps: [namedPort(shaped("ingressTcp", "default", "Baseline", 10), "ingress", 3, "web")],
      change: "ingress rule 3's protocols: destinationNamedPort web",
    }],
  ],
  [
    "CNPBaselineTierEgressNodePeers",
    "baseline-admin-network-policy-experimental-egress-rules.go",
    "baseline_tier/experimental-egress-selector-rules.yaml",
    "egress-node-peers",
    nodePeerStates("Baseline"),
  ],
];

type Row = readonly [from: string, to: string, protocol: Protocol, port: number, allowed: boolean];
type SubtestProbes = readonly (readonly [name: string, probes: readonly Row[]])[];

// ---- Upstream's probes, per test and subtest (kubernetes.PokeServer calls, in order) --------
// Client pod, server pod (the probe goes to its status.podIP), protocol, port, whether upstream
// expects the connection to succeed.
const PROBES: Record<string, SubtestProbes> = {
  // conformance/tests/admin-network-policy-experimental-egress-rules.go
  CNPAdminTierEgressNamedPort: [
    ["Should support an 'allow-egress' policy for named port", [
      ["harry-potter-0", "cedric-diggory-1", "TCP", 80, true],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 8080, false],
    ]],
  ],

  // conformance/tests/admin-network-policy-experimental-egress-rules.go
  CNPAdminTierEgressNodePeers: [
    ["Should support an 'allow-egress' rule policy for egress-node-peer", [
      ["harry-potter-1", "centaur-1", "TCP", HOST_PORTS[0], true],
    ]],
    ["Should support a 'pass-egress' rule policy for egress-node-peer", [
      ["harry-potter-1", "centaur-1", "UDP", HOST_PORTS[2], true],
    ]],
    ["Should support a 'deny-egress' rule policy for egress-node-peer", [
      ["harry-potter-1", "centaur-1", "TCP", HOST_PORTS[1], false],
      ["harry-potter-1", "centaur-1", "UDP", HOST_PORTS[4], false],
      ["harry-potter-1", "centaur-1", "SCTP", HOST_PORTS[6], false],
    ]],
  ],

  // conformance/tests/admin-network-policy-experimental-ingress-rules.go
  CNPAdminTierIngressNamedPort: [
    ["Should support an 'allow-ingress' policy for named port", [
      ["harry-potter-0", "cedric-diggory-1", "UDP", 53, true],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 5353, false],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-egress-inline-cidr-rules.go
  CNPAdminTierEgressInlineCIDRPeers: [
    ["Should support a 'deny-egress' rule policy for egress-cidr-peer", [
      ["harry-potter-1", "luna-lovegood-0", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, false],
      ["harry-potter-1", "luna-lovegood-0", "SCTP", 9003, false],
      ["harry-potter-1", "cedric-diggory-0", "TCP", 80, false],
      ["harry-potter-1", "cedric-diggory-0", "UDP", 53, false],
      ["harry-potter-1", "cedric-diggory-0", "SCTP", 9003, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 80, true],
      ["harry-potter-1", "draco-malfoy-0", "UDP", 53, true],
      ["harry-potter-1", "draco-malfoy-0", "SCTP", 9003, true],
    ]],
    ["Should support an 'allow-egress' rule policy for egress-cidr-peer", [
      ["harry-potter-1", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, true],
      ["harry-potter-1", "luna-lovegood-0", "SCTP", 9003, true],
      ["harry-potter-1", "cedric-diggory-0", "TCP", 80, true],
      ["harry-potter-1", "cedric-diggory-0", "UDP", 53, true],
      ["harry-potter-1", "cedric-diggory-0", "SCTP", 9003, true],
      ["harry-potter-1", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "UDP", 53, false],
      ["harry-potter-1", "luna-lovegood-1", "SCTP", 9003, false],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 53, false],
      ["harry-potter-1", "cedric-diggory-1", "SCTP", 9003, false],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-egress-sctp-rules.go
  CNPAdminTierEgressSCTP: [
    [
      "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-0", "SCTP", 9003, true],
        ["luna-lovegood-1", "harry-potter-0", "SCTP", 9005, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for SCTP protocol at the specified port", [
      ["luna-lovegood-0", "cedric-diggory-1", "SCTP", 9003, true],
      ["luna-lovegood-1", "cedric-diggory-1", "SCTP", 9005, false],
    ]],
    [
      "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-1", "SCTP", 9003, false],
        ["luna-lovegood-1", "harry-potter-1", "SCTP", 9005, false],
      ],
    ],
    ["Should support a 'deny-egress' policy for SCTP protocol at the specified port", [
      ["luna-lovegood-0", "draco-malfoy-0", "SCTP", 9003, false],
      ["luna-lovegood-1", "draco-malfoy-0", "SCTP", 9005, true],
    ]],
    [
      "Should support an 'pass-egress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-1", "SCTP", 9003, true],
        ["luna-lovegood-1", "harry-potter-1", "SCTP", 9005, true],
      ],
    ],
    ["Should support a 'pass-egress' policy for SCTP protocol at the specified port", [
      ["luna-lovegood-0", "draco-malfoy-0", "SCTP", 9003, true],
      ["luna-lovegood-1", "draco-malfoy-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-egress-tcp-rules.go
  CNPAdminTierEgressTCP: [
    [
      "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
        ["harry-potter-1", "luna-lovegood-0", "TCP", 8080, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for TCP protocol at the specified port", [
      ["harry-potter-0", "cedric-diggory-1", "TCP", 8080, true],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
    ]],
    ["Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected", [
      ["harry-potter-0", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "TCP", 8080, false],
    ]],
    ["Should support a 'deny-egress' policy for TCP protocol at the specified port", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
    ]],
    ["Should support an 'pass-egress' policy for TCP protocol; ensure rule ordering is respected", [
      ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-1", "luna-lovegood-0", "TCP", 8080, true],
    ]],
    ["Should support a 'pass-egress' policy for TCP protocol at the specified port", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, true],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-egress-udp-rules.go
  CNPAdminTierEgressUDP: [
    [
      "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["cedric-diggory-0", "luna-lovegood-0", "UDP", 53, true],
        ["cedric-diggory-1", "luna-lovegood-0", "UDP", 5353, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for UDP protocol at the specified port", [
      ["cedric-diggory-0", "harry-potter-1", "UDP", 53, true],
      ["cedric-diggory-1", "harry-potter-1", "UDP", 5353, false],
    ]],
    ["Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected", [
      ["cedric-diggory-0", "luna-lovegood-1", "UDP", 53, false],
      ["cedric-diggory-1", "luna-lovegood-1", "UDP", 5353, false],
    ]],
    ["Should support a 'deny-egress' policy for UDP protocol at the specified port", [
      ["cedric-diggory-0", "draco-malfoy-0", "UDP", 5353, false],
      ["cedric-diggory-1", "draco-malfoy-0", "UDP", 53, true],
    ]],
    ["Should support an 'pass-egress' policy for UDP protocol; ensure rule ordering is respected", [
      ["cedric-diggory-0", "luna-lovegood-1", "UDP", 5353, true],
      ["cedric-diggory-1", "luna-lovegood-1", "UDP", 53, true],
    ]],
    ["Should support a 'pass-egress' policy for UDP protocol at the specified port", [
      ["cedric-diggory-0", "draco-malfoy-0", "UDP", 5353, true],
      ["cedric-diggory-1", "draco-malfoy-0", "UDP", 53, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-gress-rules.go
  CNPAdminTierGress: [
    ["Should support an 'allow-gress' policy across different protocols", [
      ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, true],
      ["harry-potter-0", "luna-lovegood-0", "SCTP", 9003, true],
      ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
      ["luna-lovegood-1", "harry-potter-0", "UDP", 53, true],
      ["luna-lovegood-1", "harry-potter-0", "SCTP", 9003, true],
    ]],
    ["Should support an 'allow-gress' policy across different protocols at the specified ports", [
      ["harry-potter-0", "cedric-diggory-1", "TCP", 8080, true],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
      ["harry-potter-0", "cedric-diggory-1", "UDP", 5353, true],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 53, false],
      ["harry-potter-0", "cedric-diggory-1", "SCTP", 9003, true],
      ["harry-potter-1", "cedric-diggory-1", "SCTP", 9005, false],
      ["cedric-diggory-0", "harry-potter-1", "TCP", 80, true],
      ["cedric-diggory-1", "harry-potter-1", "TCP", 8080, false],
      ["cedric-diggory-0", "harry-potter-1", "UDP", 5353, true],
      ["cedric-diggory-1", "harry-potter-1", "UDP", 53, false],
      ["cedric-diggory-0", "harry-potter-1", "SCTP", 9003, true],
      ["cedric-diggory-1", "harry-potter-1", "SCTP", 9005, false],
    ]],
    ["Should support an 'deny-gress' policy across different protocols", [
      ["harry-potter-0", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "UDP", 53, false],
      ["harry-potter-0", "luna-lovegood-1", "SCTP", 9003, false],
      ["luna-lovegood-0", "harry-potter-1", "TCP", 80, false],
      ["luna-lovegood-1", "harry-potter-1", "UDP", 53, false],
      ["luna-lovegood-1", "harry-potter-1", "SCTP", 9003, false],
    ]],
    ["Should support a 'deny-gress' policy across different protocols at the specified ports", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
      ["harry-potter-0", "draco-malfoy-0", "UDP", 53, false],
      ["harry-potter-1", "draco-malfoy-0", "UDP", 5353, true],
      ["harry-potter-0", "draco-malfoy-0", "SCTP", 9003, false],
      ["harry-potter-1", "draco-malfoy-0", "SCTP", 9005, true],
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
      ["draco-malfoy-0", "harry-potter-0", "UDP", 53, false],
      ["draco-malfoy-1", "harry-potter-0", "UDP", 5353, true],
      ["draco-malfoy-0", "harry-potter-0", "SCTP", 9003, false],
      ["draco-malfoy-1", "harry-potter-0", "SCTP", 9005, true],
    ]],
    ["Should support an 'pass-gress' policy across different protocols", [
      ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-0", "luna-lovegood-0", "UDP", 5353, true],
      ["harry-potter-0", "luna-lovegood-0", "SCTP", 9003, true],
      ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
      ["luna-lovegood-1", "harry-potter-0", "UDP", 53, true],
      ["luna-lovegood-1", "harry-potter-0", "SCTP", 9003, true],
    ]],
    ["Should support a 'pass-gress' policy across different protocols at the specified ports", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, true],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
      ["harry-potter-0", "draco-malfoy-0", "UDP", 53, true],
      ["harry-potter-1", "draco-malfoy-0", "UDP", 5353, true],
      ["harry-potter-0", "draco-malfoy-0", "SCTP", 9003, true],
      ["harry-potter-1", "draco-malfoy-0", "SCTP", 9005, true],
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, true],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
      ["draco-malfoy-0", "harry-potter-0", "UDP", 53, true],
      ["draco-malfoy-1", "harry-potter-0", "UDP", 5353, true],
      ["draco-malfoy-0", "harry-potter-0", "SCTP", 9003, true],
      ["draco-malfoy-1", "harry-potter-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-ingress-sctp-rules.go
  CNPAdminTierIngressSCTP: [
    [
      "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-0", "SCTP", 9003, true],
        ["harry-potter-1", "luna-lovegood-0", "SCTP", 9005, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for SCTP protocol at the specified port", [
      ["cedric-diggory-0", "luna-lovegood-1", "SCTP", 9003, true],
      ["cedric-diggory-1", "luna-lovegood-1", "SCTP", 9005, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-1", "SCTP", 9003, false],
        ["harry-potter-1", "luna-lovegood-1", "SCTP", 9005, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for SCTP protocol at the specified port", [
      ["draco-malfoy-0", "luna-lovegood-0", "SCTP", 9003, false],
      ["draco-malfoy-1", "luna-lovegood-0", "SCTP", 9005, true],
    ]],
    [
      "Should support an 'pass-ingress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-1", "SCTP", 9003, true],
        ["harry-potter-1", "luna-lovegood-1", "SCTP", 9005, true],
      ],
    ],
    ["Should support a 'pass-ingress' policy for SCTP protocol at the specified port", [
      ["draco-malfoy-0", "luna-lovegood-0", "SCTP", 9003, true],
      ["draco-malfoy-1", "luna-lovegood-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-ingress-tcp-rules.go
  CNPAdminTierIngressTCP: [
    [
      "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
        ["luna-lovegood-1", "harry-potter-0", "TCP", 8080, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for TCP protocol at the specified port", [
      ["cedric-diggory-0", "harry-potter-1", "TCP", 80, true],
      ["cedric-diggory-1", "harry-potter-1", "TCP", 8080, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-1", "TCP", 80, false],
        ["luna-lovegood-1", "harry-potter-1", "TCP", 8080, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for TCP protocol at the specified port", [
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
    ]],
    [
      "Should support an 'pass-ingress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
        ["luna-lovegood-1", "harry-potter-0", "TCP", 8080, true],
      ],
    ],
    ["Should support a 'pass-ingress' policy for TCP protocol at the specified port", [
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, true],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-ingress-udp-rules.go
  CNPAdminTierIngressUDP: [
    [
      "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "cedric-diggory-0", "UDP", 53, true],
        ["luna-lovegood-1", "cedric-diggory-0", "UDP", 5353, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for UDP protocol at the specified port", [
      ["harry-potter-0", "cedric-diggory-1", "UDP", 53, true],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 5353, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "cedric-diggory-1", "UDP", 53, false],
        ["luna-lovegood-1", "cedric-diggory-1", "UDP", 5353, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for UDP protocol at the specified port", [
      ["draco-malfoy-0", "cedric-diggory-0", "UDP", 5353, false],
      ["draco-malfoy-1", "cedric-diggory-0", "UDP", 53, true],
    ]],
    [
      "Should support an 'pass-ingress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "cedric-diggory-1", "UDP", 5353, true],
        ["luna-lovegood-1", "cedric-diggory-1", "UDP", 53, true],
      ],
    ],
    ["Should support a 'pass-ingress' policy for UDP protocol at the specified port", [
      ["draco-malfoy-0", "cedric-diggory-0", "UDP", 5353, true],
      ["draco-malfoy-1", "cedric-diggory-0", "UDP", 53, true],
    ]],
  ],

  // conformance/tests/admin-network-policy-standard-integration.go
  CNPAdminTierIntegration: [
    ["Should Deny traffic from slytherin to gryffindor respecting admin CNP", [
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, false],
    ]],
    ["Should Deny traffic to slytherin from gryffindor respecting admin CNP", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, false],
    ]],
    [
      "Should support a 'pass-ingress' policy for admin CNP and respect the match for network policy",
      [
        ["draco-malfoy-0", "harry-potter-0", "TCP", 80, true],
        ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
      ],
    ],
    [
      "Should support a 'pass-egress' policy for admin CNP and respect the match for network policy",
      [
        ["harry-potter-0", "draco-malfoy-0", "TCP", 80, true],
        ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
      ],
    ],
    [
      "Should support a 'pass-ingress' policy for admin CNP and respect the match for baseline cluster network policy",
      [
        ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
        ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, false],
      ],
    ],
    [
      "Should support a 'pass-egress' policy for admin CNP and respect the match for baseline cluster network policy",
      [
        ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
        ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, false],
      ],
    ],
  ],

  // conformance/tests/admin-network-policy-standard-priority.go
  CNPAdminTierPriorityField: [
    ["Should Deny traffic from slytherin to gryffindor respecting admin CNP", [
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, false],
    ]],
    ["Should Deny traffic to slytherin from gryffindor respecting admin CNP", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, false],
    ]],
    [
      "Should respect admin CNP priority field; thus passing both ingress and egress traffic over to baseline CNP",
      [
        ["draco-malfoy-0", "harry-potter-0", "TCP", 80, true],
        ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
        ["harry-potter-0", "draco-malfoy-0", "TCP", 80, true],
        ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
      ],
    ],
  ],

  // conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go
  CNPBaselineTierEgressNamedPort: [
    ["Should support an 'allow-egress' policy for named port", [
      ["cedric-diggory-0", "harry-potter-1", "UDP", 53, true],
      ["cedric-diggory-1", "harry-potter-1", "UDP", 5353, false],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go
  CNPBaselineTierEgressNodePeers: [
    ["Should support an 'allow-egress' rule policy for egress-node-peer", [
      ["harry-potter-0", "centaur-1", "TCP", HOST_PORTS[0], true],
      ["harry-potter-1", "centaur-1", "TCP", HOST_PORTS[1], true],
    ]],
    ["Should support a 'deny-egress' rule policy for egress-node-peer", [
      ["harry-potter-1", "centaur-1", "UDP", HOST_PORTS[4], false],
      ["harry-potter-1", "centaur-1", "SCTP", HOST_PORTS[6], false],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-experimental-ingress-rules.go
  CNPBaselineTierIngressNamedPort: [
    ["Should support an 'allow-ingress' policy for named port", [
      ["cedric-diggory-0", "harry-potter-1", "TCP", 80, true],
      ["cedric-diggory-1", "harry-potter-1", "TCP", 8080, false],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-egress-inline-cidr-rules.go
  CNPBaselineTierEgressInlineCIDRPeers: [
    ["Should support a 'deny-egress' rule policy for egress-cidr-peer", [
      ["harry-potter-1", "luna-lovegood-0", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, false],
      ["harry-potter-1", "luna-lovegood-0", "SCTP", 9003, false],
      ["harry-potter-1", "cedric-diggory-0", "TCP", 80, false],
      ["harry-potter-1", "cedric-diggory-0", "UDP", 53, false],
      ["harry-potter-1", "cedric-diggory-0", "SCTP", 9003, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 80, true],
      ["harry-potter-1", "draco-malfoy-0", "UDP", 53, true],
      ["harry-potter-1", "draco-malfoy-0", "SCTP", 9003, true],
    ]],
    ["Should support an 'allow-egress' rule policy for egress-cidr-peer", [
      ["harry-potter-1", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, true],
      ["harry-potter-1", "luna-lovegood-0", "SCTP", 9003, true],
      ["harry-potter-1", "cedric-diggory-0", "TCP", 80, true],
      ["harry-potter-1", "cedric-diggory-0", "UDP", 53, true],
      ["harry-potter-1", "cedric-diggory-0", "SCTP", 9003, true],
      ["harry-potter-1", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "UDP", 53, false],
      ["harry-potter-1", "luna-lovegood-1", "SCTP", 9003, false],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 53, false],
      ["harry-potter-1", "cedric-diggory-1", "SCTP", 9003, false],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-egress-sctp-rules.go
  CNPBaselineTierEgressSCTP: [
    [
      "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-0", "SCTP", 9003, true],
        ["luna-lovegood-1", "harry-potter-0", "SCTP", 9005, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for SCTP protocol at the specified port", [
      ["luna-lovegood-0", "cedric-diggory-1", "SCTP", 9003, true],
      ["luna-lovegood-1", "cedric-diggory-1", "SCTP", 9005, false],
    ]],
    [
      "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-1", "SCTP", 9003, false],
        ["luna-lovegood-1", "harry-potter-1", "SCTP", 9005, false],
      ],
    ],
    ["Should support a 'deny-egress' policy for SCTP protocol at the specified port", [
      ["luna-lovegood-0", "draco-malfoy-0", "SCTP", 9003, false],
      ["luna-lovegood-1", "draco-malfoy-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-egress-tcp-rules.go
  CNPBaselineTierEgressTCP: [
    [
      "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
        ["harry-potter-1", "luna-lovegood-0", "TCP", 8080, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for TCP protocol at the specified port", [
      ["harry-potter-0", "cedric-diggory-1", "TCP", 8080, true],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
    ]],
    ["Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected", [
      ["harry-potter-0", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "TCP", 8080, false],
    ]],
    ["Should support a 'deny-egress' policy for TCP protocol at the specified port", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-egress-udp-rules.go
  CNPBaselineTierEgressUDP: [
    [
      "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["cedric-diggory-0", "luna-lovegood-0", "UDP", 53, true],
        ["cedric-diggory-1", "luna-lovegood-0", "UDP", 5353, true],
      ],
    ],
    ["Should support an 'allow-egress' policy for UDP protocol at the specified port", [
      ["cedric-diggory-0", "harry-potter-1", "UDP", 53, true],
      ["cedric-diggory-1", "harry-potter-1", "UDP", 5353, false],
    ]],
    ["Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected", [
      ["cedric-diggory-0", "luna-lovegood-1", "UDP", 53, false],
      ["cedric-diggory-1", "luna-lovegood-1", "UDP", 5353, false],
    ]],
    ["Should support a 'deny-egress' policy for UDP protocol at the specified port", [
      ["cedric-diggory-0", "draco-malfoy-0", "UDP", 5353, false],
      ["cedric-diggory-1", "draco-malfoy-0", "UDP", 53, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-gress-rules.go
  CNPBaselineTierGress: [
    ["Should support an 'allow-gress' policy across different protocols", [
      ["harry-potter-0", "luna-lovegood-0", "TCP", 80, true],
      ["harry-potter-1", "luna-lovegood-0", "UDP", 53, true],
      ["harry-potter-0", "luna-lovegood-0", "SCTP", 9003, true],
      ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
      ["luna-lovegood-1", "harry-potter-0", "UDP", 53, true],
      ["luna-lovegood-1", "harry-potter-0", "SCTP", 9003, true],
    ]],
    ["Should support an 'allow-gress' policy across different protocols at the specified ports", [
      ["harry-potter-0", "cedric-diggory-1", "TCP", 8080, true],
      ["harry-potter-1", "cedric-diggory-1", "TCP", 80, false],
      ["harry-potter-0", "cedric-diggory-1", "UDP", 5353, true],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 53, false],
      ["harry-potter-0", "cedric-diggory-1", "SCTP", 9003, true],
      ["harry-potter-1", "cedric-diggory-1", "SCTP", 9005, false],
      ["cedric-diggory-0", "harry-potter-1", "TCP", 80, true],
      ["cedric-diggory-1", "harry-potter-1", "TCP", 8080, false],
      ["cedric-diggory-0", "harry-potter-1", "UDP", 5353, true],
      ["cedric-diggory-1", "harry-potter-1", "UDP", 53, false],
      ["cedric-diggory-0", "harry-potter-1", "SCTP", 9003, true],
      ["cedric-diggory-1", "harry-potter-1", "SCTP", 9005, false],
    ]],
    ["Should support an 'deny-gress' policy across different protocols", [
      ["harry-potter-0", "luna-lovegood-1", "TCP", 80, false],
      ["harry-potter-1", "luna-lovegood-1", "UDP", 53, false],
      ["harry-potter-0", "luna-lovegood-1", "SCTP", 9003, false],
      ["luna-lovegood-0", "harry-potter-1", "TCP", 80, false],
      ["luna-lovegood-1", "harry-potter-1", "UDP", 53, false],
      ["luna-lovegood-1", "harry-potter-1", "SCTP", 9003, false],
    ]],
    ["Should support a 'deny-gress' policy across different protocols at the specified ports", [
      ["harry-potter-0", "draco-malfoy-0", "TCP", 80, false],
      ["harry-potter-1", "draco-malfoy-0", "TCP", 8080, true],
      ["harry-potter-0", "draco-malfoy-0", "UDP", 53, false],
      ["harry-potter-1", "draco-malfoy-0", "UDP", 5353, true],
      ["harry-potter-0", "draco-malfoy-0", "SCTP", 9003, false],
      ["harry-potter-1", "draco-malfoy-0", "SCTP", 9005, true],
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
      ["draco-malfoy-0", "harry-potter-0", "UDP", 53, false],
      ["draco-malfoy-1", "harry-potter-0", "UDP", 5353, true],
      ["draco-malfoy-0", "harry-potter-0", "SCTP", 9003, false],
      ["draco-malfoy-1", "harry-potter-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-ingress-sctp-rules.go
  CNPBaselineTierIngressSCTP: [
    [
      "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-0", "SCTP", 9003, true],
        ["harry-potter-1", "luna-lovegood-0", "SCTP", 9005, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for SCTP protocol at the specified port", [
      ["cedric-diggory-0", "luna-lovegood-1", "SCTP", 9003, true],
      ["cedric-diggory-1", "luna-lovegood-1", "SCTP", 9005, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected",
      [
        ["harry-potter-0", "luna-lovegood-1", "SCTP", 9003, false],
        ["harry-potter-1", "luna-lovegood-1", "SCTP", 9005, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for SCTP protocol at the specified port", [
      ["draco-malfoy-0", "luna-lovegood-0", "SCTP", 9003, false],
      ["draco-malfoy-1", "luna-lovegood-0", "SCTP", 9005, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-ingress-tcp-rules.go
  CNPBaselineTierIngressTCP: [
    [
      "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-0", "TCP", 80, true],
        ["luna-lovegood-1", "harry-potter-0", "TCP", 8080, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for TCP protocol at the specified port", [
      ["cedric-diggory-0", "harry-potter-1", "TCP", 80, true],
      ["cedric-diggory-1", "harry-potter-1", "TCP", 8080, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "harry-potter-1", "TCP", 80, false],
        ["luna-lovegood-1", "harry-potter-1", "TCP", 8080, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for TCP protocol at the specified port", [
      ["draco-malfoy-0", "harry-potter-0", "TCP", 80, false],
      ["draco-malfoy-1", "harry-potter-0", "TCP", 8080, true],
    ]],
  ],

  // conformance/tests/baseline-admin-network-policy-standard-ingress-udp-rules.go
  CNPBaselineTierIngressUDP: [
    [
      "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "cedric-diggory-0", "UDP", 53, true],
        ["luna-lovegood-1", "cedric-diggory-0", "UDP", 5353, true],
      ],
    ],
    ["Should support an 'allow-ingress' policy for UDP protocol at the specified port", [
      ["harry-potter-0", "cedric-diggory-1", "UDP", 53, true],
      ["harry-potter-1", "cedric-diggory-1", "UDP", 5353, false],
    ]],
    [
      "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected",
      [
        ["luna-lovegood-0", "cedric-diggory-1", "UDP", 53, false],
        ["luna-lovegood-1", "cedric-diggory-1", "UDP", 5353, false],
      ],
    ],
    ["Should support a 'deny-ingress' policy for UDP protocol at the specified port", [
      ["draco-malfoy-0", "cedric-diggory-0", "UDP", 5353, false],
      ["draco-malfoy-1", "cedric-diggory-0", "UDP", 53, true],
    ]],
  ],
};

/** Every upstream test with its subtests, in the order above. */
export const CONFORMANCE_CASES: readonly ConformanceCase[] = CASES.map(
  ([test, source, manifest, feature, steps]) => {
    const upstream = [...PROBES[test]];
    if (steps.filter((s) => s.since === undefined).length !== upstream.length) {
      throw new Error(`${test}: ${steps.length} policy states for ${upstream.length} subtests`);
    }
    return {
      test,
      source: `conformance/tests/${source}`,
      manifest: `conformance/base/${manifest}`,
      feature,
      subtests: steps.map((step): Subtest => {
        const [name, rows] = step.since === undefined
          ? upstream.shift()!
          : [step.name!, step.rows!];
        return {
          name,
          change: step.change ?? "",
          clusterNetworkPolicies: step.cnps,
          networkPolicies: step.nps ?? [],
          ...(step.namespaceLabels ? { namespaceLabels: step.namespaceLabels } : {}),
          probes: rows.map(([from, to, protocol, port, allowed]) => ({
            from: `${POD_NAMESPACE.get(from)}/${from}`,
            to: `${POD_NAMESPACE.get(to)}/${to}`,
            protocol,
            port,
            allowed,
          })),
          ...(step.since ? { since: step.since } : {}),
        };
      }),
    };
  },
);

/** Whether a subtest has SCTP probes (our kernel has no SCTP sockets to send them). */
export function needsSctp(subtest: Subtest): boolean {
  return subtest.probes.some((p) => p.protocol === "SCTP");
}
