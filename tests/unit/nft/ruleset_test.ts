// The nftables table model: the whole-table text and the difference between two tables.
import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import {
  emptyTable,
  type NftSet,
  type NftTable,
  renderFullTable,
  renderTableChange,
} from "../../../lib/nft/ruleset.ts";

const set = (elements: string[], opts: Partial<NftSet> = {}): NftSet => ({
  kind: "set",
  type: "ipv4_addr",
  interval: false,
  elements: new Map(elements.map((e) => [e.split(" : ")[0], e])),
  ...opts,
});

const table = (
  sets: Record<string, NftSet>,
  chains: Record<string, { decl?: string; rules: string[] }>,
): NftTable => ({
  name: "inet t",
  counters: ["dropped"],
  sets: new Map(Object.entries(sets)),
  chains: new Map(Object.entries(chains)),
});

const FWD = "type filter hook forward priority filter; policy accept;";

Deno.test("renderFullTable() re-creates the table in one transaction", () => {
  const t = table(
    {
      s: set(["10.0.0.1", "10.0.0.2"]),
      m: set(["10.0.0.1 : jump c"], { kind: "map", type: "ipv4_addr : verdict" }),
    },
    { c: { rules: ["drop"] }, forward: { decl: FWD, rules: ["ip daddr vmap @m"] } },
  );
  assertEquals(
    renderFullTable(t),
    [
      "table inet t {}",
      "delete table inet t",
      "table inet t {",
      "  counter dropped {",
      "  }",
      "  set s {",
      "    type ipv4_addr;",
      "    elements = { 10.0.0.1, 10.0.0.2 }",
      "  }",
      "  map m {",
      "    type ipv4_addr : verdict;",
      "    elements = { 10.0.0.1 : jump c }",
      "  }",
      "  chain c {",
      "    drop",
      "  }",
      "  chain forward {",
      `    ${FWD}`,
      "    ip daddr vmap @m",
      "  }",
      "}",
      "",
    ].join("\n"),
  );
});

Deno.test("renderTableChange() is empty for the same table", () => {
  const t = table({ s: set(["10.0.0.1"]) }, { forward: { decl: FWD, rules: ["accept"] } });
  assertEquals(renderTableChange(t, t), "");
});

Deno.test("renderTableChange() adds and deletes single elements, and re-points a map entry", () => {
  const map = (els: string[]) => set(els, { kind: "map", type: "ipv4_addr : verdict" });
  const a = table({ s: set(["10.0.0.1", "10.0.0.2"]), m: map(["10.0.0.1 : jump c1"]) }, {
    c1: { rules: ["drop"] },
    c2: { rules: ["accept"] },
  });
  const b = table({ s: set(["10.0.0.2", "10.0.0.3"]), m: map(["10.0.0.1 : jump c2"]) }, {
    c1: { rules: ["drop"] },
    c2: { rules: ["accept"] },
  });
  assertEquals(renderTableChange(a, b).split("\n").filter(Boolean), [
    "delete element inet t s { 10.0.0.1 }",
    "add element inet t s { 10.0.0.3 }",
    "delete element inet t m { 10.0.0.1 }",
    "add element inet t m { 10.0.0.1 : jump c2 }",
  ]);
});

Deno.test("renderTableChange() refills an interval set whole", () => {
  const a = table({ s: set(["10.0.0.0/24"], { interval: true }) }, {});
  const b = table({ s: set(["10.0.0.0/24", "10.0.2.0-10.0.2.9"], { interval: true }) }, {});
  assertEquals(renderTableChange(a, b).split("\n").filter(Boolean), [
    "flush set inet t s",
    "add element inet t s { 10.0.0.0/24, 10.0.2.0-10.0.2.9 }",
  ]);
});

Deno.test("renderTableChange() creates before use and deletes after the last reference is gone", () => {
  const a = table({ old: set(["10.0.0.1"]) }, {
    gone: { rules: ["ip saddr @old accept"] },
    forward: { decl: FWD, rules: ["jump gone"] },
  });
  const b = table({ fresh: set(["10.0.0.9"]) }, {
    added: { rules: ["ip saddr @fresh accept"] },
    forward: { decl: FWD, rules: ["jump added"] },
  });
  assertEquals(renderTableChange(a, b).split("\n").filter(Boolean), [
    "add set inet t fresh { type ipv4_addr; }",
    "add chain inet t added",
    "add element inet t fresh { 10.0.0.9 }",
    "add rule inet t added ip saddr @fresh accept",
    "flush chain inet t forward",
    "add rule inet t forward jump added",
    "flush chain inet t gone",
    "delete chain inet t gone",
    "delete set inet t old",
  ]);
});

Deno.test("renderTableChange() from an empty table declares base chains with their hook", () => {
  const b = table({}, { forward: { decl: FWD, rules: ["accept"] } });
  assertEquals(renderTableChange(emptyTable("inet t"), b).split("\n").filter(Boolean), [
    "add counter inet t dropped",
    `add chain inet t forward { ${FWD} }`,
    "add rule inet t forward accept",
  ]);
});

Deno.test("renderTableChange() refuses a set that changed type under the same name", () => {
  const a = table({ s: set([]) }, {});
  const b = table({ s: set([], { type: "ipv6_addr" }) }, {});
  assertThrows(() => renderTableChange(a, b), /changed its declaration/);
});

Deno.test("renderTableChange() splits a large element list into batches", () => {
  const many = Array.from(
    { length: 12000 },
    (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
  );
  const text = renderTableChange(emptyTable("inet t"), table({ s: set(many) }, {}));
  const lines = text.split("\n").filter((l) => l.startsWith("add element"));
  assertEquals(lines.length, 3);
  assertEquals(lines.map((l) => l.split(",").length), [5000, 5000, 2000]);
});

Deno.test("renderFullTable() and renderTableChange() declare limits and dynamic sets, never their elements", () => {
  const dynamic: NftSet = {
    ...set(["10.0.0.1 . 10.0.0.2 . tcp . 40000 . 80"], {
      type: "ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service",
    }),
    dynamic: { timeout: 130, size: 65536 },
  };
  const decl = "type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service; " +
    "flags dynamic,timeout; timeout 130s; size 65536;";
  const t: NftTable = {
    ...table({ seen: dynamic }, { c: { rules: ['limit name "flowlog" accept'] } }),
    limits: new Map([["flowlog", "rate 100/second burst 100 packets"]]),
  };
  const full = renderFullTable(t);
  assertEquals(full.includes("  limit flowlog { rate 100/second burst 100 packets }"), true);
  assertEquals(full.includes(`    ${decl}\n  }`), true);
  assertEquals(full.includes("elements"), false);
  const added = renderTableChange(emptyTable("inet t"), t).split("\n");
  assertEquals(added.slice(0, 3), [
    "add counter inet t dropped",
    "add limit inet t flowlog { rate 100/second burst 100 packets }",
    `add set inet t seen { ${decl} }`,
  ]);
  assertEquals(added.some((l) => l.startsWith("add element")), false);
  // Other elements in the model (what a read-back might hold) change nothing.
  const other = { ...dynamic, elements: new Map([["x", "10.0.0.3 . 10.0.0.2 . tcp . 1 . 80"]]) };
  assertEquals(renderTableChange(t, { ...t, sets: new Map([["seen", other]]) }), "");
  // A limit goes after the last rule using it; one that changed is refused (a whole load).
  const gone = renderTableChange(t, { ...t, limits: new Map(), chains: new Map() }).split("\n");
  assertEquals(
    gone.indexOf("delete limit inet t flowlog") > gone.indexOf("delete chain inet t c"),
    true,
  );
  assertThrows(() =>
    renderTableChange(t, { ...t, limits: new Map([["flowlog", "rate 5/second burst 5 packets"]]) })
  );
});
