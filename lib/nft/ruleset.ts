// The agent's nftables table as data (sets, maps, chains, counters, limits) and the two texts `nft -f`
// takes for it: the whole table in one transaction (start-up, recovery, periodic re-check), or
// the difference from the table last applied (every other change), also one transaction. Pure:
// lib/nft/cli.ts feeds these texts to nft.
//
// Why a difference at all: nft reads the table's current state before every change, so one
// invocation costs in proportion to what the table holds, and replacing a table of 20,000 set
// elements costs ~4x adding one element to it (measured here: 250 ms against 70 ms). A pod that
// starts changes a few elements, and only those are sent.

import { elementDelta } from "./layered_elements.ts";
import type { Family } from "../ip/cidr.ts";

/** The agent's table: its family and name, as nft takes them (DESIGN.md "NetworkPolicy"). */
export const NFT_TABLE = { family: "inet", name: "mycni" } as const;

/** A family's address match keyword in a rule: `ip saddr ...`, `ip6 daddr ...`. */
export const NFT_IP: Readonly<Record<Family, string>> = { 4: "ip", 6: "ip6" };
/** A family's address type in a set or map declaration: `type ipv4_addr`. */
export const NFT_ADDR: Readonly<Record<Family, string>> = { 4: "ipv4_addr", 6: "ipv6_addr" };

/** A set or a map: its type and its elements by key. */
export interface NftSet {
  readonly kind: "set" | "map";
  /** `ipv4_addr`, `ipv4_addr . ipv4_addr`, `ipv4_addr : verdict` */
  readonly type: string;
  /** Elements are ranges or prefixes (`flags interval`). */
  readonly interval: boolean;
  /**
   * Elements by key. A set's element is its key; a map's is `key : value`. Interval sets are
   * re-filled whole when they change (their elements are ranges the kernel may split or join),
   * others change element by element.
   */
  readonly elements: ReadonlyMap<string, string>;
  /**
   * Present on a set whose elements are not the table's: the kernel adds them (a rule's
   * `add @set`), or the agent outside the table's sync, and `timeout` expires them. The table
   * declares it empty; a difference never adds or deletes its elements and a read-back compares
   * only its declaration (its `elements` are ignored, and read back empty).
   */
  readonly dynamic?: NftDynamic;
}

/** How a dynamic set's elements live: `flags dynamic,timeout; timeout 130s; size 65536;`. */
export interface NftDynamic {
  /** Seconds an element lives unless refreshed. */
  readonly timeout: number;
  /** Most elements the set holds (a full set refuses new ones). */
  readonly size: number;
}

/** A chain: the base-chain line (hook, priority, policy), if any, and its rules in order. */
export interface NftChain {
  readonly decl?: string;
  readonly rules: readonly string[];
}

/** One table's whole desired content. */
export interface NftTable {
  /** e.g. "inet mycni" */
  readonly name: string;
  /** Named counters: kept across changes (a difference never deletes one). */
  readonly counters: readonly string[];
  /**
   * Named limits (`limit NAME { SPEC }`) by name, SPEC as nft prints it back:
   * `rate 100/second burst 100 packets`. Kept in place: a difference refuses to change one (a
   * whole table loads the new one), and deletes one only when no rule uses it any more.
   */
  readonly limits?: ReadonlyMap<string, string>;
  readonly sets: ReadonlyMap<string, NftSet>;
  /**
   * Chains in an order where no chain jumps to one listed after it is needed: nft resolves
   * jumps at the end of a transaction, so any order loads.
   */
  readonly chains: ReadonlyMap<string, NftChain>;
}

/**
 * The whole table as one transaction: create it if absent, delete it, declare it again. Atomic,
 * so packets see the old table or the new one, never none.
 *
 * @example
 * renderFullTable(table); // "table inet mycni {}\ndelete table inet mycni\ntable inet mycni {\n..."
 */
export function renderFullTable(t: NftTable): string {
  const out = [`table ${t.name} {}`, `delete table ${t.name}`, `table ${t.name} {`];
  for (const c of t.counters) out.push(`  counter ${c} {`, `  }`);
  for (const [name, spec] of t.limits ?? []) out.push(`  limit ${name} { ${spec} }`);
  for (const [name, set] of t.sets) {
    out.push(`  ${set.kind} ${name} {`, `    ${decl(set)}`);
    if (set.elements.size > 0 && !set.dynamic) {
      out.push(`    elements = { ${[...set.elements.values()].join(", ")} }`);
    }
    out.push("  }");
  }
  for (const [name, chain] of t.chains) {
    out.push(`  chain ${name} {`);
    if (chain.decl) out.push(`    ${chain.decl}`);
    for (const r of chain.rules) out.push(`    ${r}`);
    out.push("  }");
  }
  out.push("}");
  return out.join("\n") + "\n";
}

/**
 * The transaction turning table `prev` (what was last applied) into `next`, or "" when they are
 * the same. Order: new sets and chains (empty), element changes, rules of new and changed
 * chains, then what is gone (whatever referred to it was replaced earlier in the transaction).
 *
 * @example
 * renderTableChange(prev, next); // "add element inet mycni ingress4 { 10.244.1.7 : jump ing_1f }\n"
 */
export function renderTableChange(prev: NftTable, next: NftTable): string {
  const t = next.name;
  const out: string[] = [];
  for (const c of next.counters) if (!prev.counters.includes(c)) out.push(`add counter ${t} ${c}`);
  out.push(...limitChanges(t, prev.limits, next.limits).added);
  // Objects first, empty: a map element may jump to a new chain, a rule may test a new set.
  for (const [name, set] of next.sets) {
    const old = prev.sets.get(name);
    if (old && decl(old) !== decl(set)) {
      throw new Error(`Set ${name} changed its declaration: name sets by what they hold`);
    }
    if (!old) out.push(`add ${set.kind} ${t} ${name} { ${decl(set)} }`);
  }
  for (const [name, chain] of next.chains) {
    const old = prev.chains.get(name);
    if (old && (old.decl ?? "") !== (chain.decl ?? "")) {
      throw new Error(`Chain ${name} changed its hook: name chains by what they hold`);
    }
    if (!old) out.push(`add chain ${t} ${name}${chain.decl ? ` { ${chain.decl} }` : ""}`);
  }
  for (const [name, set] of next.sets) {
    out.push(...elementChanges(t, name, prev.sets.get(name), set));
  }
  for (const [name, chain] of next.chains) {
    const old = prev.chains.get(name);
    if (old && sameRules(old.rules, chain.rules)) continue;
    if (old) out.push(`flush chain ${t} ${name}`);
    for (const r of chain.rules) out.push(`add rule ${t} ${name} ${r}`);
  }
  // What is gone goes last, once no rule or map element refers to it any more. Gone chains are
  // flushed first (a jump between two of them must not hold either), then deleted.
  const goneChains = [...prev.chains.keys()].filter((n) => !next.chains.has(n));
  for (const name of goneChains) out.push(`flush chain ${t} ${name}`);
  for (const name of goneChains) out.push(`delete chain ${t} ${name}`);
  for (const [name, set] of prev.sets) {
    if (!next.sets.has(name)) out.push(`delete ${set.kind} ${t} ${name}`);
  }
  out.push(...limitChanges(t, prev.limits, next.limits).gone);
  return out.length ? out.join("\n") + "\n" : "";
}

/** The limits to add (before any rule uses them) and to delete (after none does). */
function limitChanges(
  t: string,
  prev: ReadonlyMap<string, string> = new Map(),
  next: ReadonlyMap<string, string> = new Map(),
): { added: string[]; gone: string[] } {
  const added: string[] = [], gone: string[] = [];
  for (const [name, spec] of next) {
    const old = prev.get(name);
    if (old === undefined) added.push(`add limit ${t} ${name} { ${spec} }`);
    else if (old !== spec) {
      throw new Error(`Limit ${name} changed from "${old}" to "${spec}": load the table whole`);
    }
  }
  for (const name of prev.keys()) if (!next.has(name)) gone.push(`delete limit ${t} ${name}`);
  return { added, gone };
}

/** Turning `old`'s elements (none when new) into `set`'s. */
function elementChanges(t: string, name: string, old: NftSet | undefined, set: NftSet): string[] {
  if (set.dynamic) return []; // the kernel's elements
  if (!old) return addElements(t, name, [...set.elements.values()]);
  if (old.elements === set.elements) return [];
  // Sets the policy renderer changed for a pod say what changed: no walk of every element.
  const delta = elementDelta(old.elements, set.elements);
  if (set.interval) {
    const same = delta
      ? delta.gone.length + delta.added.length === 0
      : sameElements(old.elements, set.elements);
    if (same) return [];
    return [`flush ${set.kind} ${t} ${name}`, ...addElements(t, name, [...set.elements.values()])];
  }
  if (delta !== undefined) {
    const gone = delta.gone.map(([key]) => key);
    const out = gone.length ? [`delete element ${t} ${name} { ${gone.join(", ")} }`] : [];
    return [...out, ...addElements(t, name, delta.added.map(([, el]) => el))];
  }
  const gone: string[] = [], added: string[] = [];
  for (const [key, el] of old.elements) {
    const now = set.elements.get(key);
    if (now === undefined) gone.push(key);
    else if (now !== el) gone.push(key), added.push(now);
  }
  for (const [key, el] of set.elements) if (!old.elements.has(key)) added.push(el);
  const out = gone.length ? [`delete element ${t} ${name} { ${gone.join(", ")} }`] : [];
  return [...out, ...addElements(t, name, added)];
}

/** A table holding nothing: what "last applied" is before anything was. */
export function emptyTable(name: string): NftTable {
  return { name, counters: [], limits: new Map(), sets: new Map(), chains: new Map() };
}

// Elements go in batches: one `add element` line per set keeps nft's parser fast, but a single
// line of 100,000 elements is slow to build and to read in a log; 5,000 per line is neither.
const BATCH = 5000;

function addElements(table: string, set: string, elements: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < elements.length; i += BATCH) {
    out.push(`add element ${table} ${set} { ${elements.slice(i, i + BATCH).join(", ")} }`);
  }
  return out;
}

function decl(set: NftSet): string {
  const d = set.dynamic;
  if (d) return `type ${set.type}; flags dynamic,timeout; timeout ${d.timeout}s; size ${d.size};`;
  return `type ${set.type};${set.interval ? " flags interval;" : ""}`;
}

function sameElements(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}
