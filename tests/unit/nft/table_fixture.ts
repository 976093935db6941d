// A table with every kind of object the agent's has, and (table_fixture.json) what nft 1.0.6
// lists after loading it as createTableSync() renders it: `nft -j list table inet mycni`, after
// a packet was logged (the seen set holds the kernel's element) and a UDP connection was cut
// (the agent's element in the cut set). Regenerate: tools/bin/deno run -A
// tests/unit/nft/table_fixture.ts --write (root; in a namespace of its own).
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

const flowKey = (a: string) => `${a} . ${a} . inet_proto . inet_service . inet_service`;
const dynamic = (type: string, timeout: number): NftSet => ({
  kind: "set",
  type,
  interval: false,
  elements: new Map(),
  dynamic: { timeout, size: 65536 },
});
const KEY4 = "ip saddr . ip daddr . meta l4proto . th sport . th dport";

/** The table. */
export const TABLE: NftTable = {
  name: "inet mycni",
  counters: ["ingress_dropped", "egress_dropped", "flowlog_dropped"],
  limits: new Map([["flowlog", "rate 100/second burst 100 packets"]]),
  sets: new Map([
    ["flowlog_seen4", dynamic(flowKey("ipv4_addr"), 130)],
    ["strict_cut4", dynamic(flowKey("ipv4_addr"), 120)],
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
        `${KEY4} != @flowlog_seen4 limit name "flowlog" add @flowlog_seen4 { ${KEY4} } ` +
        `log prefix "mycni:i:0123456789abcdef:x/deny" group 9749`,
        `${KEY4} != @flowlog_seen4 counter name "flowlog_dropped"`,
        "counter name ingress_dropped drop",
      ],
    }],
    ["forward", {
      decl: "type filter hook forward priority filter; policy accept;",
      rules: [
        "ct state established,related accept",
        "ct state new tcp flags & (fin | syn | rst | ack) != syn drop",
        `ct state new ${KEY4} @strict_cut4 update @strict_cut4 { ${KEY4} } drop`,
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

// The listing: load TABLE as the sync would into a fresh namespace, add an element to each
// dynamic set (the kernel's and the agent's way of filling them look the same), list it.
if (import.meta.main && Deno.args[0] === "--write") {
  const { createTableSync } = await import("../../../lib/nft/sync.ts");
  const { inNetns, run } = await import("../../../lib/process/run.ts");
  const ns = `fixture${Deno.pid}`;
  await run(["ip", "netns", "add", ns]);
  try {
    const nft = (args: string[], stdin?: string) =>
      run(inNetns(`/run/netns/${ns}`, ["nft", ...args]), stdin ? { stdin } : {});
    const tables = createTableSync({
      apply: (text) => nft(["-f", "-"], text).then(() => {}),
      read: () => Promise.resolve(undefined),
      counters: () => Promise.resolve(new Map()),
    });
    await tables.apply(TABLE, { verify: false });
    for (const set of ["flowlog_seen4", "strict_cut4"]) {
      await nft([
        "add",
        "element",
        "inet",
        "mycni",
        set,
        "{ 10.0.0.1 . 10.0.0.2 . udp . 53 . 40000 }",
      ]);
    }
    const out = JSON.parse(await nft(["-j", "list", "table", "inet", "mycni"]));
    // The expiry counts down: fixed, so the file does not change on every run.
    for (const item of out.nftables) {
      for (const e of item.set?.elem ?? []) if (e.elem) e.elem.expires = 100;
    }
    const path = new URL("./table_fixture.json", import.meta.url);
    await Deno.writeTextFile(path, JSON.stringify(out, null, 2) + "\n");
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
}
