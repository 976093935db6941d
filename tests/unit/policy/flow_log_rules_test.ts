// The flow log's nft side: the prefix round trip and its size, the rules before a drop, the
// objects they need, and the index the agent attributes by.
import {
  cnpPolicyRef,
  FLOW_LOG_GROUP,
  flowDeciderId,
  flowLogIndex,
  flowLogObjects,
  flowLogPrefix,
  flowLogRules,
  networkPolicyDeciders,
  parseFlowLogPrefix,
  PREFIX_MAX,
} from "../../../lib/policy/flow_log_rules.ts";
import type { PolicyPlan } from "../../../lib/policy/plan.ts";
import { emptyTable, renderFullTable, renderTableChange } from "../../../lib/nft/ruleset.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const DENY = { direction: "ingress", policies: ["x/deny-all", "x/allow-web"] } as const;

Deno.test("flowLogPrefix() round-trips the direction and the decider's digest", () => {
  const p = flowLogPrefix(DENY);
  assertEquals(p, `mycni:i:${flowDeciderId(DENY)}:x/deny-all,x/allow-web`);
  assertEquals(parseFlowLogPrefix(p), { direction: "ingress", id: flowDeciderId(DENY) });
  const egress = { direction: "egress" as const, policies: [cnpPolicyRef("deny-db", 3)] };
  assertEquals(parseFlowLogPrefix(flowLogPrefix(egress)), {
    direction: "egress",
    id: flowDeciderId(egress),
  });
  // The same policies in the other direction are another decider.
  assert(flowDeciderId(DENY) !== flowDeciderId({ ...DENY, direction: "egress" }));
  // No hint at all: the head alone.
  assertEquals(
    parseFlowLogPrefix(flowLogPrefix({ direction: "egress", policies: [] }))?.id.length,
    16,
  );
});

Deno.test("flowLogPrefix() stays within 127 bytes however many policies, and still parses", () => {
  const many = {
    direction: "egress" as const,
    policies: Array.from({ length: 40 }, (_, i) => `namespace-${i}/policy-with-a-long-name-${i}`),
  };
  const p = flowLogPrefix(many);
  assertEquals(p.length, PREFIX_MAX);
  assertEquals(new TextEncoder().encode(p).length <= PREFIX_MAX, true);
  assertEquals(parseFlowLogPrefix(p)?.id, flowDeciderId(many));
  // Characters nft's string syntax would choke on never reach the rule.
  assertEquals(
    flowLogPrefix({ direction: "ingress", policies: ['x/a"b\\c d'] }).split(":").at(-1),
    "x/a_b_c_d",
  );
});

Deno.test("parseFlowLogPrefix() refuses what is not ours", () => {
  for (
    const p of [
      "",
      "mycni",
      "mycni:x:0123456789abcdef",
      "mycni:i:0123456789abcde",
      "mycni:i:0123456789ABCDEF",
      "mycni:i:0123456789abcdef0",
      "other:i:0123456789abcdef",
    ]
  ) {
    assertEquals(parseFlowLogPrefix(p), undefined, p);
  }
  assertEquals(parseFlowLogPrefix("mycni:e:0123456789abcdef")?.direction, "egress");
});

Deno.test("flowLogRules() logs once per flow under the shared limit, else counts, per family", () => {
  const rules = flowLogRules(DENY);
  const prefix = flowLogPrefix(DENY);
  const key4 = "ip saddr . ip daddr . meta l4proto . th sport . th dport";
  const key6 = "ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport";
  assertEquals(rules, [
    `${key4} != @flowlog_seen4 limit name "flowlog" add @flowlog_seen4 { ${key4} } log prefix "${prefix}" group ${FLOW_LOG_GROUP}`,
    `${key4} != @flowlog_seen4 counter name "flowlog_dropped"`,
    `${key6} != @flowlog_seen6 limit name "flowlog" add @flowlog_seen6 { ${key6} } log prefix "${prefix}" group ${FLOW_LOG_GROUP}`,
    `${key6} != @flowlog_seen6 counter name "flowlog_dropped"`,
  ]);
  assertEquals(flowLogRules(DENY, { group: 7 })[0].endsWith(" group 7"), true);
});

Deno.test("flowLogObjects() declares the limit at the rate, the counter and the seen sets", () => {
  const o = flowLogObjects(250);
  assertEquals([...o.limits], [["flowlog", "rate 250/second burst 250 packets"]]);
  assertEquals(o.counters, ["flowlog_dropped"]);
  assertEquals([...o.sets.keys()], ["flowlog_seen4", "flowlog_seen6"]);
  assertEquals(o.sets.get("flowlog_seen6"), {
    kind: "set",
    type: "ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service",
    interval: false,
    elements: new Map(),
    dynamic: { timeout: 130, size: 65536 },
  });
  const table = {
    name: "inet mycni",
    counters: o.counters,
    limits: o.limits,
    sets: o.sets,
    chains: new Map(),
  };
  // What the table model makes of them: declared whole, or added before any rule.
  const decl = "type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service; " +
    "flags dynamic,timeout; timeout 130s; size 65536;";
  assert(renderFullTable(table).includes("  limit flowlog { rate 250/second burst 250 packets }"));
  assertEquals(renderTableChange(emptyTable("inet mycni"), table).split("\n").slice(0, 3), [
    "add counter inet mycni flowlog_dropped",
    "add limit inet mycni flowlog { rate 250/second burst 250 packets }",
    `add set inet mycni flowlog_seen4 { ${decl} }`,
  ]);
  let threw = false;
  try {
    flowLogObjects(0);
  } catch {
    threw = true;
  }
  assert(threw, "a rate of 0 is refused");
});

Deno.test("networkPolicyDeciders() + flowLogIndex() map a plan's digests back to its policies", () => {
  const plan: PolicyPlan = {
    errors: [],
    targets: [
      {
        pod: "x/a",
        node: "n1",
        ips: ["10.244.1.2"],
        ingress: { policies: ["x/deny-all"], allow: [] },
        egress: { policies: ["x/egress"], allow: [] },
      },
      {
        pod: "x/b",
        node: "n1",
        ips: ["10.244.1.3"],
        ingress: { policies: ["x/deny-all"], allow: [] },
      },
    ],
  };
  const index = flowLogIndex(networkPolicyDeciders(plan));
  assertEquals(index.size, 2); // x/a and x/b share their ingress decider
  const id =
    parseFlowLogPrefix(flowLogPrefix({ direction: "ingress", policies: ["x/deny-all"] }))!.id;
  assertEquals(index.get(id), { direction: "ingress", policies: ["x/deny-all"] });
  assertEquals(
    index.get(flowDeciderId({ direction: "ingress", policies: ["x/egress"] })),
    undefined,
  );
});
