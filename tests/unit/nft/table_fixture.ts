// A table with every kind of object the agent's has, and (table_fixture.json) what nft 1.0.6
// lists after loading it as createTableSync() renders it: `nft -j list table inet mycni`.
import type { NftSet, NftTable } from "../../../lib/nft/ruleset.ts";

const set = (
  type: string,
  interval: boolean,
  els: string[],
  kind: "set" | "map" = "set",
): NftSet => ({
  kind,
  type,
  interval,
  elements: new Map(els.map((e) => [kind === "map" ? e.split(" : ")[0] : e, e])),
});

/** The table. */
export const TABLE: NftTable = {
  name: "inet mycni",
  counters: ["ingress_dropped", "egress_dropped"],
  sets: new Map([
    ["podnets4", set("ipv4_addr", true, ["10.244.1.0/24"])],
    ["nomasq4", set("ipv4_addr", true, ["10.96.0.0/12", "10.244.0.0/16"])],
    [
      "ir_a_4",
      set("ipv4_addr", true, [
        "10.0.0.0-10.0.3.255",
        "10.1.0.0-10.1.0.9",
        "10.1.0.10-10.1.0.20",
        "10.9.9.9",
        "192.168.0.0/16",
      ]),
    ],
    ["nomasq6", set("ipv6_addr", true, ["fd00:10:244::/48", "fd01::1-fd01::5"])],
    ["i_a_4", set("ipv4_addr", false, ["10.244.2.5", "10.244.2.6"])],
    ["i_a_6", set("ipv6_addr", false, ["fd00:10:244:2::5"])],
    [
      "self4",
      set("ipv4_addr . ipv4_addr", false, ["10.244.1.2 . 10.244.1.2", "10.244.1.3 . 10.244.1.3"]),
    ],
    ["self6", set("ipv6_addr . ipv6_addr", false, [])],
    [
      "ingress4",
      set(
        "ipv4_addr : verdict",
        false,
        ["10.244.1.2 : jump ing_a", "10.244.1.3 : jump ing_a"],
        "map",
      ),
    ],
    ["ingress6", set("ipv6_addr : verdict", false, ["fd00:10:244:1::2 : jump ing_a"], "map")],
  ]),
  chains: new Map([
    ["ing_a", {
      rules: [
        "ip saddr @i_a_4 meta l4proto tcp th dport 80 accept",
        "ip saddr @ir_a_4 meta l4proto tcp th dport 80-90 accept",
        "ip6 saddr @i_a_6 meta l4proto udp accept",
        "counter name ingress_dropped drop",
      ],
    }],
    ["forward", {
      decl: "type filter hook forward priority filter; policy accept;",
      rules: [
        "ct state established,related accept",
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
        "ip saddr . ip daddr @self4 accept",
        "ip daddr vmap @ingress4",
        "ip6 daddr vmap @ingress6",
      ],
    }],
    ["postrouting", {
      decl: "type nat hook postrouting priority srcnat; policy accept;",
      rules: [
        "meta mark & 0x4000 == 0x4000 return",
        "ip saddr @podnets4 ip daddr != @nomasq4 ip daddr != 224.0.0.0/4 masquerade fully-random",
      ],
    }],
  ]),
};
