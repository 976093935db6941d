// The nftables table model against the real nft and kernel: every difference renderTableChange()
// emits loads, and leaves exactly what loading the new table whole would. In a namespace of the
// test's own.
import { renderFullTable, renderTableChange } from "../../lib/nft/ruleset.ts";
import type { NftSet, NftTable } from "../../lib/nft/ruleset.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";
import { listTable } from "../harness/nft.ts";

const FWD = "type filter hook forward priority filter; policy accept;";

/** A table whose pods, peer sets and chains come from a seed: enough variety for a walk. */
function randomTable(rand: () => number): NftTable {
  const pick = (n: number) => Math.floor(rand() * n);
  const pods = Array.from({ length: pick(12) }, () => `10.244.1.${2 + pick(40)}`);
  const peers = Array.from({ length: pick(30) }, () => `10.244.${pick(3)}.${2 + pick(60)}`);
  const chainNames = ["ing_a", "ing_b", "ing_c"].filter(() => rand() < 0.7);
  if (chainNames.length === 0) chainNames.push("ing_a");
  const sets = new Map<string, NftSet>();
  const peerSet = `i_p${pick(3)}_4`;
  sets.set(peerSet, {
    kind: "set",
    type: "ipv4_addr",
    interval: true,
    elements: new Map(mergedRanges(peers).map((r) => [r, r])),
  });
  sets.set("ingress4", {
    kind: "map",
    type: "ipv4_addr : verdict",
    interval: false,
    elements: new Map(
      pods.map((ip) => [ip, `${ip} : jump ${chainNames[pick(chainNames.length)]}`]),
    ),
  });
  sets.set("self4", {
    kind: "set",
    type: "ipv4_addr . ipv4_addr",
    interval: false,
    elements: new Map(pods.map((ip) => [`${ip} . ${ip}`, `${ip} . ${ip}`])),
  });
  const chains = new Map<string, { decl?: string; rules: string[] }>();
  for (const c of chainNames) {
    chains.set(c, {
      rules: [
        `ip saddr @${peerSet} meta l4proto tcp th dport ${80 + pick(3)} accept`,
        "counter name dropped drop",
      ],
    });
  }
  chains.set("forward", {
    decl: FWD,
    rules: ["ct state established,related accept", "ip daddr vmap @ingress4"],
  });
  return { name: "inet mctest", counters: ["dropped"], sets, chains };
}

/** Addresses as nft interval elements: adjacent ones joined, as the policy compiler does. */
function mergedRanges(ips: string[]): string[] {
  const nums = [...new Set(ips.map((ip) => ip.split(".").reduce((a, b) => a * 256 + Number(b), 0)))]
    .sort((a, b) => a - b);
  const text = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
  const out: string[] = [];
  for (let i = 0; i < nums.length;) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j] + 1) j++;
    out.push(i === j ? text(nums[i]) : `${text(nums[i])}-${text(nums[j])}`);
    i = j + 1;
  }
  return out;
}

/** The test table as tests compare it. */
function listed(ns: TempNetns): Promise<string> {
  return listTable(ns.path, "inet mctest");
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5 >>> 0) / 2 ** 32);
}

Deno.test({
  name: "renderTableChange() walks 40 random tables and each step equals loading the table whole",
  ignore: !canRunPrivileged,
}, async () => {
  await using diffed = await tempNetns("mcnft");
  await using whole = await tempNetns("mcnft");
  const rand = seeded(20261202);
  let prev = randomTable(rand);
  await run(diffed.exec(["nft", "-f", "-"]), { stdin: renderFullTable(prev) });
  for (let step = 0; step < 40; step++) {
    const next = randomTable(rand);
    const change = renderTableChange(prev, next);
    const applied = await runOutput(diffed.exec(["nft", "-f", "-"]), { stdin: change });
    assert(
      applied.code === 0,
      `step ${step}: nft refused the change: ${applied.stderr}\n${change}`,
    );
    await run(whole.exec(["nft", "-f", "-"]), { stdin: renderFullTable(next) });
    assertEquals(await listed(diffed), await listed(whole), `step ${step}:\n${change}`);
    prev = next;
  }
});

/**
 * Commands nft's parser accepts and the kernel refuses, each with what makes the kernel say no:
 * they reach the kernel inside the transaction, after (or among) the changes staged before them.
 */
const REFUSED: Record<string, string> = {
  "a rule jumping to a chain that is not there (ENOENT)":
    "add rule inet mctest forward jump mctest_no_such_chain",
  "a map element jumping to a chain that is not there (ENOENT)":
    "add element inet mctest ingress4 { 10.244.9.9 : jump mctest_no_such_chain }",
  "an element created twice (EEXIST)":
    "add element inet mctest self4 { 10.244.9.9 . 10.244.9.9 }\n" +
    "create element inet mctest self4 { 10.244.9.9 . 10.244.9.9 }",
};

Deno.test({
  name: "a transaction the kernel refuses half-way leaves the old table whole",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcnft");
  await using scratch = await tempNetns("mcnft");
  const rand = seeded(7);
  const t = randomTable(rand);
  const next = randomTable(rand);
  await run(ns.exec(["nft", "-f", "-"]), { stdin: renderFullTable(t) });
  const before = await listed(ns);
  // Without the refused command the transaction changes the table: loaded alone, it would.
  await run(scratch.exec(["nft", "-f", "-"]), { stdin: renderFullTable(next) });
  assert(await listed(scratch) !== before, "the two random tables are the same");

  const change = renderTableChange(t, next).trimEnd().split("\n");
  for (const [what, refused] of Object.entries(REFUSED)) {
    const forms = {
      // One command per line: the refused one goes in the middle, half the change staged before it.
      "the difference": [
        ...change.slice(0, change.length >> 1),
        refused,
        ...change.slice(change.length >> 1),
      ].join("\n") + "\n",
      // A whole table is one block: the refused command follows it (table deleted and rebuilt).
      "the whole table": renderFullTable(next) + refused + "\n",
    };
    for (const [form, text] of Object.entries(forms)) {
      const out = await runOutput(ns.exec(["nft", "-f", "-"]), { stdin: text });
      assert(out.code !== 0, `nft took ${form} with ${what}:\n${text}`);
      // The kernel's word (a netlink error), not the parser's.
      assertMatch(out.stderr, /Could not process rule: (No such file or directory|File exists)/);
      assertEquals(await listed(ns), before, `${form} with ${what} changed the table`);
    }
  }
});
