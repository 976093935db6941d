// The address sets of the policy table (lib/policy/nft_rules.ts names and shares them): a rule's
// peers of one family as a plain set of addresses and an interval set of wide ranges, and the
// destinations of an egress named port that use one port number. Each set has a key that is
// equal when the elements are (with its kind and family), so rules with the same peers can share
// one set. Plan objects never change, so a set is made once per object; when the compiler made an
// object by changing the previous one (lib/policy/plan_changes.ts), the previous set's elements
// are changed where the addresses changed rather than formatting ten thousand addresses again.
import { type Family, formatIp } from "../ip/cidr.ts";
import { formatRange, type IpRange } from "../ip/range.ts";
import { layerElements } from "../nft/layered_elements.ts";
import { NFT_ADDR, type NftSet } from "../nft/ruleset.ts";
import type { AddressSet } from "./plan.ts";
import {
  addressSetChange,
  type NamedEndpoint,
  type NamedPort,
  namedPortChange,
} from "./plan_changes.ts";

/** One set's elements and the key sets with equal elements share. */
export interface SetContent {
  /** Kind, family, element count and two sums of element hashes: equal for equal elements. */
  readonly key: string;
  readonly set: NftSet;
  /** The sums of the key, kept to change them with the elements. */
  readonly sums: readonly [number, number];
}

/** Which part of a peer set: addresses one by one, or wide ranges. */
export type PeerPart = "addresses" | "ranges";

/** The sets of plan objects, made once per object. */
export interface SetContents {
  /** Part `part` of the peers of family `f`; null when that part is empty. */
  peers(peers: AddressSet, f: Family, part: PeerPart): SetContent | null;
  /** The destinations of `named` in family `f` that use `port`; null when none does. */
  endpoints(named: NamedPort, f: Family, port: number): SetContent | null;
  /** The port numbers `named` resolves to, ascending. */
  portNumbers(named: NamedPort): readonly number[];
  /**
   * Whether the destinations of `named` using port `n` in family `f` are exactly `peers` of
   * that family (the compiler only lists endpoints among the peers, each once).
   */
  covers(peers: AddressSet, named: NamedPort, n: number, f: Family): boolean;
  /** Whether two contents with one key hold the same elements (the key is a hash). */
  same(a: SetContent, b: SetContent): boolean;
}

/** Ranges up to this many addresses are listed address by address (a /24 is 256). */
export const EXPAND_LIMIT = 256n;

/** Changed addresses past this many in one set: the set is made whole again. */
const CHANGE_LIMIT = 1024;

/**
 * An empty cache of set contents.
 *
 * @example
 * const contents = createSetContents();
 * contents.peers(rule.peers, 4, "addresses")?.set.elements; // Map { "10.244.2.3" => "10.244.2.3" }
 */
export function createSetContents(): SetContents {
  const peerParts = new WeakMap<AddressSet, Map<string, SetContent | null>>();
  const endpointParts = new WeakMap<NamedPort, Map<string, SetContent | null>>();
  const ports = new WeakMap<NamedPort, PortCounts>();
  const sizes = new WeakMap<AddressSet, readonly [bigint, bigint]>();
  const coverage = new WeakMap<NamedPort, { peers: AddressSet; known: Map<string, boolean> }>();
  const verified = new WeakMap<SetContent, WeakSet<SetContent>>();

  function peers(set: AddressSet, f: Family, part: PeerPart): SetContent | null {
    let parts = peerParts.get(set);
    if (parts === undefined) peerParts.set(set, parts = new Map());
    const variant = `${f}${part}`;
    let c = parts.get(variant);
    if (c !== undefined) return c;
    const change = addressSetChange(set);
    const before = change && peerParts.get(change.prev)?.get(variant);
    c = change !== undefined && before !== undefined
      ? changedPeers(change.prev, set, before, change.added, change.removed, f, part)
      : wholePeers(set, f, part);
    parts.set(variant, c);
    return c;
  }

  function endpoints(named: NamedPort, f: Family, port: number): SetContent | null {
    let parts = endpointParts.get(named);
    if (parts === undefined) endpointParts.set(named, parts = new Map());
    const variant = `${f}/${port}`;
    let c = parts.get(variant);
    if (c !== undefined) return c;
    const change = namedPortChange(named);
    const before = change && endpointParts.get(change.prev)?.get(variant);
    c = change !== undefined && before !== undefined
      ? changedEndpoints(before, change.added, change.removed, f, port)
      : wholeEndpoints(named.endpoints, f, port);
    parts.set(variant, c);
    return c;
  }

  function countsOf(named: NamedPort): PortCounts {
    let counts = ports.get(named);
    if (counts !== undefined) return counts;
    const change = namedPortChange(named);
    const before = change && ports.get(change.prev);
    counts = change !== undefined && before !== undefined
      ? changedCounts(before, change.added, change.removed)
      : countPorts(named.endpoints);
    ports.set(named, counts);
    return counts;
  }

  function sizeOf(set: AddressSet, f: Family): bigint {
    let known = sizes.get(set);
    if (known === undefined) {
      const change = addressSetChange(set);
      const before = change && sizes.get(change.prev);
      if (change !== undefined && before !== undefined) {
        const delta = (list: readonly { family: Family }[], fam: Family) =>
          BigInt(list.filter((a) => a.family === fam).length);
        known = [
          before[0] + delta(change.added, 4) - delta(change.removed, 4),
          before[1] + delta(change.added, 6) - delta(change.removed, 6),
        ];
      } else {
        known = [rangesSize(set.v4), rangesSize(set.v6)];
      }
      sizes.set(set, known);
    }
    return known[f === 4 ? 0 : 1];
  }

  return {
    peers,
    endpoints,
    portNumbers: (named) => countsOf(named).numbers,
    covers(set, named, n, f) {
      let c = coverage.get(named);
      if (c === undefined || c.peers !== set) {
        coverage.set(named, c = { peers: set, known: new Map() });
      }
      const key = `${f}/${n}`;
      let hit = c.known.get(key);
      if (hit === undefined) {
        const count = BigInt(countsOf(named).counts.get(key) ?? 0);
        c.known.set(key, hit = count > 0n && count === sizeOf(set, f));
      }
      return hit;
    },
    same(a, b) {
      if (a === b || verified.get(a)?.has(b)) return true;
      if (a.key !== b.key || a.set.elements.size !== b.set.elements.size) return false;
      for (const [k, v] of a.set.elements) if (b.set.elements.get(k) !== v) return false;
      let known = verified.get(a);
      if (known === undefined) verified.set(a, known = new WeakSet());
      known.add(b);
      return true;
    },
  };
}

/** A named port's numbers, and how many destinations use each per family (`f/port`). */
interface PortCounts {
  readonly numbers: readonly number[];
  readonly counts: ReadonlyMap<string, number>;
}

function familyOf(ip: string): Family {
  return ip.includes(":") ? 6 : 4;
}

function countPorts(endpoints: readonly NamedEndpoint[]): PortCounts {
  const counts = new Map<string, number>();
  for (const e of endpoints) {
    const key = `${familyOf(e.ip)}/${e.port}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return { numbers: numbersOf(counts), counts };
}

function changedCounts(
  before: PortCounts,
  added: readonly NamedEndpoint[],
  removed: readonly NamedEndpoint[],
): PortCounts {
  const counts = new Map(before.counts);
  const bump = (e: NamedEndpoint, by: number) => {
    const key = `${familyOf(e.ip)}/${e.port}`;
    const n = (counts.get(key) ?? 0) + by;
    if (n === 0) counts.delete(key);
    else counts.set(key, n);
  };
  for (const e of removed) bump(e, -1);
  for (const e of added) bump(e, 1);
  return { numbers: numbersOf(counts), counts };
}

function numbersOf(counts: ReadonlyMap<string, number>): number[] {
  const numbers = new Set([...counts.keys()].map((k) => Number(k.slice(k.indexOf("/") + 1))));
  return [...numbers].sort((a, b) => a - b);
}

function rangesSize(ranges: readonly IpRange[]): bigint {
  let size = 0n;
  for (const r of ranges) size += r.end - r.start + 1n;
  return size;
}

/** Whether a range goes in the plain set (listed) or the interval set. */
function partOf(r: IpRange): PeerPart {
  return r.end - r.start < EXPAND_LIMIT ? "addresses" : "ranges";
}

/** A part's elements (key -> element), as {@linkcode wholePeers} lists them. */
function partElements(
  ranges: readonly IpRange[],
  f: Family,
  part: PeerPart,
  into: Map<string, string>,
) {
  for (const r of ranges) {
    if (partOf(r) !== part) continue;
    if (part === "ranges") {
      into.set(`${f}:${r.start}-${r.end}`, formatRange(f, r));
      continue;
    }
    for (let v = r.start; v <= r.end; v++) {
      const ip = formatIp({ family: f, value: v });
      into.set(ip, ip);
    }
  }
}

/**
 * Addresses (pods, small blocks) go in a plain set, wide ranges (ipBlocks) in an interval set:
 * nft reads every element of every interval set in the table before each change, and a plain
 * set's not at all (a change costs ~10 ms instead of ~60 ms at 10,000 elements).
 */
function wholePeers(set: AddressSet, f: Family, part: PeerPart): SetContent | null {
  const elements = new Map<string, string>();
  partElements(f === 4 ? set.v4 : set.v6, f, part, elements);
  return content(part === "ranges" ? "r" : "a", f, elements, part === "ranges");
}

/**
 * `before` (the part of `prev`) changed into the part of `next`. Where no address changed,
 * the ranges of both are the same (a range can only grow, shrink or split at an address that
 * changed or beside it), so only the ranges beside a changed address are taken out and put in.
 */
function changedPeers(
  prev: AddressSet,
  next: AddressSet,
  before: SetContent | null,
  added: readonly { family: Family; value: bigint }[],
  removed: readonly { family: Family; value: bigint }[],
  f: Family,
  part: PeerPart,
): SetContent | null {
  const values = [...added, ...removed].filter((a) => a.family === f).map((a) => a.value);
  if (values.length === 0) return before;
  if (values.length > CHANGE_LIMIT) return wholePeers(next, f, part);
  const out = new Map<string, string>(), back = new Map<string, string>();
  partElements(rangesBeside(f === 4 ? prev.v4 : prev.v6, values), f, part, out);
  partElements(rangesBeside(f === 4 ? next.v4 : next.v6, values), f, part, back);
  return changedContent(before, part === "ranges" ? "r" : "a", f, part === "ranges", out, back);
}

/** The ranges of `ranges` (merged) that hold one of `values` or an address beside one. */
function rangesBeside(ranges: readonly IpRange[], values: readonly bigint[]): IpRange[] {
  const found = new Set<number>();
  for (const v of values) {
    let lo = 0, hi = ranges.length;
    while (lo < hi) { // the first range ending at v - 1 or later
      const mid = (lo + hi) >> 1;
      if (ranges[mid].end < v - 1n) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < ranges.length && ranges[i].start <= v + 1n; i++) found.add(i);
  }
  return [...found].map((i) => ranges[i]);
}

function wholeEndpoints(
  endpoints: readonly NamedEndpoint[],
  f: Family,
  port: number,
): SetContent | null {
  const elements = new Map<string, string>();
  for (const e of endpoints) if (e.port === port && familyOf(e.ip) === f) elements.set(e.ip, e.ip);
  return content(`n${port}`, f, elements, false);
}

function changedEndpoints(
  before: SetContent | null,
  added: readonly NamedEndpoint[],
  removed: readonly NamedEndpoint[],
  f: Family,
  port: number,
): SetContent | null {
  const mine = (e: NamedEndpoint) => e.port === port && familyOf(e.ip) === f;
  const out = new Map(removed.filter(mine).map((e) => [e.ip, e.ip]));
  const back = new Map(added.filter(mine).map((e) => [e.ip, e.ip]));
  if (out.size + back.size === 0) return before;
  return changedContent(before, `n${port}`, f, false, out, back);
}

/** `before` without the elements of `out`, then with those of `back`. */
function changedContent(
  before: SetContent | null,
  kind: string,
  f: Family,
  interval: boolean,
  out: ReadonlyMap<string, string>,
  back: ReadonlyMap<string, string>,
): SetContent | null {
  const old: ReadonlyMap<string, string> = before?.set.elements ?? new Map();
  const sums: [number, number] = before ? [before.sums[0], before.sums[1]] : [0, 0];
  const gone = new Set<string>(), added: [string, string][] = [];
  for (const [k, v] of out) {
    if (back.get(k) === v || old.get(k) !== v) continue;
    gone.add(k);
    hashInto(sums, k, -1);
  }
  for (const [k, v] of back) {
    const had = old.get(k);
    if (had === v) continue;
    if (had !== undefined && !gone.has(k)) hashInto(sums, k, -1); // the key stays: sums too
    added.push([k, v]);
    hashInto(sums, k, 1);
  }
  if (gone.size + added.length === 0) return before;
  const elements = layerElements(old, gone, added);
  if (elements.size === 0) return null;
  return {
    key: keyOf(kind, f, elements.size, sums),
    set: { kind: "set", type: NFT_ADDR[f], interval, elements },
    sums,
  };
}

function content(
  kind: string,
  f: Family,
  elements: Map<string, string>,
  interval: boolean,
): SetContent | null {
  if (elements.size === 0) return null;
  const sums: [number, number] = [0, 0];
  for (const k of elements.keys()) hashInto(sums, k, 1);
  return {
    key: keyOf(kind, f, elements.size, sums),
    set: { kind: "set", type: NFT_ADDR[f], interval, elements },
    sums,
  };
}

function keyOf(kind: string, f: Family, size: number, sums: readonly [number, number]): string {
  return `${kind}|${f}|${size}|${sums[0].toString(36)}|${sums[1].toString(36)}`;
}

/**
 * Adds (`sign` 1) or takes away (-1) an element key's two 32-bit hashes to the sums: sums do
 * not depend on the order elements came in, and change with one element at a time.
 */
function hashInto(sums: [number, number], key: string, sign: 1 | -1): void {
  let a = 0x811c9dc5, b = 0x6e7f8091;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  b = Math.imul(b ^ (b >>> 15), 0xc2b2ae35);
  sums[0] = (sums[0] + sign * ((a ^ (a >>> 13)) >>> 0)) >>> 0;
  sums[1] = (sums[1] + sign * ((b ^ (b >>> 13)) >>> 0)) >>> 0;
}
