// allowRuleMatches / addressSetContains (lib/policy/match.ts): one packet against one rule.
import { parseIp } from "../../../lib/ip/cidr.ts";
import { addressSetContains, allowRuleMatches } from "../../../lib/policy/match.ts";
import type { AddressSet, AllowRule } from "../../../lib/policy/plan.ts";
import { assertEquals } from "../../harness/assert.ts";

const v4 = (t: string) => parseIp(t).value;
const set: AddressSet = {
  v4: [{ start: v4("10.0.0.0"), end: v4("10.0.0.255") }],
  v6: [{ start: parseIp("fd00::").value, end: parseIp("fd00::ff").value }],
};

Deno.test("addressSetContains() looks in the address's own family only", () => {
  assertEquals(addressSetContains(set, parseIp("10.0.0.7")), true);
  assertEquals(addressSetContains(set, parseIp("10.0.1.7")), false);
  assertEquals(addressSetContains(set, parseIp("fd00::7")), true);
  // ::a00:7 has the value of 10.0.0.7, but it is IPv6.
  assertEquals(addressSetContains(set, parseIp("::a00:7")), false);
});

Deno.test("allowRuleMatches() needs the peer in the set and a port entry of the protocol", () => {
  const rule: AllowRule = {
    policy: "x/p",
    rule: 0,
    peers: set,
    ports: [
      { kind: "range", protocol: "TCP", port: 80, endPort: 81 },
      { kind: "range", protocol: "UDP", port: 1, endPort: 65535 },
    ],
  };
  const probe = (peer: string, protocol: "TCP" | "UDP" | "SCTP", port: number) =>
    allowRuleMatches(rule, { peer: parseIp(peer), protocol, port });
  assertEquals(probe("10.0.0.1", "TCP", 80), true);
  assertEquals(probe("10.0.0.1", "TCP", 81), true);
  assertEquals(probe("10.0.0.1", "TCP", 82), false);
  assertEquals(probe("10.0.0.1", "UDP", 5353), true);
  assertEquals(probe("10.0.0.1", "SCTP", 80), false);
  assertEquals(probe("10.9.0.1", "TCP", 80), false);
  assertEquals(probe("fd00::1", "TCP", 80), true);
});

Deno.test("allowRuleMatches() takes any peer and any port when the rule says so", () => {
  const rule: AllowRule = { policy: "x/p", rule: 0, peers: "any", ports: "any" };
  assertEquals(
    allowRuleMatches(rule, { peer: parseIp("203.0.113.9"), protocol: "SCTP", port: 9 }),
    true,
  );
  assertEquals(
    allowRuleMatches({ ...rule, ports: [] }, {
      peer: parseIp("203.0.113.9"),
      protocol: "TCP",
      port: 9,
    }),
    false,
  );
});

Deno.test("allowRuleMatches() matches a named port on the destination's address and port", () => {
  const rule: AllowRule = {
    policy: "x/p",
    rule: 0,
    peers: "any",
    ports: [{
      kind: "named",
      protocol: "TCP",
      name: "http",
      endpoints: [{ ip: "10.0.2.9", port: 8080 }, { ip: "fd00::2:9", port: 8080 }],
    }],
  };
  const probe = (peer: string, port: number) =>
    allowRuleMatches(rule, { peer: parseIp(peer), protocol: "TCP", port });
  assertEquals(probe("10.0.2.9", 8080), true);
  assertEquals(probe("fd00:0:0:0:0:0:2:9", 8080), true); // compared in canonical form
  assertEquals(probe("10.0.2.9", 80), false); // another port of that pod
  assertEquals(probe("10.0.2.10", 8080), false); // that port on another pod
  assertEquals(
    allowRuleMatches(rule, { peer: parseIp("10.0.2.9"), protocol: "UDP", port: 8080 }),
    false,
  );
});
