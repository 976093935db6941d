import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseChainState } from "../../../lib/net/iptables.ts";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import {
  clusterCidrs,
  forwardChain,
  LEGACY_CHAINS,
  masqueradeObjects,
  OWNED_CHAINS,
} from "../../../lib/node/masq.ts";

const elements = (set: { elements: ReadonlyMap<string, string> } | undefined) => [
  ...(set?.elements.values() ?? []),
];

Deno.test("masqueradeObjects() never NATs traffic to pods and masquerades the rest fully-random", () => {
  const m = masqueradeObjects({
    clusterCidrs: ["10.244.0.0/16", "fd00:10:244::/56"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  });
  assertEquals(m.chain.decl, "type nat hook postrouting priority srcnat; policy accept;");
  assertEquals(m.chain.rules, [
    "meta mark & 0x4000 == 0x4000 return",
    "ip saddr @podnets4 ip daddr != @nomasq4 ip daddr != 224.0.0.0/4 masquerade fully-random",
    "ip6 saddr @podnets6 ip6 daddr != @nomasq6 ip6 daddr != ff00::/8 masquerade fully-random",
  ]);
  assertEquals(elements(m.sets.get("podnets4")), ["10.244.1.0/24"]);
  assertEquals(elements(m.sets.get("nomasq4")), ["10.244.0.0/16"]);
  assertEquals(elements(m.sets.get("nomasq6")), ["fd00:10:244::/56"]);
  assertEquals(m.sets.get("nomasq4")?.interval, true);
});

Deno.test("masqueradeObjects() keeps the rule count independent of the number of nodes", () => {
  const nodes = Array.from({ length: 500 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const m = masqueradeObjects({ clusterCidrs: nodes, podCIDRs: ["10.0.1.0/24"] });
  assertEquals(m.chain.rules.length, 2);
  // 500 sibling /24s from 10.0.0.0 aggregate into a handful of networks.
  assertEquals(elements(m.sets.get("nomasq4")), [
    "10.0.0.0/16",
    "10.1.0.0/17",
    "10.1.128.0/18",
    "10.1.192.0/19",
    "10.1.224.0/20",
    "10.1.240.0/22",
  ]);
});

Deno.test("masqueradeObjects() exempts this node's podCIDR when --cluster-cidr misses it, and the --no-masquerade-cidr list", () => {
  const m = masqueradeObjects({
    clusterCidrs: ["10.96.0.0/16"],
    podCIDRs: ["10.244.1.0/24"],
    noMasqueradeCidrs: ["172.16.0.0/12", "172.20.0.0/16", "fd00:99::/64"],
  });
  assertEquals(elements(m.sets.get("nomasq4")), ["10.96.0.0/16", "10.244.1.0/24", "172.16.0.0/12"]);
  // No IPv6 podCIDR on this node: nothing of ours to masquerade in IPv6, so no IPv6 sets.
  assertEquals(m.sets.has("nomasq6"), false);
  assertEquals(m.chain.rules.length, 2);
});

Deno.test("forwardChain() accepts forwarded traffic from and to every pod", () => {
  const c = forwardChain(4, {
    clusterCidrs: ["10.244.0.0/16"],
    podCIDRs: ["10.244.1.0/24"],
    noMasqueradeCidrs: ["192.168.0.0/16"],
  });
  assertEquals(c.rules, [
    "-A MYCNI-FWD -s 10.244.0.0/16 -j ACCEPT",
    "-A MYCNI-FWD -d 10.244.0.0/16 -j ACCEPT",
  ]);
  assertEquals(c.table, "filter");
  assertEquals(LEGACY_CHAINS.map((l) => l.chain), ["MYCNI-POSTRTG"]);
});

Deno.test("parseChainState() counts our jumps and reads our rules from iptables-save", () => {
  const save = [
    "*filter",
    ":FORWARD ACCEPT [0:0]",
    '-A FORWARD -m comment --comment "mycni forward" -j MYCNI-FWD',
    "COMMIT",
    "*nat",
    ":POSTROUTING ACCEPT [0:0]",
    ":MYCNI-POSTRTG - [0:0]",
    '-A POSTROUTING -m comment --comment "mycni masquerade" -j MYCNI-POSTRTG',
    '-A POSTROUTING -m comment --comment "mycni masquerade" -j MYCNI-POSTRTG',
    "-A POSTROUTING -j KUBE-POSTROUTING",
    "-A MYCNI-POSTRTG -d 10.244.0.0/16 -j RETURN",
    "COMMIT",
  ].join("\n");
  assertEquals(parseChainState(save, LEGACY_CHAINS[0]), {
    exists: true,
    jumps: 2,
    rules: ["-A MYCNI-POSTRTG -d 10.244.0.0/16 -j RETURN"],
  });
  assertEquals(parseChainState(save, OWNED_CHAINS[0]), { exists: false, jumps: 1, rules: [] });
});

// Only the podCIDRs count here: n1-n3, dual-stack.
const nodes: NodeInfo[] = [1, 2, 3].map((i) => ({
  name: `n${i}`,
  ips: [],
  podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
}));

Deno.test("clusterCidrs() aggregates every node's podCIDRs when none are given", () => {
  const many = Array.from({ length: 256 }, (_, i) => ({
    name: `n${i}`,
    ips: [],
    podCIDRs: [`10.244.${i}.0/24`],
  }));
  assertEquals(clusterCidrs([], many), ["10.244.0.0/16"]);
  assertEquals(clusterCidrs([], nodes), [
    "10.244.1.0/24",
    "10.244.2.0/23",
    "fd00:10:244:1::/64",
    "fd00:10:244:2::/63",
  ]);
});

Deno.test("clusterCidrs() uses --cluster-cidr when given, whatever the nodes say", () => {
  assertEquals(clusterCidrs(["10.244.0.0/16", "fd00:10:244::/56"], nodes), [
    "10.244.0.0/16",
    "fd00:10:244::/56",
  ]);
});
