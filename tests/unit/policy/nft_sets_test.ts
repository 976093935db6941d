// The sets of the policy table made by changing the previous object's set (lib/policy/
// nft_sets.ts, as the compiler records changes in lib/policy/plan_changes.ts) against the same
// sets made whole: on random peer sets of a few hundred to a few thousand addresses, with pods
// beside and inside wide ranges, changed step after step (so changes pile up on changes, past the
// point where they are folded into a plain map, and past the point where the set is made whole).
import { type Family, formatIp } from "../../../lib/ip/cidr.ts";
import { type IpRange, mergeRanges, withAddress, withoutAddress } from "../../../lib/ip/range.ts";
import { createSetContents, type PeerPart } from "../../../lib/policy/nft_sets.ts";
import type { AddressSet } from "../../../lib/policy/plan.ts";
import {
  type NamedEndpoint,
  type NamedPort,
  recordPortChange,
  recordSetChange,
} from "../../../lib/policy/plan_changes.ts";
import { rangesContain } from "../../../lib/ip/range.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { Rng } from "../../harness/policy_world.ts";

const BASE: Record<Family, bigint> = { 4: 0x0af40000n, 6: 0xfd000010024400000000000000000000n };
const PARTS: readonly PeerPart[] = ["addresses", "ranges"];

/** A random peer set: pod addresses in a window, and now and then a wide block inside it. */
function randomSet(rng: Rng): AddressSet {
  const make = (f: Family) => {
    const out: IpRange[] = [];
    for (let n = rng.int(0, 600); n > 0; n--) {
      const v = BASE[f] + BigInt(rng.int(0, 4000));
      out.push({ start: v, end: v });
    }
    if (rng.chance(0.5)) {
      const start = BASE[f] + BigInt(rng.int(0, 3000));
      out.push({ start, end: start + BigInt(rng.int(200, 900)) });
    }
    return mergeRanges(out);
  };
  return { v4: make(4), v6: make(6) };
}

/** `set` with some addresses flipped, most of them beside ranges; recorded as a change. */
function changed(rng: Rng, set: AddressSet): AddressSet {
  const next = { v4: [...set.v4], v6: [...set.v6] };
  const added = [], removed = [];
  const flips = rng.pick([1, 2, 5, 40, 1500]);
  for (let n = 0; n < flips; n++) {
    const family: Family = rng.chance(0.5) ? 4 : 6;
    const key = family === 4 ? "v4" : "v6";
    const ranges = next[key];
    const near = ranges.length > 0 && rng.chance(0.7)
      ? rng.pick(ranges)[rng.chance(0.5) ? "start" : "end"] + BigInt(rng.int(-1, 1))
      : BASE[family] + BigInt(rng.int(0, 4000));
    if ([...added, ...removed].some((a) => a.family === family && a.value === near)) continue;
    if (rangesContain(ranges, near)) {
      next[key] = withoutAddress(ranges, near);
      removed.push({ family, value: near });
    } else {
      next[key] = withAddress(ranges, near);
      added.push({ family, value: near });
    }
  }
  recordSetChange(next, { prev: set, added, removed });
  return next;
}

Deno.test("createSetContents() makes a changed peer set's parts equal to the same parts made whole", () => {
  const rng = new Rng(Number(Deno.env.get("SETS_SEED") ?? 7));
  for (let run = 0; run < 12; run++) {
    const kept = createSetContents();
    let set = randomSet(rng);
    for (const f of [4, 6] as const) for (const part of PARTS) kept.peers(set, f, part);
    for (let step = 0; step < 25; step++) {
      set = changed(rng, set);
      const whole = createSetContents();
      for (const f of [4, 6] as const) {
        for (const part of PARTS) {
          const got = kept.peers(set, f, part), want = whole.peers(set, f, part);
          const where = `run ${run}, step ${step}, family ${f}, ${part}`;
          assertEquals(got?.key, want?.key, where);
          if (got === null || want === null) continue;
          assertEquals(sorted(got.set.elements), sorted(want.set.elements), where);
          assertEquals(got.set.elements.size, want.set.elements.size, where);
          for (const [k, v] of want.set.elements) assert(got.set.elements.get(k) === v, where);
          assert(kept.same(got, want), where);
        }
      }
    }
  }
});

Deno.test("createSetContents() makes a changed named port's destination sets, numbers and coverage equal to those made whole", () => {
  const rng = new Rng(11);
  const ips = Array.from(
    { length: 3000 },
    (_, i) => formatIp({ family: 4, value: BASE[4] + BigInt(i) }),
  );
  const peers: AddressSet = {
    v4: [{ start: BASE[4], end: BASE[4] + 2999n }],
    v6: [],
  };
  const kept = createSetContents();
  let named: NamedPort = {
    kind: "named",
    protocol: "TCP",
    name: "http",
    endpoints: ips.map((ip) => ({ ip, port: 80 })),
  };
  kept.endpoints(named, 4, 80);
  kept.covers(peers, named, 80, 4);
  for (let step = 0; step < 40; step++) {
    const now = new Map(named.endpoints.map((e) => [`${e.ip}/${e.port}`, e]));
    const added: NamedEndpoint[] = [], removed: NamedEndpoint[] = [];
    const picked = new Set<string>(); // a change says each endpoint once, as the compiler does
    for (let n = rng.pick([1, 3, 200]); n > 0; n--) {
      const e = { ip: rng.pick(ips), port: rng.pick([80, 80, 8080]) };
      const key = `${e.ip}/${e.port}`;
      if (picked.has(key)) continue;
      picked.add(key);
      if (now.has(key)) removed.push(now.get(key)!), now.delete(key);
      else added.push(e), now.set(key, e);
    }
    const next: NamedPort = { ...named, endpoints: [...now.values()] };
    recordPortChange(next, { prev: named, added, removed });
    named = next;
    const whole = createSetContents();
    for (const port of [80, 8080]) {
      const got = kept.endpoints(named, 4, port), want = whole.endpoints(named, 4, port);
      assertEquals(got?.key, want?.key, `step ${step}, port ${port}`);
      if (got && want) assertEquals(sorted(got.set.elements), sorted(want.set.elements));
      assertEquals(kept.covers(peers, named, port, 4), whole.covers(peers, named, port, 4));
    }
    assertEquals(kept.portNumbers(named), whole.portNumbers(named));
  }
});

function sorted(elements: ReadonlyMap<string, string>): [string, string][] {
  return [...elements].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
