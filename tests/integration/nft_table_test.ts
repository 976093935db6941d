// The nftables table model against the real nft and kernel: every difference renderTableChange()
// emits loads, and leaves exactly what loading the new table whole would. In a namespace of the
// test's own.
import { renderFullTable, renderTableChange } from "../../lib/nft/ruleset.ts";
import type { NftSet, NftTable } from "../../lib/nft/ruleset.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
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

Deno.test({
  name: "a refused transaction leaves the old table whole",
  ignore: !canRunPrivileged,
}, async () => {
  await using ns = await tempNetns("mcnft");
  const t = randomTable(seeded(7));
  await run(ns.exec(["nft", "-f", "-"]), { stdin: renderFullTable(t) });
  const before = await listed(ns);
  const broken = renderFullTable(t).replace("ct state established,related accept", "no such rule");
  const out = await runOutput(ns.exec(["nft", "-f", "-"]), { stdin: broken });
  assert(out.code !== 0, "nft accepted a broken table");
  assertEquals(await listed(ns), before);
});
