// Set and map elements over nfnetlink against the real kernel and nft, in namespaces of the
// test's own: nft still sends the bytes the unit fixtures hold, a batch leaves exactly its
// elements, a refused batch leaves nothing, the dump reads what nft lists, and a random walk of
// element changes ends where loading each table whole does. Prints batch-vs-nft timings.
import { formatIp } from "../../lib/ip/cidr.ts";
import { elementChanges } from "../../lib/nft/element_diff.ts";
import { encodeElementMessages } from "../../lib/nft/element_codec.ts";
import {
  applyElementChanges,
  type ElementChange,
  listSetElements,
} from "../../lib/nft/elements.ts";
import {
  type NftSet,
  type NftTable,
  renderFullTable,
  renderTableChange,
} from "../../lib/nft/ruleset.ts";
import { NetlinkError } from "../../lib/net/netlink.ts";
import { encodeBatch, NFNL_SUBSYS_NFTABLES } from "../../lib/net/nfnetlink.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";
import { listTable } from "../harness/nft.ts";
import { captureNftBatch, normalised, splitMessages } from "../harness/nft_capture.ts";
import { batchDigest, CASES, SETUP, SPLIT_CASE } from "../unit/nft/element_fixtures.ts";

const MAP4 = "ipv4_addr : verdict", MAP6 = "ipv6_addr : verdict";
const SELF4 = "ipv4_addr . ipv4_addr", SELF6 = "ipv6_addr . ipv6_addr";
const FWD = "type filter hook forward priority filter; policy accept;";
const ip4 = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const ip6 = (i: number) => formatIp({ family: 6, value: 0xfd00n << 112n | BigInt(i) });

function elements(list: string[]): Map<string, string> {
  return new Map(list.map((e) => [e.split(" : ")[0], e]));
}

function set(type: string, list: string[], interval = false): NftSet {
  return { kind: type.includes(" : ") ? "map" : "set", type, interval, elements: elements(list) };
}

/** The agent's table shape: verdict maps per direction and family, self sets, peer sets. */
function agentTable(pods: number[], chainOf: (i: number) => string, peers: number[]): NftTable {
  const chains = new Map<string, { decl?: string; rules: string[] }>([
    ["ing_a", { rules: ["ip saddr @peers4 accept", "counter name ingress_dropped drop"] }],
    ["ing_b", { rules: ["counter name ingress_dropped drop"] }],
    ["egr_a", { rules: ["return"] }],
    ["forward", {
      decl: FWD,
      rules: [
        "ct state established,related accept",
        "ip saddr . ip daddr @self4 accept",
        "ip6 saddr . ip6 daddr @self6 accept",
        "ip saddr vmap @egress4",
        "ip daddr vmap @ingress4",
        "ip6 daddr vmap @ingress6",
        "ip daddr @wide4 drop",
      ],
    }],
  ]);
  return {
    name: "inet mycni",
    counters: ["ingress_dropped"],
    sets: new Map([
      ["self4", set(SELF4, pods.map((i) => `${ip4(i)} . ${ip4(i)}`))],
      ["self6", set(SELF6, pods.map((i) => `${ip6(i)} . ${ip6(i)}`))],
      ["egress4", set(MAP4, pods.map((i) => `${ip4(i)} : jump egr_a`))],
      ["ingress4", set(MAP4, pods.map((i) => `${ip4(i)} : jump ${chainOf(i)}`))],
      ["ingress6", set(MAP6, pods.map((i) => `${ip6(i)} : jump ${chainOf(i)}`))],
      ["peers4", set("ipv4_addr", peers.map(ip4))],
      ["wide4", set("ipv4_addr", ["192.0.2.0/24", "198.51.100.0/24"], true)],
    ]),
    chains,
  };
}

async function load(ns: TempNetns, table: NftTable): Promise<void> {
  await run(ns.exec(["nft", "-f", "-"]), { stdin: renderFullTable(table) });
}

/** A set's or map's elements as nft lists them, in ruleset.ts's text, sorted. */
async function nftElements(ns: TempNetns, name: string): Promise<string[]> {
  const out = await run(ns.exec(["nft", "-j", "list", "set", "inet", "mycni", name]))
    .catch(() => run(ns.exec(["nft", "-j", "list", "map", "inet", "mycni", name])));
  const items = JSON.parse(out).nftables as Record<string, { elem?: unknown[] }>[];
  const body = items.find((i) => i.set || i.map)!;
  const elem = (body.set ?? body.map).elem ?? [];
  const value = (v: unknown): string =>
    typeof v === "object" && v !== null && "concat" in v
      ? (v as { concat: unknown[] }).concat.map(value).join(" . ")
      : String(v);
  const verdict = (v: Record<string, { target?: string } | null>) => {
    const [word, arg] = Object.entries(v)[0];
    return arg?.target ? `${word} ${arg.target}` : word;
  };
  return elem.map((e) =>
    Array.isArray(e) ? `${value(e[0])} : ${verdict(e[1] as Record<string, null>)}` : value(e)
  ).sort();
}

function sorted(m: ReadonlyMap<string, string> | undefined): string[] {
  return [...(m?.values() ?? [])].sort();
}

Deno.test({
  name: "nft on this machine still sends the batches the unit fixtures hold, and so do we",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  const ours = (changes: readonly ElementChange[]) =>
    splitMessages(
      encodeBatch(NFNL_SUBSYS_NFTABLES, encodeElementMessages("inet mycni", changes), 1),
    )
      .map(normalised);
  for (const c of CASES) {
    await run(ns.exec(["nft", "flush", "ruleset"]));
    await run(ns.exec(["nft", "-f", "-"]), { stdin: SETUP });
    const nft = (await captureNftBatch(ns.path, c.nft)).map(normalised);
    assertEquals(nft, c.hex, `nft's batch for ${c.nft}changed: new fixture ${JSON.stringify(nft)}`);
    assertEquals(ours(c.changes), nft, c.nft);
  }
  await run(ns.exec(["nft", "flush", "ruleset"]));
  await run(ns.exec(["nft", "-f", "-"]), { stdin: SETUP });
  const split = (await captureNftBatch(ns.path, SPLIT_CASE.nft)).map(normalised);
  assertEquals(await batchDigest(split), SPLIT_CASE.sha256, "nft's split list changed");
  const changes = SPLIT_CASE.elements.map((element) => ({
    op: "add" as const,
    set: "ingress4",
    type: MAP4,
    element,
  }));
  assertEquals(ours(changes), split);
});

Deno.test({
  name: "applyElementChanges() leaves exactly the elements asked for, in every set kind",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  await load(ns, agentTable([1, 2, 3], () => "ing_a", [100]));
  applyElementChanges([
    { op: "delete", set: "ingress4", type: MAP4, element: `${ip4(1)} : jump ing_a` },
    { op: "add", set: "ingress4", type: MAP4, element: `${ip4(1)} : jump ing_b` },
    { op: "add", set: "ingress4", type: MAP4, element: `${ip4(4)} : jump ing_b` },
    { op: "delete", set: "ingress6", type: MAP6, element: `${ip6(2)} : jump ing_a` },
    { op: "add", set: "ingress6", type: MAP6, element: `${ip6(4)} : jump ing_b` },
    { op: "add", set: "self4", type: SELF4, element: `${ip4(4)} . ${ip4(4)}` },
    { op: "delete", set: "self6", type: SELF6, element: `${ip6(3)} . ${ip6(3)}` },
    { op: "add", set: "peers4", type: "ipv4_addr", element: ip4(4) },
    { op: "delete", set: "peers4", type: "ipv4_addr", element: ip4(100) },
  ], { netns: ns.path });
  assertEquals(await nftElements(ns, "ingress4"), [
    `${ip4(1)} : jump ing_b`,
    `${ip4(2)} : jump ing_a`,
    `${ip4(3)} : jump ing_a`,
    `${ip4(4)} : jump ing_b`,
  ]);
  assertEquals(await nftElements(ns, "ingress6"), [
    `${ip6(1)} : jump ing_a`,
    `${ip6(3)} : jump ing_a`,
    `${ip6(4)} : jump ing_b`,
  ]);
  assertEquals(await nftElements(ns, "self4"), [1, 2, 3, 4].map((i) => `${ip4(i)} . ${ip4(i)}`));
  assertEquals(await nftElements(ns, "self6"), [1, 2].map((i) => `${ip6(i)} . ${ip6(i)}`));
  assertEquals(await nftElements(ns, "peers4"), [ip4(4)]);
  assertEquals(await nftElements(ns, "egress4"), [1, 2, 3].map((i) => `${ip4(i)} : jump egr_a`));
});

Deno.test({
  name:
    "applyElementChanges() of a batch the kernel refuses in the middle changes nothing and names the change",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  await load(ns, agentTable([1, 2, 3], () => "ing_a", [100]));
  const before = await listTable(ns.path, "inet mycni");
  const good: ElementChange[] = [
    { op: "add", set: "peers4", type: "ipv4_addr", element: ip4(7) },
    { op: "delete", set: "ingress4", type: MAP4, element: `${ip4(1)} : jump ing_a` },
  ];
  const last: ElementChange = {
    op: "add",
    set: "self4",
    type: SELF4,
    element: "10.0.0.7 . 10.0.0.7",
  };
  const refused = (bad: ElementChange) => {
    const err = assertThrows(() => applyElementChanges([...good, bad, last], { netns: ns.path }));
    assert(err instanceof NetlinkError, String(err));
    return err;
  };
  const chain = refused({
    op: "add",
    set: "ingress4",
    type: MAP4,
    element: `${ip4(9)} : jump nosuch`,
  });
  assertMatch(
    chain.message,
    /^add element inet mycni ingress4 \{ 10\.0\.0\.9 : jump nosuch \} \(message 3 of 4, none of the batch's 4 changes applied\) \(netlink, in \/run\/netns\/.+\): No such file or directory/,
  );
  assertEquals(await listTable(ns.path, "inet mycni"), before);
  const noSet = refused({ op: "add", set: "nosuch", type: "ipv4_addr", element: ip4(9) });
  assertMatch(
    noSet.message,
    /^add element inet mycni nosuch \{ 10\.0\.0\.9 \} \(message 3 of 4, .*No such file or directory/,
  );
  assertEquals(await listTable(ns.path, "inet mycni"), before);
  // The element at fault found among the others of its message.
  const many = assertThrows(() =>
    applyElementChanges([
      { op: "add", set: "ingress4", type: MAP4, element: `${ip4(8)} : jump ing_b` },
      { op: "add", set: "ingress4", type: MAP4, element: `${ip4(9)} : jump nosuch` },
      { op: "add", set: "ingress4", type: MAP4, element: `${ip4(10)} : jump ing_b` },
    ], { netns: ns.path })
  );
  assertMatch(
    many.message,
    /^add element inet mycni ingress4 \{ 10\.0\.0\.9 : jump nosuch \} \(message 1 of 1,/,
  );
  assertEquals(await listTable(ns.path, "inet mycni"), before);
});

Deno.test({
  name:
    "applyElementChanges() adds an element that is there, refuses another verdict for a key and a delete of an absent element",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  await load(ns, agentTable([1], () => "ing_a", [100]));
  const netns = ns.path;
  // Again the same: fine (nft's `add element`), so a repeated admission is harmless.
  applyElementChanges([
    { op: "add", set: "ingress4", type: MAP4, element: `${ip4(1)} : jump ing_a` },
    { op: "add", set: "peers4", type: "ipv4_addr", element: ip4(100) },
  ], { netns });
  const before = await listTable(netns, "inet mycni");
  const clash = assertThrows(() =>
    applyElementChanges(
      [{ op: "add", set: "ingress4", type: MAP4, element: `${ip4(1)} : jump ing_b` }],
      { netns },
    )
  );
  assertMatch(clash.message, /File exists/);
  const absent = assertThrows(() =>
    applyElementChanges([{ op: "delete", set: "peers4", type: "ipv4_addr", element: ip4(5) }], {
      netns,
    })
  );
  assertMatch(
    absent.message,
    /^delete element inet mycni peers4 \{ 10\.0\.0\.5 \} .*No such file or directory/,
  );
  assertEquals(await listTable(netns, "inet mycni"), before);
});

Deno.test({
  name: "listSetElements() reads what nft lists, for every set kind, and nothing for a missing set",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  const pods = Array.from({ length: 2000 }, (_, i) => i + 1);
  const table = agentTable(pods, (i) => (i % 2 ? "ing_a" : "ing_b"), [7, 8, 9]);
  await load(ns, table);
  for (const [name, s] of table.sets) {
    if (s.interval) continue;
    const got = listSetElements({ name, type: s.type }, { netns: ns.path });
    assertEquals(sorted(got), await nftElements(ns, name), name);
    assertEquals(sorted(got), sorted(s.elements), name);
    assertEquals([...got!.keys()].sort(), [...s.elements.keys()].sort(), name);
  }
  assertEquals(
    listSetElements({ name: "nosuch", type: "ipv4_addr" }, { netns: ns.path }),
    undefined,
  );
  assertEquals(
    listSetElements({ name: "peers4", type: "ipv4_addr" }, { netns: ns.path, table: "ip nosuch" }),
    undefined,
  );
  const wrong = assertThrows(() =>
    listSetElements({ name: "self4", type: "ipv4_addr" }, { netns: ns.path })
  );
  assertMatch(wrong.message, /key of 8 bytes is not of type ipv4_addr/);
  assertMatch(
    assertThrows(() =>
      listSetElements({ name: "wide4", type: "ipv4_addr", interval: true }, { netns: ns.path })
    ).message,
    /interval set/,
  );
});

Deno.test({
  name:
    "applyElementChanges() sends 10,000 elements and a batch touching 400 sets as one transaction each",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  const sets = Array.from({ length: 400 }, (_, i) => `  set p${i} { type ipv4_addr; }`);
  await run(ns.exec(["nft", "-f", "-"]), {
    stdin: `table inet mycni {\n${
      sets.join("\n")
    }\n  map ingress4 { type ${MAP4}; }\n  chain ing_a { }\n}\n`,
  });
  // ~480 KB: more than the socket's default send buffer.
  const many = Array.from({ length: 10000 }, (_, i) => ({
    op: "add" as const,
    set: "ingress4",
    type: MAP4,
    element: `${ip4(i)} : jump ing_a`,
  }));
  applyElementChanges(many, { netns: ns.path });
  assertEquals((await nftElements(ns, "ingress4")).length, 10000);
  // 400 messages, so 400 acks: more than the default receive buffer holds.
  const wide = sets.map((_, i) => ({
    op: "add" as const,
    set: `p${i}`,
    type: "ipv4_addr",
    element: ip4(i),
  }));
  applyElementChanges(wide, { netns: ns.path });
  assertEquals(await nftElements(ns, "p0"), [ip4(0)]);
  assertEquals(await nftElements(ns, "p399"), [ip4(399)]);
});

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5 >>> 0) / 2 ** 32);
}

Deno.test({
  name:
    "elementChanges() then applyElementChanges() walk 30 random tables, each step equal to loading it whole",
  ignore: !canRunPrivileged,
}, async () => {
  await using batched = await tempNetns("mcel");
  await using whole = await tempNetns("mcel");
  const rand = seeded(20260118);
  const pick = (n: number) => Math.floor(rand() * n);
  const random = () => {
    const pods = [...new Set(Array.from({ length: pick(30) }, () => 1 + pick(60)))];
    const peers = [...new Set(Array.from({ length: pick(20) }, () => 100 + pick(40)))];
    const t = agentTable(pods, (i) => ((i + pick(2)) % 2 ? "ing_a" : "ing_b"), peers);
    // Now and then a structural change: the caller must fall back to nft -f.
    if (rand() >= 0.2) return t;
    const chains = new Map(t.chains);
    chains.set("ing_b", { rules: ["counter name ingress_dropped accept"] });
    return { ...t, chains };
  };
  let prev = random();
  await load(batched, prev);
  let viaBatch = 0;
  for (let step = 0; step < 30; step++) {
    const next = random();
    const changes = elementChanges(prev, next);
    if (changes) {
      applyElementChanges(changes, { netns: batched.path });
      viaBatch++;
    } else {
      await run(batched.exec(["nft", "-f", "-"]), { stdin: renderTableChange(prev, next) });
    }
    await load(whole, next);
    assertEquals(
      await listTable(batched.path, "inet mycni"),
      await listTable(whole.path, "inet mycni"),
      `step ${step} (${changes ? `${changes.length} element changes` : "nft -f"})`,
    );
    prev = next;
  }
  assert(viaBatch >= 15, `only ${viaBatch} of 30 steps were element-only`);
});

/** Median wall time of `n` runs of `fn`, in ms. */
async function median(n: number, fn: (i: number) => Promise<void> | void): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)];
}

Deno.test({
  name:
    "figures: element batch vs nft -f on a table of 10,000 elements, and its dump vs nft -j list table",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcel");
  // 2000 pods, dual-stack: 2000 elements in each of ingress4, ingress6, egress4, self4, self6.
  const pods = Array.from({ length: 2000 }, (_, i) => i + 1);
  const table = agentTable(pods, () => "ing_a", []);
  await load(ns, table);
  const change = (n: number, round: number, op: "add" | "delete") => {
    const out: ElementChange[] = [];
    for (let k = 0; out.length < n; k++) {
      const i = 100000 + round * 1000 + k;
      out.push({ op, set: "ingress4", type: MAP4, element: `${ip4(i)} : jump ing_a` });
      if (out.length < n) {
        out.push({ op, set: "egress4", type: MAP4, element: `${ip4(i)} : jump egr_a` });
      }
      if (out.length < n) {
        out.push({ op, set: "self4", type: SELF4, element: `${ip4(i)} . ${ip4(i)}` });
      }
      if (out.length < n) out.push({ op, set: "peers4", type: "ipv4_addr", element: ip4(i) });
    }
    return out;
  };
  const nftText = (changes: ElementChange[]) =>
    changes.map((c) =>
      `${c.op} element inet mycni ${c.set} { ${
        c.op === "add" ? c.element : c.element.split(" : ")[0]
      } }`
    ).join("\n") + "\n";
  const figures: string[] = [];
  // nft runs through nsenter here (the agent runs it in its own netns): nsenter's own cost.
  const nsenter = await median(11, () => run(ns.exec(["true"])).then(() => {}));
  const ms = (t: number) => t.toFixed(t < 10 ? 2 : 1);
  for (const n of [1, 100]) {
    // Each run adds n elements and takes them away again, so the table stays at 10,000.
    const time = async (apply: (c: ElementChange[]) => Promise<void> | void) => {
      const add: number[] = [], del: number[] = [];
      for (let r = 0; r < 15; r++) {
        let t0 = performance.now();
        await apply(change(n, r, "add"));
        add.push(performance.now() - t0);
        t0 = performance.now();
        await apply(change(n, r, "delete"));
        del.push(performance.now() - t0);
      }
      const mid = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1];
      return `add ${ms(mid(add))} ms, delete ${ms(mid(del))} ms`;
    };
    const batch = await time((c) => applyElementChanges(c, { netns: ns.path }));
    const nft = await time(async (c) => {
      await run(ns.exec(["nft", "-f", "-"]), { stdin: nftText(c) });
    });
    figures.push(`${n} element change(s): batch ${batch}; nft -f ${nft}`);
  }
  figures.push(`(nft's figures include nsenter's ${ms(nsenter)} ms)`);
  assertEquals((await nftElements(ns, "ingress4")).length, 2000);
  const sets = [...table.sets].filter(([, s]) => !s.interval);
  let count = 0;
  const dump = await median(11, () => {
    count = 0;
    for (const [name, s] of sets) {
      count += listSetElements({ name, type: s.type }, { netns: ns.path })!.size;
    }
  });
  const listing = await median(5, async () => {
    const out = await runOutput(ns.exec(["nft", "-j", "list", "table", "inet", "mycni"]));
    assert(out.code === 0, out.stderr);
  });
  assertEquals(count, 10000);
  figures.push(
    `dump of ${count} elements (${sets.length} sets): ${dump.toFixed(1)} ms; ` +
      `nft -j list table: ${listing.toFixed(1)} ms`,
  );
  console.log(figures.map((f) => `  ${f}`).join("\n"));
});
