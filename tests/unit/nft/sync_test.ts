import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { type KernelTable, parseTableJson } from "../../../lib/nft/cli.ts";
import type { NftSet, NftTable } from "../../../lib/nft/ruleset.ts";
import { createTableSync, type NftRunner, tableDifferences } from "../../../lib/nft/sync.ts";
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
    assertEquals(done, { changed: true, whole: true, differences }, what);
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
