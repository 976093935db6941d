import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { type KernelTable, parseTableJson } from "../../../lib/nft/cli.ts";
import type { NftSet, NftTable } from "../../../lib/nft/ruleset.ts";
import { createTableSync, type NftRunner, tableDifferences } from "../../../lib/nft/sync.ts";
import type { ElementChange } from "../../../lib/nft/elements.ts";
import { TABLE } from "./table_fixture.ts";

/** What nft 1.0.6 lists after loading TABLE (see table_fixture.ts). */
const LISTED: KernelTable = parseTableJson(
  "inet mycni",
  JSON.parse(await Deno.readTextFile(new URL("./table_fixture.json", import.meta.url))),
);

/** An nft that records transactions and answers reads with what the test puts in `kernel`. */
function fakeNft() {
  const fake = {
    applied: [] as string[],
    reads: 0,
    kernel: undefined as KernelTable | undefined,
    counters: new Map<string, number>(),
    failApply: "",
    failRead: "",
    failCounters: "",
    runner: undefined as unknown as NftRunner,
  };
  fake.runner = {
    apply(text) {
      if (fake.failApply) return Promise.reject(new Error(fake.failApply));
      fake.applied.push(text);
      return Promise.resolve();
    },
    read() {
      fake.reads++;
      if (fake.failRead) return Promise.reject(new Error(fake.failRead));
      return Promise.resolve(fake.kernel);
    },
    counters() {
      if (fake.failCounters) return Promise.reject(new Error(fake.failCounters));
      return Promise.resolve(new Map(fake.counters));
    },
  };
  return fake;
}

/** `t` with set `name`'s elements changed by `edit`. */
function withElements(
  t: NftTable,
  name: string,
  edit: (els: Map<string, string>) => void,
): NftTable {
  const set = t.sets.get(name)!;
  const elements = new Map(set.elements);
  edit(elements);
  const sets = new Map(t.sets);
  sets.set(name, { ...set, elements } as NftSet);
  return { ...t, sets };
}

/** The kernel listing with some objects changed. */
function listedWith(
  edit: (t: {
    sets: Map<string, NftSet>;
    chains: Map<string, unknown>;
    limits: Map<string, string>;
  }) => void,
): KernelTable {
  const sets = new Map(LISTED.table.sets);
  const chains = new Map(LISTED.table.chains);
  const limits = new Map(LISTED.table.limits);
  edit({ sets, chains, limits });
  return { ...LISTED, table: { ...LISTED.table, sets, chains, limits } as NftTable };
}

const isWhole = (text: string) => text.startsWith("table inet mycni {}\ndelete table inet mycni\n");

Deno.test("createTableSync() loads the table whole first, then only the difference from it", async () => {
  const nft = fakeNft();
  const tables = createTableSync(nft.runner);
  assertEquals(await tables.apply(TABLE, { verify: false }), {
    changed: true,
    whole: true,
    differences: [],
    path: "nft",
  });
  assert(isWhole(nft.applied[0]));
  assert(nft.applied[0].includes(`ct state established,related accept comment "mycni:`));
  const more = withElements(
    TABLE,
    "ingress4",
    (e) => e.set("10.244.1.4", "10.244.1.4 : jump ing_a"),
  );
  assertEquals((await tables.apply(more, { verify: false })).whole, false);
  assertEquals(nft.applied[1], "add element inet mycni ingress4 { 10.244.1.4 : jump ing_a }\n");
  assertEquals(await tables.apply(more, { verify: false }), {
    changed: false,
    whole: false,
    differences: [],
  });
  assertEquals(nft.applied.length, 2);
  assertEquals(nft.reads, 0, "an ordinary change read the table back");
});

Deno.test("tableDifferences() finds nothing between a table and nft's listing of it", () => {
  // Markers as the sync writes them: the listing's comments.
  const markers = new Map<string, string>();
  for (const [name, chain] of TABLE.chains) {
    chain.rules.forEach((r, i) => markers.set(r, LISTED.table.chains.get(name)!.rules[i]));
  }
  assertEquals(tableDifferences(TABLE, LISTED.table, (r) => markers.get(r)!), []);
});

Deno.test("createTableSync() with verify changes nothing when the kernel holds what was applied", async () => {
  const nft = fakeNft();
  const tables = createTableSync(nft.runner);
  await tables.apply(TABLE, { verify: false });
  nft.kernel = LISTED;
  assertEquals(await tables.apply(TABLE, { verify: true }), {
    changed: false,
    whole: false,
    differences: [],
  });
  assertEquals(nft.reads, 1);
  assertEquals(nft.applied.length, 1);
  // Interval elements split or joined otherwise, IPv6 written otherwise: the same table.
  nft.kernel = listedWith(({ sets }) => {
    sets.set("ir_a_4", {
      ...sets.get("ir_a_4")!,
      elements: new Map(
        ["10.0.0.0-10.0.1.255", "10.0.2.0/23", "10.1.0.0-10.1.0.20", "10.9.9.9", "192.168.0.0/16"]
          .map((e) => [e, e]),
      ),
    });
    sets.set("i_a_6", {
      ...sets.get("i_a_6")!,
      elements: new Map([["fd00:10:244:2:0:0:0:5", "fd00:10:244:2:0:0:0:5"]]),
    });
  });
  assertEquals((await tables.apply(TABLE, { verify: true })).changed, false);
  // The dynamic sets' elements are the kernel's (seen flows) and the agent's (cut connections):
  // however many there are, they are no difference, and no repair touches them.
  nft.kernel = listedWith(({ sets }) => {
    for (const name of ["flowlog_seen4", "strict_cut4"]) {
      const el = "10.0.0.9 . 10.0.0.8 . tcp . 40000 . 80";
      sets.set(name, { ...sets.get(name)!, elements: new Map([[el, el]]) });
    }
  });
  assertEquals((await tables.apply(TABLE, { verify: true })).changed, false);
  assertEquals(nft.applied.length, 1);
});

Deno.test("createTableSync() with verify reloads whole when someone removed an element, a chain or a rule", async () => {
  const cases: [string, KernelTable | undefined, string[]][] = [
    ["element", {
      ...LISTED,
      table: withElements(LISTED.table, "ingress4", (e) => e.delete("10.244.1.3")),
    }, ["map ingress4: 1 element missing (10.244.1.3 : jump ing_a)"]],
    ["chain", listedWith(({ chains }) => chains.delete("postrouting")), [
      "chain postrouting is missing",
    ]],
    [
      "rule",
      listedWith(({ chains }) => {
        const fwd = LISTED.table.chains.get("forward")!;
        chains.set("forward", { ...fwd, rules: fwd.rules.slice(1) });
      }),
      ["chain forward has 6 rules (6 of ours), not its 7"],
    ],
    [
      "foreign rule",
      listedWith(({ chains }) => {
        const fwd = LISTED.table.chains.get("forward")!;
        chains.set("forward", { ...fwd, rules: ["", ...fwd.rules] });
      }),
      ["chain forward has 8 rules (7 of ours), not its 7"],
    ],
    ["added element", {
      ...LISTED,
      table: withElements(LISTED.table, "i_a_4", (e) => e.set("10.9.9.9", "10.9.9.9")),
    }, ["set i_a_4: 1 element not ours (10.9.9.9)"]],
    ["interval", {
      ...LISTED,
      table: withElements(LISTED.table, "nomasq4", (e) => e.delete("10.96.0.0/12")),
    }, [
      "set nomasq4 covers 10.244.0.0/16, not 10.96.0.0/12, 10.244.0.0/16",
    ]],
    ["set", listedWith(({ sets }) => sets.delete("self6")), ["set self6 is missing"]],
    [
      "hook",
      listedWith(({ chains }) => {
        const fwd = LISTED.table.chains.get("forward")!;
        chains.set("forward", {
          ...fwd,
          decl: "type filter hook forward priority 10; policy accept;",
        });
      }),
      ['chain forward is hooked as "type filter hook forward priority 10; policy accept;"'],
    ],
    ["limit", listedWith(({ limits }) => limits.delete("flowlog")), [
      "limit flowlog is missing",
    ]],
    [
      "limit rate",
      listedWith(({ limits }) => limits.set("flowlog", "rate 5/second burst 5 packets")),
      [
        'limit flowlog is "rate 5/second burst 5 packets", not "rate 100/second burst 100 packets"',
      ],
    ],
    ["dynamic set", listedWith(({ sets }) => sets.delete("strict_cut4")), [
      "set strict_cut4 is missing",
    ]],
    [
      "dynamic set declared otherwise",
      listedWith(({ sets }) =>
        sets.set("flowlog_seen4", {
          ...sets.get("flowlog_seen4")!,
          dynamic: { timeout: 60, size: 65536 },
        })
      ),
      ["set flowlog_seen4 is declared timeout 60s, size 65536, not timeout 130s, size 65536"],
    ],
    ["table", undefined, ["table inet mycni is missing"]],
  ];
  for (const [what, kernel, differences] of cases) {
    const nft = fakeNft();
    const tables = createTableSync(nft.runner);
    await tables.apply(TABLE, { verify: false });
    nft.kernel = kernel;
    const done = await tables.apply(TABLE, { verify: true });
    assertEquals(done, { changed: true, whole: true, differences, path: "nft" }, what);
    assert(isWhole(nft.applied[1]), what);
  }
});

Deno.test("createTableSync() carries the counters across whole reloads", async () => {
  const nft = fakeNft();
  const tables = createTableSync(nft.runner);
  nft.counters.set("ingress_dropped", 5); // a table the agent before this one left
  await tables.apply(TABLE, { verify: false });
  nft.counters.set("ingress_dropped", 2); // the reload zeroed the kernel's: 2 since
  assertEquals((await tables.counters()).get("ingress_dropped"), 7);
  // A repair reloads whole: the counts the listing held are carried too.
  nft.kernel = listedWith(({ chains }) => chains.delete("ing_a"));
  nft.kernel = {
    ...nft.kernel,
    counters: new Map([["ingress_dropped", 3], ["egress_dropped", 1]]),
  };
  assertEquals((await tables.apply(TABLE, { verify: true })).whole, true);
  nft.counters = new Map([["ingress_dropped", 1]]);
  const counts = await tables.counters();
  assertEquals(counts.get("ingress_dropped"), 5 + 3 + 1);
  assertEquals(counts.get("egress_dropped"), 1);
});

Deno.test("createTableSync() says when the counters could not be read before a whole reload", async () => {
  const nft = fakeNft();
  const tables = createTableSync(nft.runner);
  nft.failCounters = "nft: counters exploded";
  const first = await tables.apply(TABLE, { verify: false });
  assertEquals(first.changed, true);
  assertEquals(first.countersLost, "nft: counters exploded");
  // Reading the table back fails: it is loaded whole, and that is said twice over.
  nft.failRead = "nft: cannot list";
  const again = await tables.apply(TABLE, { verify: true });
  assertEquals(again, {
    changed: true,
    whole: true,
    differences: ["cannot read it: nft: cannot list"],
    countersLost: "nft: cannot list",
    path: "nft",
  });
});

Deno.test("createTableSync() forgets what it applied when nft refuses a transaction", async () => {
  const nft = fakeNft();
  const tables = createTableSync(nft.runner);
  await tables.apply(TABLE, { verify: false });
  const more = withElements(TABLE, "i_a_4", (e) => e.set("10.244.2.7", "10.244.2.7"));
  nft.failApply = "Error: Could not process rule: No such file or directory";
  await rejects(tables.apply(more, { verify: false }), /Could not process rule/);
  nft.failApply = "";
  // The kernel kept the old table, which is not what memory said it would be: whole again.
  assertEquals((await tables.apply(more, { verify: false })).whole, true);
  assert(isWhole(nft.applied[1]));
});

/** fakeNft() that also writes element batches (as NFT_RUNNER does over nfnetlink). */
function fakeNftWithElements() {
  const nft = fakeNft();
  const batches: ElementChange[][] = [];
  let refuse = "";
  const runner: NftRunner = {
    ...nft.runner,
    elements(changes) {
      if (refuse) throw new Error(refuse);
      batches.push([...changes]);
    },
  };
  return { nft, batches, runner, refuse: (why: string) => refuse = why };
}

Deno.test("createTableSync() sends an element-only difference as one element batch, no nft", async () => {
  const { nft, batches, runner } = fakeNftWithElements();
  const tables = createTableSync(runner);
  assertEquals((await tables.apply(TABLE, { verify: false })).path, "nft", "the first is whole");
  const more = withElements(TABLE, "ingress4", (e) => {
    e.set("10.244.1.4", "10.244.1.4 : jump ing_a");
    e.set("10.244.1.3", "10.244.1.3 : jump ing_b");
  });
  assertEquals(await tables.apply(more, { verify: false }), {
    changed: true,
    whole: false,
    differences: [],
    path: "elements",
  });
  assertEquals(nft.applied.length, 1, "an element change ran nft");
  const MAP = "ipv4_addr : verdict";
  assertEquals(batches, [[
    { op: "delete", set: "ingress4", type: MAP, element: "10.244.1.3 : jump ing_a" },
    { op: "add", set: "ingress4", type: MAP, element: "10.244.1.3 : jump ing_b" },
    { op: "add", set: "ingress4", type: MAP, element: "10.244.1.4 : jump ing_a" },
  ]]);
  // A chain's rules changed as well: that is nft's, in one transaction with the elements.
  const chains = new Map(more.chains);
  chains.set("ing_a", { rules: ["ip saddr 10.0.0.1 accept", "drop"] });
  const both = withElements({ ...more, chains }, "i_a_4", (e) => e.delete("10.244.2.5"));
  assertEquals((await tables.apply(both, { verify: false })).path, "nft");
  assertEquals(batches.length, 1);
  assert(nft.applied[1].includes("delete element inet mycni i_a_4 { 10.244.2.5 }"));
  assert(nft.applied[1].includes("flush chain inet mycni ing_a"));
  // An interval set's elements are nft's too (re-filled whole).
  const wide = withElements(both, "ir_a_4", (e) => e.set("172.16.0.0/12", "172.16.0.0/12"));
  assertEquals((await tables.apply(wide, { verify: false })).path, "nft");
  assertEquals(nft.reads, 0);
});

Deno.test("createTableSync() forgets what it applied when the kernel refuses an element batch", async () => {
  const { nft, batches, runner, refuse } = fakeNftWithElements();
  const tables = createTableSync(runner);
  await tables.apply(TABLE, { verify: false });
  const more = withElements(TABLE, "i_a_4", (e) => e.delete("10.244.2.6"));
  refuse("delete element inet mycni i_a_4 { 10.244.2.6 }: No such file or directory");
  await rejects(tables.apply(more, { verify: false }), /No such file or directory/);
  refuse("");
  // Someone had removed it: memory is not what the kernel holds, so the next load is whole.
  const done = await tables.apply(more, { verify: false });
  assertEquals([done.whole, done.path], [true, "nft"]);
  assert(isWhole(nft.applied[1]));
  assertEquals(batches.length, 0);
});

Deno.test("createTableSync() verify compares elements an element batch wrote, and repairs", async () => {
  const { nft, runner } = fakeNftWithElements();
  const tables = createTableSync(runner);
  await tables.apply(TABLE, { verify: false });
  const more = withElements(TABLE, "i_a_4", (e) => e.set("10.244.2.7", "10.244.2.7"));
  assertEquals((await tables.apply(more, { verify: false })).path, "elements");
  nft.kernel = LISTED; // the element never arrived (or someone deleted it)
  const done = await tables.apply(more, { verify: true });
  assertEquals(done, {
    changed: true,
    whole: true,
    differences: ["set i_a_4: 1 element missing (10.244.2.7)"],
    path: "nft",
  });
  assert(isWhole(nft.applied[1]));
});

Deno.test("TableSync.patch() edits the applied table's elements; the next apply starts from it", async () => {
  const { nft, batches, runner } = fakeNftWithElements();
  const tables = createTableSync(runner);
  assertEquals(await tables.patch(() => []), {
    applied: false,
    reason: "no table applied yet",
    changes: 0,
  });
  await tables.apply(TABLE, { verify: false });
  let seen: NftTable | undefined;
  const close = [
    { op: "delete", set: "i_a_4", type: "ipv4_addr", element: "10.244.2.5" },
    { op: "add", set: "ingress4", type: "ipv4_addr : verdict", element: "10.244.1.9 : jump ing_a" },
  ] as const;
  assertEquals(await tables.patch((t) => (seen = t, [...close])), { applied: true, changes: 2 });
  assert(seen === TABLE, "patch() was not shown the table last applied");
  assertEquals(batches, [[...close]]);
  assertEquals(await tables.patch(() => undefined), {
    applied: false,
    reason: "not expressible as elements",
    changes: 0,
  });
  // Back to TABLE: the patch is undone as elements, against what the kernel now holds.
  assertEquals((await tables.apply(TABLE, { verify: false })).path, "elements");
  assertEquals(batches[1], [
    { op: "add", set: "i_a_4", type: "ipv4_addr", element: "10.244.2.5" },
    {
      op: "delete",
      set: "ingress4",
      type: "ipv4_addr : verdict",
      element: "10.244.1.9 : jump ing_a",
    },
  ]);
  // And the periodic check compares the kernel with the patched table.
  await tables.patch(() => [...close]);
  nft.kernel = LISTED;
  const done = await tables.apply(TABLE, { verify: true });
  assertEquals(done.differences.length > 0 && done.whole, true);
});

Deno.test("TableSync.apply() with a stale table writes nothing; writes never interleave", async () => {
  const { nft, batches, runner } = fakeNftWithElements();
  let release = () => {};
  const slow: NftRunner = {
    ...runner,
    apply: (text) =>
      new Promise<void>((resolve) => release = () => (nft.applied.push(text), resolve())),
  };
  const tables = createTableSync(slow);
  const first = tables.apply(TABLE, { verify: false });
  const order: string[] = [];
  const patched = tables.patch((t) => {
    order.push(t === TABLE ? "patch after the apply" : "patch during the apply");
    return [{ op: "delete", set: "i_a_4", type: "ipv4_addr", element: "10.244.2.5" }];
  });
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(order, [], "the patch ran while the apply was writing");
  release();
  await first;
  assertEquals((await patched).applied, true);
  assertEquals(order, ["patch after the apply"]);
  const more = withElements(TABLE, "i_a_6", (e) => e.set("fd00:10:244:2::9", "fd00:10:244:2::9"));
  assertEquals(await tables.apply(more, { verify: false, stale: () => true }), {
    changed: false,
    whole: false,
    differences: [],
    superseded: true,
  });
  assertEquals(batches.length, 1);
  assertEquals(nft.applied.length, 1);
});
