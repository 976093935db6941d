// Strict mode's runner against a fake kernel: after each applied policy it lists conntrack by
// the addresses the change may have narrowed, judges every entry with explain over the new
// state, holds the denied UDP connections' answers, then deletes the denied entries; changes
// that come while a cut runs are one more cut over the newest state; a failure is retried.
import type { ConntrackEntry } from "../../../lib/net/conntrack.ts";
import { createStrictCutter, type StrictKernel } from "../../../lib/node/strict_cut.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { e2eCluster, policy } from "../policy/fixtures.ts";
import { fakeLog } from "./fake_log.ts";

// x/a 10.0.1.1 (n1), y/b 10.0.2.2 (n2), z/c 10.0.3.3.
const XA = "10.0.1.1", YB = "10.0.2.2", ZC = "10.0.3.3";

function entry(proto: 6 | 17, src: string, dst: string, dport: number, sport = 40000) {
  return {
    family: 4 as const,
    zone: 0,
    orig: { src, dst, proto, sport, dport },
    reply: { src: dst, dst: src, proto, sport: dport, dport: sport },
  };
}

function fakeKernel(entries: ConntrackEntry[]) {
  const k = {
    entries,
    listed: [] as string[][],
    held: [] as string[],
    removed: [] as ConntrackEntry[],
    failList: 0,
    kernel: undefined as unknown as StrictKernel,
  };
  k.kernel = {
    list(addresses) {
      k.listed.push([...addresses]);
      if (k.failList-- > 0) throw new Error("netlink: no");
      const want = new Set(addresses);
      return k.entries.filter((e) => [e.orig.src, e.orig.dst].some((a) => want.has(a)));
    },
    remove(list) {
      k.removed.push(...list);
      k.entries = k.entries.filter((e) => !list.includes(e));
      return list.length;
    },
    hold(elements) {
      k.held.push(...elements.map((e) => `${e.set} ${e.element}`));
      return Promise.resolve();
    },
  };
  return k;
}

const onlyXa = policy("y/only-xa", {
  podSelector: { matchLabels: { pod: "b" } },
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "x" } } }] }],
});
const applied = (state: PolicyState) => ({ state, plan: compilePolicies(state, { node: "n2" }) });

Deno.test("createStrictCutter() cuts what the new state denies, holds UDP's answers first, keeps the rest", async () => {
  const k = fakeKernel([
    entry(6, XA, YB, 80), // still allowed
    entry(6, ZC, YB, 80), // now denied
    entry(17, ZC, YB, 53), // now denied, UDP
    entry(6, YB, ZC, 80), // y/b's own connection: its answers are replies, never cut
  ]);
  const log = fakeLog();
  const strict = createStrictCutter(log, k.kernel);
  strict.applied(applied(e2eCluster()));
  await strict.idle();
  assertEquals(k.listed, [], "nothing isolated: nothing to list");
  strict.applied(applied(e2eCluster([onlyXa])));
  await strict.idle();
  assertEquals(k.listed, [[YB, "fd00::2:2"]]);
  assertEquals(k.removed.map((e) => `${e.orig.src} ${e.orig.proto}`), [`${ZC} 6`, `${ZC} 17`]);
  assertEquals(k.held, [`strict_cut4 ${YB} . ${ZC} . udp . 53 . 40000`]);
  assertEquals(strict.counters.cut, 2);
  assertEquals(log.lines("connections cut")[0].count, 2);
  // The same plan again narrows nothing: no dump at all.
  strict.applied(applied(e2eCluster([onlyXa])));
  await strict.idle();
  assertEquals(k.listed.length, 1);
});

Deno.test("createStrictCutter() runs one cut at a time over the newest state, and retries a failed one", async () => {
  const k = fakeKernel([entry(6, XA, YB, 80), entry(6, ZC, YB, 80)]);
  k.failList = 1;
  const log = fakeLog();
  const strict = createStrictCutter(log, k.kernel);
  strict.applied(applied(e2eCluster([onlyXa])));
  await strict.idle();
  assertEquals(k.removed.length, 0);
  assertEquals(strict.counters.failures, 1);
  assert(log.lines("cannot cut the connections a policy change denies: retrying").length === 1);
  // A deny-all arrives before the retry: the retry cuts both, judged by the newest state.
  strict.applied(applied(e2eCluster([policy("y/deny", { podSelector: {} })])));
  await new Promise((r) => setTimeout(r, 1200));
  await strict.idle();
  assertEquals(k.removed.map((e) => e.orig.src).sort(), [XA, ZC].sort());
  assertEquals(k.listed.length, 2);
});
