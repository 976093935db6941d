// The packet tracer (tests/harness/nft_tracer.ts) on small hand-written tables: it follows nft's
// semantics where the property test relies on it (jump, goto, return, map misses, families, plain
// and interval sets, port ranges, the flow log's statements, strict mode's rules), and refuses
// every rule form it was not written for.
import type { NftChain, NftSet, NftTable } from "../../../lib/nft/ruleset.ts";
import { assertEquals, assertMatch, assertThrows } from "../../harness/assert.ts";
import { flowLogPrefix, flowLogRules } from "../../../lib/policy/flow_log_rules.ts";
import { strictForwardRules } from "../../../lib/policy/strict_rules.ts";
import { forwardTracer, type TracePacket } from "../../harness/nft_tracer.ts";

const FORWARD = "type filter hook forward priority filter; policy accept;";

function set(type: string, elements: string[], interval = false): NftSet {
  return { kind: "set", type, interval, elements: new Map(elements.map((e) => [e, e])) };
}

function vmap(type: string, elements: string[]): NftSet {
  return { kind: "map", type, interval: false, elements: new Map(elements.map((e) => [e, e])) };
}

function table(
  forward: string[],
  chains: Record<string, string[]> = {},
  sets: Record<string, NftSet> = {},
): NftTable {
  const all = new Map<string, NftChain>(
    Object.entries(chains).map(([name, rules]) => [name, { rules }]),
  );
  all.set("forward", { decl: FORWARD, rules: forward });
  all.set("postrouting", {
    decl: "type nat hook postrouting priority srcnat; policy accept;",
    rules: ["anything at all: this hook is not walked"],
  });
  return {
    name: "inet t",
    counters: ["dropped"],
    sets: new Map(Object.entries(sets)),
    chains: all,
  };
}

const tcp = (saddr: string, daddr: string, dport: number): TracePacket => ({
  family: saddr.includes(":") ? 6 : 4,
  saddr,
  daddr,
  l4proto: "tcp",
  dport,
  ct: "new",
});

Deno.test("forwardTracer() jumps through a verdict map, returns, and meets the next lookup", () => {
  const t = forwardTracer(table(
    ["ip saddr vmap @out", "ip daddr vmap @in"],
    {
      egr: ["ip daddr @peers meta l4proto tcp th dport 80-81 return", "counter name dropped drop"],
      ing: ["ip saddr @wide accept", "counter name dropped drop"],
    },
    {
      out: vmap("ipv4_addr : verdict", ["10.0.0.1 : jump egr"]),
      in: vmap("ipv4_addr : verdict", ["10.0.0.2 : jump ing"]),
      peers: set("ipv4_addr", ["10.0.0.2", "10.0.0.3"]),
      wide: set("ipv4_addr", ["10.0.0.0/31", "10.0.0.4-10.0.0.6"], true),
    },
  ));
  const ok = t(tcp("10.0.0.1", "10.0.0.2", 81));
  assertEquals(ok.verdict, "accept");
  assertEquals(ok.path, [
    "forward[0] ip saddr vmap @out: 10.0.0.1 : jump egr",
    "egr[0] ip daddr @peers meta l4proto tcp th dport 80-81 return",
    "forward[1] ip daddr vmap @in: 10.0.0.2 : jump ing",
    "ing[0] ip saddr @wide accept",
  ]);
  assertEquals(t(tcp("10.0.0.1", "10.0.0.2", 82)).counter, "dropped");
  assertEquals(t(tcp("10.0.0.1", "10.0.0.3", 80)).verdict, "accept"); // no ingress element
  assertEquals(t(tcp("10.0.0.5", "10.0.0.2", 80)).verdict, "accept"); // in the range
  assertEquals(t(tcp("10.0.0.7", "10.0.0.2", 80)).verdict, "drop");
  assertEquals(t({ ...tcp("10.0.0.1", "10.0.0.2", 80), l4proto: "udp" }).verdict, "drop");
  // An IPv6 packet never meets `ip` lookups; conntrack and ND rules come first in real tables.
  assertEquals(t(tcp("fd00::1", "fd00::2", 80)).path, ["forward: policy accept"]);
});

Deno.test("forwardTracer() reads ct state, icmpv6 types and concatenated sets", () => {
  const t = forwardTracer(table(
    [
      "ct state established,related accept",
      "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
      "ip6 saddr . ip6 daddr @self accept",
      "counter name dropped drop",
    ],
    {},
    { self: set("ipv6_addr . ipv6_addr", ["fd00::1 . fd00::1"]) },
  ));
  assertEquals(t({ ...tcp("fd00::1", "fd00::2", 80), ct: "established" }).verdict, "accept");
  assertEquals(t(tcp("fd00::1", "fd00::1", 80)).verdict, "accept");
  assertEquals(t(tcp("fd00::1", "fd00::2", 80)).verdict, "drop");
  const nd = { ...tcp("fd00::1", "fd00::2", 1), l4proto: "icmpv6" as const, dport: undefined };
  assertEquals(t({ ...nd, icmpv6Type: "nd-neighbor-advert" }).verdict, "accept");
  assertEquals(t({ ...nd, icmpv6Type: "echo-request" }).verdict, "drop");
});

Deno.test("forwardTracer() refuses rule forms and sets it was not written for", () => {
  const sets = {
    a: set("ipv4_addr", ["10.0.0.1"]),
    r: set("ipv4_addr", ["10.0.0.0/24"], true),
    m: vmap("ipv4_addr : verdict", ["10.0.0.1 : jump nowhere"]),
  };
  const refused: [string, Record<string, NftSet>, RegExp][] = [
    ["ip saddr 10.0.0.1 accept", sets, /not a named set/], // a literal address
    ["ip saddr != @a accept", sets, /"!=" is not a named set/],
    ["th dport 80 accept", sets, /without a meta l4proto/],
    ["meta l4proto icmp accept", sets, /unknown l4proto/],
    ["ip saddr @missing accept", sets, /no set missing/],
    ["ip6 saddr @a accept", sets, /holds ipv4_addr, the rule looks up ipv6_addr/],
    ["ip saddr vmap @a", sets, /a is a set, the rule wants a map/],
    ["ip saddr vmap @m", sets, /jumps to a chain the table does not have/],
    ["ip saddr @a", sets, /no statement/],
    ["accept ip saddr @a", sets, /after the statement/],
    ["counter name nosuch drop", sets, /not declared/],
    ["jump elsewhere", sets, /unknown token "jump"/],
    ["ip saddr @b accept", { b: set("ipv4_addr", ["10.0.0.0/24"]) }, /not an IPv4 address/],
    ["ip saddr @b accept", { b: set("ipv4_addr", ["10.0.0.0/24", "10.0.0.7"], true) }, /overlap/],
    ["ip saddr @b accept", { b: set("ipv4_addr", ["10.0.0.1/24"], true) }, /host bits/],
    ["ip saddr @b accept", { b: set("ipv4_addr", ["010.0.0.1"]) }, /not an IPv4 address/],
    ["ip6 saddr @b accept", { b: set("ipv6_addr", ["FD00::1"]) }, /not an IPv6 address/],
  ];
  for (const [rule, s, why] of refused) {
    const err = assertThrows(() => forwardTracer(table([rule], {}, s)), `not refused: ${rule}`);
    assertMatch(err.message, why);
  }
  // A second forward base chain: its priority against ours is not modelled.
  const two = table(["accept"]);
  (two.chains as Map<string, NftChain>).set("other", { decl: FORWARD, rules: [] });
  assertThrows(() => forwardTracer(two));
});

Deno.test("forwardTracer() walks past the flow log's statements, logging, and reads strict mode's rules", () => {
  const seen = (f: 4 | 6): NftSet => ({
    ...set(`ipv${f}_addr . ipv${f}_addr . inet_proto . inet_service . inet_service`, []),
    dynamic: { timeout: 130, size: 65536 },
  });
  const deny = { direction: "ingress" as const, policies: ["x/deny, with a comma"] };
  const base = table(
    [
      "ct state established,related accept",
      ...strictForwardRules(),
      "ip daddr @a goto deny",
    ],
    { deny: [...flowLogRules(deny), "counter name dropped drop"] },
    {
      a: set("ipv4_addr", ["10.0.0.1"]),
      flowlog_seen4: seen(4),
      flowlog_seen6: seen(6),
      strict_cut4: seen(4),
      strict_cut6: seen(6),
    },
  );
  const t = forwardTracer({
    ...base,
    counters: ["dropped", "flowlog_dropped"],
    limits: new Map([["flowlog", "rate 100/second burst 100 packets"]]),
  });
  const denied = t(tcp("10.0.0.2", "10.0.0.1", 80));
  assertEquals(denied.verdict, "drop");
  assertEquals(denied.counter, "dropped");
  assertEquals(denied.logged, [flowLogPrefix(deny)]);
  // A mid-stream segment conntrack picked up after a cut is refused first, unlogged.
  const picked = t({ ...tcp("10.0.0.2", "10.0.0.9", 80), midStream: true });
  assertEquals([picked.verdict, picked.counter, picked.logged], ["drop", undefined, []]);
  assertEquals(t(tcp("10.0.0.2", "10.0.0.9", 80)).verdict, "accept");
  // The flow log's sets must be dynamic, of flow keys of the family; its limit declared.
  const refused: [NftTable, RegExp][] = [
    [{ ...base, limits: new Map([["flowlog", "x"]]), counters: ["dropped"] }, /not declared/],
    [{ ...base, counters: ["dropped", "flowlog_dropped"] }, /limit "flowlog" is not declared/],
    [
      {
        ...base,
        counters: ["dropped", "flowlog_dropped"],
        limits: new Map([["flowlog", "x"]]),
        sets: new Map([...base.sets, ["flowlog_seen4", { ...seen(4), dynamic: undefined }]]),
      },
      /not dynamic/,
    ],
  ];
  for (const [tbl, why] of refused) {
    assertMatch(assertThrows(() => forwardTracer(tbl)).message, why);
  }
});
