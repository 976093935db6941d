// Layered set elements (lib/nft/layered_elements.ts) against the plain Map they stand for: random
// changes layered step after step (on a layer, past the fold into a plain Map), then every read a
// table consumer makes, the delta read off the layers, and the two table differences
// (renderTableChange's text, elementChanges' batch) with layered sets against plain ones.
import { elementChanges } from "../../../lib/nft/element_diff.ts";
import { elementDelta, LayeredElements, layerElements } from "../../../lib/nft/layered_elements.ts";
import { type NftSet, type NftTable, renderTableChange } from "../../../lib/nft/ruleset.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { Rng } from "../../harness/policy_world.ts";

const sorted = <T>(xs: Iterable<T>) => [...xs].sort() as T[];

function table(name: string, elements: ReadonlyMap<string, string>, interval = false): NftTable {
  const set: NftSet = { kind: "set", type: "ipv4_addr", interval, elements };
  return { name: "inet mycni", counters: [], sets: new Map([[name, set]]), chains: new Map() };
}

/** A change of `plain`: some keys gone, some added (new ones, and some already there). */
function randomChange(rng: Rng, plain: Map<string, string>) {
  const keys = [...plain.keys()];
  const gone = new Set<string>();
  const added: [string, string][] = [];
  for (let n = rng.pick([1, 2, 5, 30, 200]); n > 0; n--) {
    if (keys.length > 0 && rng.chance(0.5)) gone.add(rng.pick(keys));
    else {
      const ip = `10.0.${rng.int(0, 15)}.${rng.int(0, 255)}`;
      if (!gone.has(ip)) added.push([ip, ip]);
    }
  }
  return { gone, added };
}

Deno.test("layerElements() reads as the Map it stands for, change after change", () => {
  const rng = new Rng(3);
  let folded = 0, kept = 0;
  for (let run = 0; run < 20; run++) {
    let plain = new Map<string, string>();
    for (let i = rng.int(0, 1500); i > 0; i--) {
      const ip = `10.0.${rng.int(0, 15)}.${rng.int(0, 255)}`;
      plain.set(ip, ip);
    }
    let layered: ReadonlyMap<string, string> = new Map(plain);
    for (let step = 0; step < 30; step++) {
      const { gone, added } = randomChange(rng, plain);
      const before = layered, beforePlain = plain;
      layered = layerElements(before, gone, added);
      plain = new Map(plain);
      for (const k of gone) plain.delete(k);
      for (const [k, v] of added) plain.set(k, v);
      if (layered instanceof LayeredElements) kept++;
      else folded++;
      const where = `run ${run}, step ${step}`;
      assertEquals(layered.size, plain.size, where);
      assertEquals(sorted(layered.keys()), sorted(plain.keys()), where);
      assertEquals(sorted(layered.values()), sorted(plain.values()), where);
      assertEquals(
        sorted([...layered].map(([k, v]) => `${k}=${v}`)),
        sorted([...plain].map(([k, v]) => `${k}=${v}`)),
        where,
      );
      const seen: string[] = [];
      layered.forEach((v, k) => seen.push(`${k}=${v}`));
      assertEquals(seen.length, plain.size, where);
      for (const probe of ["10.0.0.1", ...gone, ...added.map(([k]) => k)]) {
        assertEquals(layered.get(probe), plain.get(probe), `${where}: get ${probe}`);
        assertEquals(layered.has(probe), plain.has(probe), `${where}: has ${probe}`);
      }
      // The delta read off the layers is exactly what a comparison of every element finds.
      const delta = elementDelta(before, layered);
      if (delta !== undefined) {
        const wantGone = [...beforePlain].filter(([k, v]) => plain.get(k) !== v);
        const wantAdded = [...plain].filter(([k, v]) => beforePlain.get(k) !== v);
        assertEquals(sorted(delta.gone.map(([k]) => k)), sorted(wantGone.map(([k]) => k)), where);
        assertEquals(sorted(delta.added.map(([k]) => k)), sorted(wantAdded.map(([k]) => k)), where);
      } else {
        assert(!(layered instanceof LayeredElements), `${where}: a layer with no delta`);
      }
    }
  }
  assert(kept > 0 && folded > 0, `layered ${kept}, folded ${folded}: both must have run`);
});

Deno.test("elementDelta() answers for layers on one base, and only for them", () => {
  const base = new Map([["10.0.0.1", "10.0.0.1"], ["10.0.0.2", "10.0.0.2"]]);
  const a = layerElements(base, new Set(["10.0.0.1"]), [["10.0.0.3", "10.0.0.3"]]);
  const b = layerElements(a, new Set(["10.0.0.3"]), [["10.0.0.4", "10.0.0.4"]]);
  assert(a instanceof LayeredElements && b instanceof LayeredElements && b.base === base);
  assertEquals(elementDelta(base, a), {
    gone: [["10.0.0.1", "10.0.0.1"]],
    added: [["10.0.0.3", "10.0.0.3"]],
  });
  // Two layers on one base, and a layer against its base backwards.
  assertEquals(elementDelta(a, b), {
    gone: [["10.0.0.3", "10.0.0.3"]],
    added: [["10.0.0.4", "10.0.0.4"]],
  });
  assertEquals(elementDelta(a, base), {
    gone: [["10.0.0.3", "10.0.0.3"]],
    added: [["10.0.0.1", "10.0.0.1"]],
  });
  assertEquals(elementDelta(base, base), { gone: [], added: [] });
  assertEquals(elementDelta(base, new Map(base)), undefined);
  assertEquals(elementDelta(new Map(), a), undefined);
});

Deno.test("renderTableChange() and elementChanges() give the same difference for layered sets as for plain ones", () => {
  const rng = new Rng(5);
  for (let run = 0; run < 30; run++) {
    const plain = new Map<string, string>();
    for (let i = rng.int(1, 400); i > 0; i--) {
      const ip = `10.0.${rng.int(0, 3)}.${rng.int(0, 255)}`;
      plain.set(ip, ip);
    }
    const { gone, added } = randomChange(rng, plain);
    const layered = layerElements(plain, gone, added);
    const flat = new Map(layered);
    for (const interval of [false, true]) {
      const prev = table("peers", plain, interval);
      const lines = (t: NftTable) =>
        sorted(renderTableChange(prev, t).split(/[\n{},]/).map((x) => x.trim()));
      assertEquals(lines(table("peers", layered, interval)), lines(table("peers", flat, interval)));
      const batch = (t: NftTable) =>
        sorted((elementChanges(prev, t) ?? []).map((c) => `${c.op} ${c.element}`));
      if (!interval) {
        assertEquals(batch(table("peers", layered)), batch(table("peers", flat)));
      }
    }
  }
});
