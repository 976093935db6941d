// Strict mode's decisions on the e2e cluster (x, y, z with a, b, c; b's on node n2): which
// addresses a change may have narrowed, and which conntrack entries then go, judged by
// explain over the new state; never an allowed connection, replies included.
import type { PolicyState } from "../../../lib/policy/compile.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import { explainFlow } from "../../../lib/policy/explain.ts";
import type { PolicyPlan } from "../../../lib/policy/plan.ts";
import {
  affectedAddresses,
  type Connection,
  connectionFlow,
  connectionsToCut,
  type JudgedFlow,
} from "../../../lib/policy/strict.ts";
import { cutElement, NOT_SYN_RULE, strictForwardRules } from "../../../lib/policy/strict_rules.ts";
import { assertEquals } from "../../harness/assert.ts";
import { cnp, withCluster } from "./cnp_fixtures.ts";
import { e2eCluster, pod, policy, SERVER_PORTS } from "./fixtures.ts";

const PROTO: Record<number, "TCP" | "UDP" | "SCTP"> = { 6: "TCP", 17: "UDP", 132: "SCTP" };

/** The judge the agent would use: explain over the new state. */
function judge(state: PolicyState): (f: JudgedFlow) => boolean {
  return (f) =>
    explainFlow(state, { from: f.src, to: f.dst, protocol: PROTO[f.proto], port: f.dport! })
      .allowed;
}

/** A TCP connection `src:sport -> dst:dport` without NAT. */
function tcp(src: string, dst: string, dport: number, sport = 40000): Connection {
  return {
    orig: { src, dst, proto: 6, sport, dport },
    reply: { src: dst, dst: src, proto: 6, sport: dport, dport: sport },
  };
}

const n2 = (s: PolicyState): PolicyPlan => compilePolicies(s, { node: "n2" });

/** y/b's ingress: only x/a (by label pod=a in namespace x) on TCP 80. */
const onlyXaTo80 = (port = 80) =>
  policy("y/allow-xa", {
    podSelector: { matchLabels: { pod: "b" } },
    ingress: [{
      from: [{
        namespaceSelector: { matchLabels: { ns: "x" } },
        podSelector: { matchLabels: { pod: "a" } },
      }],
      ports: [{ protocol: "TCP", port }],
    }],
  });

// Addresses: x/a 10.0.1.1, x/c 10.0.1.3, y/b 10.0.2.2 (and fd00::2:2), z/c 10.0.3.3.
const XA = "10.0.1.1", XC = "10.0.1.3", YB = "10.0.2.2", ZC = "10.0.3.3";

Deno.test("connectionsToCut() cuts what the new policy denies and keeps the rest, replies too", () => {
  const after = e2eCluster([onlyXaTo80()]);
  const entries = [
    tcp(XA, YB, 80), // allowed by the policy
    tcp(XC, YB, 80), // now denied
    tcp(XA, YB, 81), // now denied: wrong port
    // y/b's own connection to x/c: its packets from x/c are replies, judged as y/b -> x/c.
    tcp(YB, XC, 80),
    tcp(ZC, XA, 80), // elsewhere, untouched
  ];
  assertEquals(connectionsToCut(entries, judge(after)), [entries[1], entries[2]]);
  // Only those touching the affected addresses are even judged.
  assertEquals(connectionsToCut(entries, judge(after), { addresses: [XA] }), [entries[2]]);
});

Deno.test("connectionsToCut() judges each distinct flow once", () => {
  let asked = 0;
  const entries = Array.from({ length: 500 }, (_, i) => tcp(XC, YB, 80, 10000 + i));
  const cut = connectionsToCut(entries, () => (asked++, false));
  assertEquals([cut.length, asked], [500, 1]);
});

Deno.test("connectionFlow() judges a connection where the rules saw it: after DNAT, before SNAT", () => {
  // x/c -> a Service 10.96.0.10:80 DNATed to y/b:8080.
  const svc: Connection = {
    orig: { src: XC, dst: "10.96.0.10", proto: 6, sport: 40000, dport: 80 },
    reply: { src: YB, dst: XC, proto: 6, sport: 8080, dport: 40000 },
  };
  assertEquals(connectionFlow(svc), { src: XC, dst: YB, proto: 6, dport: 8080 });
  // y/b -> the outside, masqueraded to the node's address: judged from y/b.
  const out: Connection = {
    orig: { src: YB, dst: "203.0.113.5", proto: 17, sport: 5000, dport: 53 },
    reply: { src: "203.0.113.5", dst: "192.0.2.12", proto: 17, sport: 53, dport: 61000 },
  };
  assertEquals(connectionFlow(out), { src: YB, dst: "203.0.113.5", proto: 17, dport: 53 });
  // ICMP: no ports.
  const ping: Connection = {
    orig: { src: XC, dst: YB, proto: 1 },
    reply: { src: YB, dst: XC, proto: 1 },
  };
  assertEquals(connectionFlow(ping), { src: XC, dst: YB, proto: 1 });
});

Deno.test("affectedAddresses() names a target that becomes isolated, both families", () => {
  const before = n2(e2eCluster());
  const after = n2(e2eCluster([onlyXaTo80()]));
  assertEquals(affectedAddresses(before, after), [YB, "fd00::2:2"].sort());
  assertEquals(affectedAddresses(undefined, after), [YB, "fd00::2:2"].sort());
  // Nothing changed, or isolation lifted: nothing can have been narrowed.
  assertEquals(affectedAddresses(after, n2(e2eCluster([onlyXaTo80()]))), []);
  assertEquals(affectedAddresses(after, before), []);
});

Deno.test("affectedAddresses() names the peers a label change removed, not the busy target", () => {
  const withPolicy = e2eCluster([onlyXaTo80()]);
  // x/a loses its label: the rule's peers lose x/a's addresses, y/b keeps its other clients.
  const pods = new Map(withPolicy.pods);
  pods.set("x/a", { ...pods.get("x/a")!, labels: { pod: "z" } });
  const relabeled: PolicyState = { ...withPolicy, pods };
  assertEquals(affectedAddresses(n2(withPolicy), n2(relabeled)), ["10.0.1.1", "fd00::1:1"]);
  // The state after the change cuts exactly x/a's connections to y/b.
  const entries = [tcp(XA, YB, 80), tcp(YB, XA, 80)];
  const addresses = affectedAddresses(n2(withPolicy), n2(relabeled));
  assertEquals(connectionsToCut(entries, judge(relabeled), { addresses }), [entries[0]]);
  // A peer added (a new pod labelled a in x) narrows nothing.
  const more = new Map(withPolicy.pods);
  more.set(
    "x/a2",
    pod("x/a2", { labels: { pod: "a" }, node: "n1", ips: ["10.0.1.9"], ports: SERVER_PORTS }),
  );
  assertEquals(affectedAddresses(n2(withPolicy), n2({ ...withPolicy, pods: more })), []);
});

Deno.test("affectedAddresses() names the target when its ports change or a rule goes", () => {
  const p80 = n2(e2eCluster([onlyXaTo80(80)]));
  assertEquals(affectedAddresses(p80, n2(e2eCluster([onlyXaTo80(81)]))), [YB, "fd00::2:2"].sort());
  const denyAll = policy("y/deny-all", { podSelector: {}, policyTypes: ["Ingress"] });
  // A second policy that adds no rule: y/b's allowed set is the same union.
  assertEquals(affectedAddresses(p80, n2(e2eCluster([onlyXaTo80(80), denyAll]))), []);
  // The allowing policy gone, the deny-all left: y/b loses its rule.
  const onlyDeny = n2(e2eCluster([denyAll]));
  assertEquals(
    affectedAddresses(n2(e2eCluster([onlyXaTo80(80), denyAll])), onlyDeny).includes(YB),
    true,
  );
});

Deno.test("affectedAddresses() stands the target for a wide removed range (an ipBlock narrowed)", () => {
  const block = (cidr: string) =>
    policy("y/block", {
      podSelector: { matchLabels: { pod: "b" } },
      ingress: [{ from: [{ ipBlock: { cidr } }] }],
    });
  const wide = n2(e2eCluster([block("10.0.0.0/16")]));
  const narrowed = affectedAddresses(wide, n2(e2eCluster([block("10.0.0.0/24")])));
  assertEquals(narrowed.length > 10 ? `${narrowed.length} addresses` : narrowed, [YB]);
  // A narrowing by a few addresses lists them: /30 -> /31 drops .2 and .3.
  const small = n2(e2eCluster([block("10.0.5.0/30")]));
  assertEquals(affectedAddresses(small, n2(e2eCluster([block("10.0.5.0/31")]))), [
    "10.0.5.2",
    "10.0.5.3",
  ]);
});

Deno.test("affectedAddresses() names a ClusterNetworkPolicy subject whose tiers changed, not one whose did not", () => {
  const nsSel = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
  const denyFromX = (priority: number) =>
    cnp("deny-x", {
      tier: "Admin",
      priority,
      subject: { namespaces: nsSel("y") },
      ingress: [{ action: "Deny", from: [{ namespaces: nsSel("x") }] }],
    });
  const none = n2(e2eCluster());
  const denied = n2(withCluster(e2eCluster(), [denyFromX(10)]));
  // y/b (on n2) is a subject: the Deny is new, not an isolation NetworkPolicy knows.
  assertEquals(affectedAddresses(none, denied), [YB, "fd00::2:2"].sort());
  assertEquals(affectedAddresses(denied, n2(withCluster(e2eCluster(), [denyFromX(10)]))), []);
  // Any change of its rules (here the priority) may deny something: the subject again.
  assertEquals(
    affectedAddresses(denied, n2(withCluster(e2eCluster(), [denyFromX(11)]))),
    [
      YB,
      "fd00::2:2",
    ].sort(),
  );
  // And the cut judges by explain: x/a's connection to y/b goes, z/c's stays.
  const after = withCluster(e2eCluster(), [denyFromX(10)]);
  const entries = [tcp(XA, YB, 80), tcp(ZC, YB, 80)];
  assertEquals(
    connectionsToCut(entries, judge(after), { addresses: affectedAddresses(none, denied) }),
    [entries[0]],
  );
});

Deno.test("cutElement() holds a cut UDP connection's answers as the forward hook sees them", () => {
  const dnat: Connection = {
    orig: { src: XA, dst: "10.96.0.10", proto: 17, sport: 40000, dport: 53 },
    reply: { src: YB, dst: XA, proto: 17, sport: 5353, dport: 40000 },
  };
  assertEquals(cutElement(dnat), {
    set: "strict_cut4",
    element: `${YB} . ${XA} . udp . 5353 . 40000`,
  });
  const v6: Connection = {
    orig: { src: "fd00::1:1", dst: "fd00::2:2", proto: 17, sport: 1, dport: 2 },
    reply: { src: "fd00::2:2", dst: "fd00::1:1", proto: 17, sport: 2, dport: 1 },
  };
  assertEquals(cutElement(v6)?.set, "strict_cut6");
  // TCP is held by the SYN rule, not a set.
  assertEquals(cutElement(tcp(XA, YB, 80)), undefined);
  assertEquals(strictForwardRules()[0], NOT_SYN_RULE);
  assertEquals(
    strictForwardRules()[1],
    "ct state new ip saddr . ip daddr . meta l4proto . th sport . th dport @strict_cut4 " +
      "update @strict_cut4 { ip saddr . ip daddr . meta l4proto . th sport . th dport } drop",
  );
});
