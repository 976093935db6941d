// Whether two tables differ in set and map elements only, and if so how: the changes a pod
// that starts or stops, a label change or an address binding change make, which go to the
// kernel as one nfnetlink batch (lib/nft/elements.ts) instead of `nft -f`. Pure.
import { elementTypeSupported } from "./element_codec.ts";
import type { ElementChange } from "./element_codec.ts";
import { elementDelta } from "./layered_elements.ts";
import type { NftSet, NftTable } from "./ruleset.ts";

/**
 * The element changes turning table `prev` (what the kernel holds) into `next`, or undefined
 * when anything else differs: the table, a counter, a limit, a chain or its rules, a set's
 * declaration or presence, an interval set's elements, or a set of a type the batch cannot
 * encode. A dynamic set's elements are the kernel's: never a change. Then the
 * caller applies the change with `nft -f` (lib/nft/ruleset.ts renderTableChange). An empty list
 * means the tables are the same.
 *
 * Per set, in `next`'s order: deletes, then adds. A map key whose verdict changed is deleted
 * and added again (the kernel refuses to add a key that holds another verdict); both in one
 * batch, so no packet sees the key absent.
 *
 * @example
 * elementChanges(prev, next);
 * // [{ op: "add", set: "ingress4", type: "ipv4_addr : verdict", element: "10.244.1.7 : jump ing_1f" }]
 */
export function elementChanges(prev: NftTable, next: NftTable): ElementChange[] | undefined {
  if (prev.name !== next.name || !sameStrings(prev.counters, next.counters)) return undefined;
  if (!sameLimits(prev.limits, next.limits)) return undefined;
  if (prev.chains.size !== next.chains.size || prev.sets.size !== next.sets.size) return undefined;
  for (const [name, chain] of next.chains) {
    const old = prev.chains.get(name);
    if (old === chain) continue;
    if (!old || (old.decl ?? "") !== (chain.decl ?? "")) return undefined;
    if (!sameStrings(old.rules, chain.rules)) return undefined;
  }
  const out: ElementChange[] = [];
  for (const [name, set] of next.sets) {
    const old = prev.sets.get(name);
    if (!old || old.kind !== set.kind || old.type !== set.type) return undefined;
    if (old.interval !== set.interval) return undefined;
    if (old.dynamic?.timeout !== set.dynamic?.timeout) return undefined;
    if (old.dynamic?.size !== set.dynamic?.size) return undefined;
    if (set.dynamic || old.elements === set.elements) continue; // dynamic: the kernel's elements
    const changes = setChanges(name, old, set);
    if (changes.length === 0) continue;
    if (set.interval || !elementTypeSupported(set.type)) return undefined;
    out.push(...changes);
  }
  return out;
}

function setChanges(name: string, old: NftSet, set: NftSet): ElementChange[] {
  const gone: ElementChange[] = [], added: ElementChange[] = [];
  const change = (op: "add" | "delete", element: string) => ({
    op,
    set: name,
    type: set.type,
    element,
  });
  // Sets the policy renderer changed for a pod say what changed: no walk of every element.
  const delta = elementDelta(old.elements, set.elements);
  if (delta !== undefined) {
    for (const [, el] of delta.gone) gone.push(change("delete", el));
    for (const [, el] of delta.added) added.push(change("add", el));
    return [...gone, ...added];
  }
  for (const [key, el] of old.elements) {
    const now = set.elements.get(key);
    if (now === el) continue;
    gone.push(change("delete", el));
    if (now !== undefined) added.push(change("add", now));
  }
  for (const [key, el] of set.elements) if (!old.elements.has(key)) added.push(change("add", el));
  return [...gone, ...added];
}

function sameLimits(
  a: ReadonlyMap<string, string> = new Map(),
  b: ReadonlyMap<string, string> = new Map(),
): boolean {
  return a.size === b.size && [...a].every(([name, spec]) => b.get(name) === spec);
}

/**
 * `table` with `changes` made to its elements, as the kernel holds it after the batch (deletes
 * and adds in order; a map element's key is the text before " : "). Sets untouched by the
 * changes are the same objects. Throws naming a set the table does not have.
 *
 * @example
 * withElementChanges(applied, [{ op: "delete", set: "i_a_4", type: "ipv4_addr", element: "10.0.0.3" }]);
 */
export function withElementChanges(table: NftTable, changes: readonly ElementChange[]): NftTable {
  const edited = new Map<string, Map<string, string>>();
  for (const c of changes) {
    let elements = edited.get(c.set);
    if (elements === undefined) {
      const set = table.sets.get(c.set);
      if (set === undefined) throw new Error(`Set ${c.set} is not in table ${table.name}`);
      edited.set(c.set, elements = new Map(set.elements));
    }
    const key = elementKey(c.element);
    if (c.op === "delete") elements.delete(key);
    else elements.set(key, c.element);
  }
  if (edited.size === 0) return table;
  const sets = new Map(table.sets);
  for (const [name, elements] of edited) sets.set(name, { ...table.sets.get(name)!, elements });
  return { ...table, sets };
}

/** An element's key: a map element's text before " : ", a set element's whole text. */
export function elementKey(element: string): string {
  const i = element.indexOf(" : ");
  return i < 0 ? element : element.slice(0, i);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
