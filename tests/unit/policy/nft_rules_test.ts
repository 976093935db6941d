// The compiled plan as nftables objects: maps from pod address to the chain of its rules, the
// rules, the peer sets. Pure; the kernel side is tests/integration/netpol_test.ts.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseCidr } from "../../../lib/ip/cidr.ts";
import { cidrRange } from "../../../lib/ip/range.ts";
import { flowLogRules } from "../../../lib/policy/flow_log_rules.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import type { AddressSet, AllowRule, PolicyPlan, TargetPlan } from "../../../lib/policy/plan.ts";

const range = (cidr: string) => cidrRange(parseCidr(cidr));
const peers = (...cidrs: string[]): AddressSet => ({
  v4: cidrs.filter((c) => !c.includes(":")).map(range),
  v6: cidrs.filter((c) => c.includes(":")).map(range),
});
const target = (pod: string, ips: string[], t: Partial<TargetPlan>): TargetPlan => ({
  pod,
  node: "n1",
  ips,
  ...t,
});
const els = (objs: ReturnType<typeof policyObjects>, set: string) => [
  ...(objs.sets.get(set)?.elements.values() ?? []),
];

Deno.test("policyObjects() maps each isolated pod to one chain per direction, targets with the same rules sharing it", () => {
  const rule: AllowRule = {
    policy: "x/web",
    rule: 0,
    peers: peers("10.244.2.0/30", "10.244.3.0/24", "10.0.0.0/16", "fd00:10:244:2::/64"),
    ports: [{ kind: "range", protocol: "TCP", port: 80, endPort: 80 }],
  };
  const ingress = { policies: ["x/web"], allow: [rule] };
  const plan: PolicyPlan = {
    targets: [
      target("x/a", ["10.244.1.2", "fd00:10:244:1::2"], { ingress }),
      target("x/b", ["10.244.1.3"], { ingress }),
    ],
    errors: [],
  };
  const objs = policyObjects(plan);
  assertEquals(objs.chains.size, 1);
  const [[name, chain]] = [...objs.chains];
  assert(/^ing_[0-9a-f]{16}$/.test(name), name);
  assertEquals(chain.rules.length, 4);
  assertEquals(chain.rules[3], "counter name ingress_dropped drop");
  const [addrSet, rangeSet, v6Set] = chain.rules.slice(0, 3).map((r) => r.match(/@(\S+)/)![1]);
  assertEquals(chain.rules[0], `ip saddr @${addrSet} meta l4proto tcp th dport 80 accept`);
  assertEquals(chain.rules[1], `ip saddr @${rangeSet} meta l4proto tcp th dport 80 accept`);
  assertEquals(chain.rules[2], `ip6 saddr @${v6Set} meta l4proto tcp th dport 80 accept`);
  // Up to 256 addresses are listed one by one in a plain set (nft never reads those back before
  // a change); wider ranges go in an interval set.
  const addrs = els(objs, addrSet);
  assertEquals(addrs.length, 4 + 256);
  assertEquals(addrs.slice(0, 5), [
    "10.244.2.0",
    "10.244.2.1",
    "10.244.2.2",
    "10.244.2.3",
    "10.244.3.0",
  ]);
  assertEquals(objs.sets.get(addrSet)?.interval, false);
  assertEquals(els(objs, rangeSet), ["10.0.0.0/16"]);
  assertEquals(objs.sets.get(rangeSet)?.interval, true);
  assertEquals(els(objs, v6Set), ["fd00:10:244:2::/64"]);
  assertEquals(els(objs, "ingress4"), [
    `10.244.1.2 : jump ${name}`,
    `10.244.1.3 : jump ${name}`,
  ]);
  assertEquals(els(objs, "ingress6"), [`fd00:10:244:1::2 : jump ${name}`]);
  assertEquals(els(objs, "egress4"), []);
  assertEquals(els(objs, "self4"), ["10.244.1.2 . 10.244.1.2", "10.244.1.3 . 10.244.1.3"]);
  assertEquals(objs.ruleCount, 4);
});

Deno.test("policyObjects() lets allowed egress return to the forward chain and meet ingress next", () => {
  const objs = policyObjects({
    targets: [target("x/a", ["10.244.1.2"], {
      egress: {
        policies: ["x/out"],
        allow: [{ policy: "x/out", rule: 0, peers: "any", ports: "any" }],
      },
    })],
    errors: [],
  });
  const [chain] = [...objs.chains.values()];
  assertEquals(chain.rules, ["return", "counter name egress_dropped drop"]);
  assertEquals(objs.forwardRules, [
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
    "ip saddr . ip daddr @self4 accept",
    "ip6 saddr . ip6 daddr @self6 accept",
    "ip saddr vmap @egress4",
    "ip6 saddr vmap @egress6",
    "ip daddr vmap @ingress4",
    "ip6 daddr vmap @ingress6",
  ]);
});

Deno.test("policyObjects() renders every kind of port, and skips what can match nothing", () => {
  const objs = policyObjects({
    targets: [target("x/a", ["10.244.1.2"], {
      egress: {
        policies: ["x/p"],
        allow: [
          {
            policy: "x/p",
            rule: 0,
            peers: "any",
            ports: [
              { kind: "range", protocol: "UDP", port: 53, endPort: 53 },
              { kind: "range", protocol: "TCP", port: 32000, endPort: 32768 },
              { kind: "range", protocol: "SCTP", port: 1, endPort: 65535 },
              {
                kind: "named",
                protocol: "TCP",
                name: "http",
                endpoints: [{ ip: "10.244.2.5", port: 8080 }, { ip: "fd00::5", port: 8080 }],
              },
              { kind: "named", protocol: "TCP", name: "none", endpoints: [] },
            ],
          },
          { policy: "x/p", rule: 1, peers: "any", ports: [] },
          { policy: "x/p", rule: 2, peers: peers("fd00::/64"), ports: "any" },
        ],
      },
    })],
    errors: [],
  });
  const [chain] = [...objs.chains.values()];
  const named4 = [...objs.sets.keys()].find((k) => k.startsWith("en_") && k.endsWith("_4"))!;
  const named6 = [...objs.sets.keys()].find((k) => k.startsWith("en_") && k.endsWith("_6"))!;
  const peer6 = [...objs.sets.keys()].find((k) => k.startsWith("er_") && k.endsWith("_6"))!;
  assertEquals(chain.rules, [
    "meta l4proto udp th dport 53 return",
    "meta l4proto tcp th dport 32000-32768 return",
    "meta l4proto sctp return",
    `ip daddr @${named4} meta l4proto tcp th dport 8080 return`,
    `ip6 daddr @${named6} meta l4proto tcp th dport 8080 return`,
    `ip6 daddr @${peer6} return`,
    "counter name egress_dropped drop",
  ]);
  assertEquals(els(objs, named4), ["10.244.2.5"]);
  assertEquals(objs.sets.get(named4)?.type, "ipv4_addr");
});

Deno.test("policyObjects() names peer sets after their policy rule, so a pod change touches only elements", () => {
  const plan = (extra: string[]): PolicyPlan => ({
    targets: [target("x/a", ["10.244.1.2"], {
      ingress: {
        policies: ["x/from-y"],
        allow: [{
          policy: "x/from-y",
          rule: 0,
          peers: peers("10.244.2.3/32", ...extra),
          ports: "any",
        }],
      },
    })],
    errors: [],
  });
  const a = policyObjects(plan([])), b = policyObjects(plan(["10.244.3.7/32"]));
  assertEquals([...a.chains.keys()], [...b.chains.keys()]);
  assertEquals([...a.sets.keys()], [...b.sets.keys()]);
});

Deno.test("policyObjects() isolates a pod with no allow rule: only the drop", () => {
  const objs = policyObjects({
    targets: [target("x/a", ["10.244.1.2"], { ingress: { policies: ["x/deny"], allow: [] } })],
    errors: [],
  });
  assertEquals([...objs.chains.values()][0].rules, ["counter name ingress_dropped drop"]);
});

Deno.test("policyObjects() gives a named port that resolves differently one set per port number", () => {
  const objs = policyObjects({
    targets: [target("x/a", ["10.244.1.2"], {
      egress: {
        policies: ["x/p"],
        allow: [{
          policy: "x/p",
          rule: 0,
          peers: "any",
          ports: [{
            kind: "named",
            protocol: "UDP",
            name: "dns",
            endpoints: [{ ip: "10.244.2.5", port: 53 }, { ip: "10.244.3.5", port: 5353 }],
          }],
        }],
      },
    })],
    errors: [],
  });
  const rules = [...objs.chains.values()][0].rules;
  assertEquals(rules.length, 3);
  const [r53, r5353] = rules;
  assert(r53.endsWith("meta l4proto udp th dport 53 return"), r53);
  assert(r5353.endsWith("meta l4proto udp th dport 5353 return"), r5353);
  assertEquals(els(objs, r53.match(/@(\S+)/)![1]), ["10.244.2.5"]);
  assertEquals(els(objs, r5353.match(/@(\S+)/)![1]), ["10.244.3.5"]);
});

Deno.test("policyObjects() shares one set between policy rules whose peers are the same", () => {
  const shared = peers("10.244.2.0/24");
  const rule = (policy: string): AllowRule => ({ policy, rule: 0, peers: shared, ports: "any" });
  const other = { ...rule("x/b"), peers: peers("10.244.2.0/24") }; // equal content, other object
  const objs = policyObjects({
    targets: [
      target("x/a", ["10.244.1.2"], { ingress: { policies: ["x/a"], allow: [rule("x/a")] } }),
      target("x/b", ["10.244.1.3"], { ingress: { policies: ["x/b"], allow: [other] } }),
    ],
    errors: [],
  });
  const peerSets = [...objs.sets.keys()].filter((k) => k.startsWith("i_"));
  assertEquals(peerSets.length, 1);
  assertEquals(objs.chains.size, 1, "same rules, same chain");
});

Deno.test("policyObjects() with the flow log logs before each drop, naming the isolating policies", () => {
  const plan: PolicyPlan = {
    targets: [
      target("x/a", ["10.244.1.2"], { ingress: { policies: ["x/deny", "x/web"], allow: [] } }),
      target("x/b", ["10.244.1.3"], { egress: { policies: ["x/out"], allow: [] } }),
    ],
    errors: [],
  };
  const plain = policyObjects(plan);
  const logged = policyObjects(plan, { flowLog: true });
  const chainOf = (objs: ReturnType<typeof policyObjects>, map: string) =>
    objs.chains.get(els(objs, map)[0].split(" jump ")[1])!.rules;
  assertEquals(chainOf(logged, "ingress4"), [
    ...flowLogRules({ direction: "ingress", policies: ["x/deny", "x/web"] }),
    "counter name ingress_dropped drop",
  ]);
  assertEquals(chainOf(logged, "egress4"), [
    ...flowLogRules({ direction: "egress", policies: ["x/out"] }),
    "counter name egress_dropped drop",
  ]);
  // Off, the objects are exactly today's; the forward rules and sets do not change either way.
  assertEquals(chainOf(plain, "ingress4"), ["counter name ingress_dropped drop"]);
  assertEquals(logged.forwardRules, plain.forwardRules);
  assertEquals([...logged.sets.keys()], [...plain.sets.keys()]);
});
