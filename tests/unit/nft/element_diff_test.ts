import { elementChanges } from "../../../lib/nft/element_diff.ts";
import type { NftChain, NftSet, NftTable } from "../../../lib/nft/ruleset.ts";
import { assertEquals } from "../../harness/assert.ts";

const MAP4 = "ipv4_addr : verdict";

function set(type: string, elements: string[], interval = false): NftSet {
  const kind = type.includes(" : ") ? "map" : "set";
  return {
    kind,
    type,
    interval,
    elements: new Map(elements.map((e) => [e.split(" : ")[0], e])),
  };
}

function table(sets: Record<string, NftSet>, chains: Record<string, NftChain> = {}): NftTable {
  return {
    name: "inet mycni",
    counters: ["ingress_dropped"],
    sets: new Map(Object.entries(sets)),
    chains: new Map(Object.entries({ ing_a: { rules: ["drop"] }, ...chains })),
  };
}

const base = {
  ingress4: set(MAP4, ["10.0.0.1 : jump ing_a", "10.0.0.2 : jump ing_a"]),
  self4: set("ipv4_addr . ipv4_addr", ["10.0.0.1 . 10.0.0.1", "10.0.0.2 . 10.0.0.2"]),
  peers: set("ipv4_addr", ["10.0.1.1"]),
  ranges: set("ipv4_addr", ["10.1.0.0/16"], true),
};

Deno.test("elementChanges() of a pod that starts: adds to its maps and sets only", () => {
  const next = table({
    ...base,
    ingress4: set(MAP4, [
      "10.0.0.1 : jump ing_a",
      "10.0.0.2 : jump ing_a",
      "10.0.0.3 : jump ing_a",
    ]),
    self4: set("ipv4_addr . ipv4_addr", [
      "10.0.0.1 . 10.0.0.1",
      "10.0.0.2 . 10.0.0.2",
      "10.0.0.3 . 10.0.0.3",
    ]),
    peers: set("ipv4_addr", ["10.0.1.1", "10.0.0.3"]),
  });
  assertEquals(elementChanges(table(base), next), [
    { op: "add", set: "ingress4", type: MAP4, element: "10.0.0.3 : jump ing_a" },
    { op: "add", set: "self4", type: "ipv4_addr . ipv4_addr", element: "10.0.0.3 . 10.0.0.3" },
    { op: "add", set: "peers", type: "ipv4_addr", element: "10.0.0.3" },
  ]);
});

Deno.test("elementChanges() of a pod that stops and one whose verdict changed: deletes before adds", () => {
  const next = table({
    ...base,
    ingress4: set(MAP4, ["10.0.0.2 : jump ing_b"]),
    self4: set("ipv4_addr . ipv4_addr", ["10.0.0.2 . 10.0.0.2"]),
  }, { ing_b: { rules: ["drop"] } });
  const prev = table(base, { ing_b: { rules: ["drop"] } });
  assertEquals(elementChanges(prev, next), [
    { op: "delete", set: "ingress4", type: MAP4, element: "10.0.0.1 : jump ing_a" },
    { op: "delete", set: "ingress4", type: MAP4, element: "10.0.0.2 : jump ing_a" },
    { op: "add", set: "ingress4", type: MAP4, element: "10.0.0.2 : jump ing_b" },
    { op: "delete", set: "self4", type: "ipv4_addr . ipv4_addr", element: "10.0.0.1 . 10.0.0.1" },
  ]);
});

Deno.test("elementChanges() of equal tables is empty, also with other Map objects", () => {
  assertEquals(elementChanges(table(base), table(base)), []);
  const copy = Object.fromEntries(
    Object.entries(base).map(([k, s]) => [k, { ...s, elements: new Map(s.elements) }]),
  );
  assertEquals(elementChanges(table(base), table(copy)), []);
});

Deno.test("elementChanges() is undefined when anything beyond plain elements differs", () => {
  const prev = table(base);
  const cases: [string, NftTable][] = [
    ["a chain's rules", table(base, { ing_a: { rules: ["accept"] } })],
    ["a new chain", table(base, { ing_b: { rules: ["drop"] } })],
    [
      "a chain's hook",
      table(base, { ing_a: { decl: "type filter hook forward", rules: ["drop"] } }),
    ],
    ["a new set", table({ ...base, more: set("ipv4_addr", []) })],
    ["a set gone", table({ ingress4: base.ingress4, self4: base.self4, peers: base.peers })],
    ["a set's type", table({ ...base, peers: set("ipv6_addr", []) })],
    ["a set becoming an interval set", table({ ...base, peers: set("ipv4_addr", [], true) })],
    [
      "an interval set's elements",
      table({ ...base, ranges: set("ipv4_addr", ["10.2.0.0/16"], true) }),
    ],
    ["a counter", { ...table(base), counters: ["ingress_dropped", "egress_dropped"] }],
    ["the table", { ...table(base), name: "inet other" }],
    [
      "a type the batch cannot encode",
      table({ ...base, peers: set("ether_addr", ["0:1:2:3:4:5"]) }),
    ],
  ];
  for (const [what, next] of cases) assertEquals(elementChanges(prev, next), undefined, what);
  // The same unencodable set unchanged is no obstacle: only changed elements are sent.
  const macs = { ...base, macs: set("ether_addr", ["0:1:2:3:4:5"]) };
  assertEquals(elementChanges(table(macs), table(macs)), []);
});

Deno.test("elementChanges() leaves a dynamic set's elements to the kernel, but not its declaration or a limit", () => {
  const seen = (elements: string[], timeout = 130): NftSet => ({
    ...set("ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service", elements),
    dynamic: { timeout, size: 65536 },
  });
  const el = "10.0.0.1 . 10.0.0.2 . tcp . 40000 . 80";
  const withLimit = (t: NftTable, spec: string): NftTable => ({
    ...t,
    limits: new Map([["flowlog", spec]]),
  });
  const spec = "rate 100/second burst 100 packets";
  const prev = withLimit(table({ ...base, seen: seen([]) }), spec);
  assertEquals(elementChanges(prev, withLimit(table({ ...base, seen: seen([el]) }), spec)), []);
  assertEquals(
    elementChanges(prev, withLimit(table({ ...base, seen: seen([], 60) }), spec)),
    undefined,
  );
  assertEquals(
    elementChanges(prev, withLimit(table({ ...base, seen: seen([]) }), "rate 5/second")),
    undefined,
  );
});
