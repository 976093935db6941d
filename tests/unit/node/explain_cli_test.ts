// `mycni-init explain`: the answer for people, and the exit code, against a stand-in agent.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { formatExplanation, runExplain } from "../../../lib/node/explain_cli.ts";
import type { Explanation } from "../../../lib/policy/plan.ts";

const args = {
  from: "x/a",
  to: "y/b",
  port: 80,
  protocol: "TCP" as const,
  healthAddr: { hostname: "127.0.0.1", port: 0 },
};
const denied: Explanation = {
  allowed: false,
  src: "10.244.1.2",
  dst: "10.244.2.3",
  egress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for egress" },
  ingress: {
    allowed: false,
    policies: ["y/deny"],
    allowedBy: [],
    reason: "isolated by y/deny and no rule allows TCP 80 from 10.244.1.2",
  },
};

Deno.test("formatExplanation() says the verdict, the addresses and each direction's reason", () => {
  assertEquals(
    formatExplanation(args, denied),
    "DENIED  x/a (10.244.1.2) -> y/b (10.244.2.3) TCP 80\n" +
      "  egress:  allowed: not isolated for egress\n" +
      "  ingress: denied: isolated by y/deny and no rule allows TCP 80 from 10.244.1.2",
  );
  assertEquals(
    formatExplanation({ ...args, to: "203.0.113.1" }, { ...denied, dst: "203.0.113.1" }).split(
      "\n",
    )[0],
    "DENIED  x/a (10.244.1.2) -> 203.0.113.1 TCP 80",
  );
});

Deno.test("formatExplanation() names stage, policy, priority, rule and action with ClusterNetworkPolicies", () => {
  const admin = {
    tier: "Admin" as const,
    policy: "payments-lockdown",
    priority: 10,
    rule: 0,
    name: "deny-others",
    action: "Deny" as const,
  };
  const passed = {
    ...admin,
    policy: "dns",
    priority: 5,
    rule: 2,
    name: "",
    action: "Pass" as const,
  };
  const e: Explanation = {
    ...denied,
    egress: { ...denied.egress, stage: "default" },
    ingress: {
      allowed: false,
      policies: [],
      allowedBy: [],
      reason: "passed by ...; denied by ClusterNetworkPolicy payments-lockdown (Admin, ...)",
      stage: "Admin",
      decidedBy: admin,
      passedBy: [passed],
    },
  };
  assertEquals(formatExplanation(args, e).split("\n").slice(1), [
    "  egress:  allowed: not isolated for egress",
    "           stage default",
    "  ingress: denied: passed by ...; denied by ClusterNetworkPolicy payments-lockdown (Admin, ...)",
    "           passed at Admin: policy dns, priority 5, ingress rule 2, action Pass",
    '           stage Admin: policy payments-lockdown, priority 10, ingress rule 0 "deny-others", ' +
    "action Deny",
  ]);
  const failClosed = {
    ...e,
    ingress: {
      ...e.ingress,
      passedBy: undefined,
      decidedBy: { ...admin, tier: "Baseline" as const, rule: -1, name: "" },
      stage: "Baseline" as const,
    },
  };
  assertEquals(
    formatExplanation(args, failClosed).split("\n").at(-1),
    "           stage Baseline: policy payments-lockdown, priority 10, the whole policy (it " +
      "cannot be enforced exactly), action Deny",
  );
});

Deno.test("runExplain() asks /explain and exits 1 denied, 0 allowed, 2 without an answer", async () => {
  const asked: string[] = [];
  let answer: Explanation = denied;
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    asked.push(new URL(req.url).search);
    return Response.json(answer);
  });
  const at = { ...args, healthAddr: { hostname: "127.0.0.1", port: server.addr.port } };
  const lines: string[] = [];
  assertEquals(await runExplain(at, (l) => lines.push(l)), 1);
  assertEquals(asked, ["?from=x%2Fa&to=y%2Fb&port=80&protocol=TCP"]);
  answer = { ...denied, allowed: true };
  assertEquals(await runExplain(at, (l) => lines.push(l)), 0);
  await server.shutdown();
  assertEquals(await runExplain(at, (l) => lines.push(l)), 2);
  assertEquals(lines.at(-1)?.startsWith("mycni-init explain: cannot reach the agent"), true);
});
