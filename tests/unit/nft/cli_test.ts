import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseTableJson } from "../../../lib/nft/cli.ts";
import { TABLE } from "./table_fixture.ts";

const JSON_LISTING = JSON.parse(
  await Deno.readTextFile(new URL("./table_fixture.json", import.meta.url)),
);

Deno.test("parseTableJson() reads sets, maps, chains, rule comments and counters of nft -j", () => {
  const { table, counters } = parseTableJson("inet mycni", JSON_LISTING);
  assertEquals(table.name, "inet mycni");
  assertEquals(table.counters, ["ingress_dropped", "egress_dropped", "flowlog_dropped"]);
  assertEquals([...counters], [["ingress_dropped", 0], ["egress_dropped", 0], [
    "flowlog_dropped",
    0,
  ]]);
  assertEquals([...table.limits!], [["flowlog", "rate 100/second burst 100 packets"]]);
  // A set with a timeout is dynamic: declared as ours, its elements (the kernel's) not read.
  assertEquals(table.sets.get("flowlog_seen4"), TABLE.sets.get("flowlog_seen4"));
  assertEquals(table.sets.get("strict_cut4"), TABLE.sets.get("strict_cut4"));
  assertEquals(
    JSON_LISTING.nftables.find((i: { set?: { name: string } }) => i.set?.name === "strict_cut4")
      .set.elem.length,
    1,
    "the listing holds an element the parse leaves out",
  );
  assertEquals([...table.sets.keys()], [...TABLE.sets.keys()]);
  const get = (name: string) => table.sets.get(name)!;
  assertEquals(get("self4").type, "ipv4_addr . ipv4_addr");
  assertEquals([...get("self4").elements.values()], [
    "10.244.1.2 . 10.244.1.2",
    "10.244.1.3 . 10.244.1.3",
  ]);
  assertEquals(get("self6").elements.size, 0);
  assertEquals(get("ingress6"), TABLE.sets.get("ingress6"));
  assertEquals(get("i_a_4"), TABLE.sets.get("i_a_4"));
  // Interval elements as nft prints them: ranges that are networks become prefixes.
  assertEquals(get("ir_a_4").interval, true);
  assertEquals([...get("ir_a_4").elements.values()], [
    "10.0.0.0/22",
    "10.1.0.0-10.1.0.9",
    "10.1.0.10-10.1.0.20",
    "10.9.9.9",
    "192.168.0.0/16",
  ]);
  assertEquals([...get("nomasq6").elements.values()], ["fd00:10:244::/48", "fd01::1-fd01::5"]);
  assertEquals(
    table.chains.get("forward")!.decl,
    "type filter hook forward priority 0; policy accept;",
  );
  assertEquals(
    table.chains.get("postrouting")!.decl,
    "type nat hook postrouting priority 100; policy accept;",
  );
  assertEquals(table.chains.get("ing_a")!.decl, undefined);
  assertEquals(table.chains.get("ing_a")!.rules.length, 6);
  assertEquals(table.chains.get("ing_a")!.rules[0], "mycni:3e21346bcc7de2ad");
});

Deno.test("parseTableJson() reads rules without a comment as '' and other verdicts as words", () => {
  const { table } = parseTableJson("inet t", {
    nftables: [
      { metainfo: { version: "1.0.6" } },
      { table: { family: "inet", name: "t", handle: 1 } },
      {
        map: {
          family: "inet",
          name: "m",
          table: "t",
          type: ["ipv4_addr", "inet_service"],
          map: "verdict",
          elem: [[{ concat: ["10.0.0.1", 80] }, { accept: null }]],
        },
      },
      { chain: { family: "inet", table: "t", name: "c", handle: 2 } },
      { rule: { family: "inet", table: "t", chain: "c", handle: 3, expr: [{ accept: null }] } },
    ],
  });
  assertEquals([...table.sets.get("m")!.elements], [["10.0.0.1 . 80", "10.0.0.1 . 80 : accept"]]);
  assertEquals(table.sets.get("m")!.type, "ipv4_addr . inet_service : verdict");
  assertEquals(table.chains.get("c"), { rules: [""] });
});
