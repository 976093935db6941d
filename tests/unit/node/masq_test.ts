import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseChainState } from "../../../lib/net/iptables.ts";
import { desiredChains, MASQ_CHAIN, OWNED_CHAINS } from "../../../lib/node/masq.ts";

Deno.test("desiredChains() never NATs traffic to pods and masquerades the rest with --random-fully", () => {
  const [nat, filter] = desiredChains(4, {
    clusterCidrs: ["10.244.0.0/16", "fd00:10:244::/56"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  });
  assertEquals(nat.rules, [
    `-A ${MASQ_CHAIN} -m mark --mark 0x4000/0x4000 -j RETURN`,
    `-A ${MASQ_CHAIN} -d 10.244.0.0/16 -j RETURN`,
    `-A ${MASQ_CHAIN} -s 10.244.1.0/24 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully`,
  ]);
  assertEquals(filter.rules, [
    "-A MYCNI-FWD -s 10.244.0.0/16 -j ACCEPT",
    "-A MYCNI-FWD -d 10.244.0.0/16 -j ACCEPT",
  ]);
});

Deno.test("desiredChains() keeps the rule count independent of the number of nodes", () => {
  const [nat] = desiredChains(6, {
    clusterCidrs: ["fd00:10:244::/56"],
    podCIDRs: ["fd00:10:244:1::/64"],
  });
  assertEquals(nat.rules.length, 3);
  assertEquals(
    nat.rules[2],
    `-A ${MASQ_CHAIN} -s fd00:10:244:1::/64 ! -d ff00::/8 -j MASQUERADE --random-fully`,
  );
});

Deno.test("desiredChains() exempts this node's podCIDR even when --cluster-cidr misses it", () => {
  const [nat] = desiredChains(4, { clusterCidrs: ["10.96.0.0/16"], podCIDRs: ["10.244.1.0/24"] });
  assertEquals(nat.rules.filter((r) => r.includes("RETURN")).length, 3);
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
  assertEquals(parseChainState(save, OWNED_CHAINS[0]), {
    exists: true,
    jumps: 2,
    rules: ["-A MYCNI-POSTRTG -d 10.244.0.0/16 -j RETURN"],
  });
  assertEquals(parseChainState(save, OWNED_CHAINS[1]), { exists: false, jumps: 1, rules: [] });
});
