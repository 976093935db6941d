// Address ranges of one family as inclusive [start, end] numbers: what NetworkPolicy peers become
// (an ipBlock minus its `except` list, pod addresses), and the text nftables takes for them.
import { type Cidr, type Family, familyBits, formatIp, lastAddress } from "./cidr.ts";

/**
 * An inclusive range of addresses of one family. The same shape as `AddressRange` in
 * lib/policy/plan.ts, which sits above this module in the import graph.
 */
export interface IpRange {
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * The addresses of a network as a range.
 *
 * @example
 * cidrRange(parseCidr("10.0.0.0/30")); // { start: 167772160n, end: 167772163n }
 */
export function cidrRange(cidr: Cidr): IpRange {
  return { start: cidr.network, end: lastAddress(cidr) };
}

/**
 * Sorts ranges and joins the ones that overlap or touch, so the result is sorted, disjoint and
 * has a gap between any two neighbours (the form nftables interval sets and
 * {@linkcode rangesContain} expect).
 *
 * @example
 * mergeRanges([{ start: 5n, end: 9n }, { start: 1n, end: 4n }]); // [{ start: 1n, end: 9n }]
 */
export function mergeRanges(ranges: readonly IpRange[]): IpRange[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: IpRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.end + 1n) {
      if (r.end > last.end) out[out.length - 1] = { start: last.start, end: r.end };
    } else {
      out.push({ start: r.start, end: r.end });
    }
  }
  return out;
}

/**
 * The addresses of `from` that are in none of `remove`, merged (an ipBlock `cidr` minus its
 * `except` list).
 *
 * @example
 * subtractRanges([{ start: 0n, end: 9n }], [{ start: 3n, end: 4n }]);
 * // [{ start: 0n, end: 2n }, { start: 5n, end: 9n }]
 */
export function subtractRanges(
  from: readonly IpRange[],
  remove: readonly IpRange[],
): IpRange[] {
  const keep = mergeRanges(from);
  const cut = mergeRanges(remove);
  const out: IpRange[] = [];
  let first = 0; // first cut that can still touch the current or a later range
  for (const r of keep) {
    while (first < cut.length && cut[first].end < r.start) first++;
    let start = r.start;
    for (let i = first; i < cut.length && cut[i].start <= r.end && start <= r.end; i++) {
      if (cut[i].start > start) out.push({ start, end: cut[i].start - 1n });
      start = cut[i].end + 1n;
    }
    if (start <= r.end) out.push({ start, end: r.end });
  }
  return out;
}

/**
 * Whether `value` lies in one of `ranges`, which must be merged ({@linkcode mergeRanges}):
 * a binary search, as the kernel's interval set does it.
 *
 * @example
 * rangesContain([{ start: 1n, end: 4n }, { start: 8n, end: 9n }], 8n); // true
 */
export function rangesContain(ranges: readonly IpRange[], value: bigint): boolean {
  let lo = 0, hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (value < ranges[mid].start) hi = mid - 1;
    else if (value > ranges[mid].end) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * A range as an nftables set element: one address, a CIDR when the range is exactly one network,
 * else `first-last`.
 *
 * @example
 * formatRange(4, { start: 167772160n, end: 167772415n }); // "10.0.0.0/24"
 * formatRange(4, { start: 167772161n, end: 167772165n }); // "10.0.0.1-10.0.0.5"
 */
export function formatRange(family: Family, range: IpRange): string {
  const first = formatIp({ family, value: range.start });
  if (range.start === range.end) return first;
  const prefix = exactPrefix(family, range);
  if (prefix !== undefined) return `${first}/${prefix}`;
  return `${first}-${formatIp({ family, value: range.end })}`;
}

/** The prefix length when `range` is exactly one aligned network, else undefined. */
function exactPrefix(family: Family, range: IpRange): number | undefined {
  const size = range.end - range.start + 1n;
  // A network's size is a power of two and its first address a multiple of that size.
  if ((size & (size - 1n)) !== 0n || (range.start & (size - 1n)) !== 0n) return undefined;
  return familyBits(family) - (size.toString(2).length - 1);
}

/**
 * `ranges` (merged) with `value` added, still merged: joined to a neighbour it touches. `value`
 * must not be in `ranges` already.
 *
 * @example
 * withAddress([{ start: 1n, end: 4n }, { start: 6n, end: 9n }], 5n); // [{ start: 1n, end: 9n }]
 */
export function withAddress(ranges: readonly IpRange[], value: bigint): IpRange[] {
  const i = firstAfter(ranges, value);
  const left = ranges[i - 1], right = ranges[i];
  const joinLeft = left !== undefined && left.end + 1n === value;
  const joinRight = right !== undefined && right.start === value + 1n;
  const from = joinLeft ? i - 1 : i, to = joinRight ? i + 1 : i;
  // slice and splice copy in bulk: ten thousand ranges per pod that joins a peer set.
  const out = ranges.slice();
  out.splice(from, to - from, {
    start: joinLeft ? left.start : value,
    end: joinRight ? right.end : value,
  });
  return out;
}

/**
 * `ranges` (merged) without `value`, still merged: the range holding it split around it. `value`
 * must be in `ranges`.
 *
 * @example
 * withoutAddress([{ start: 1n, end: 9n }], 5n); // [{ start: 1n, end: 4n }, { start: 6n, end: 9n }]
 */
export function withoutAddress(ranges: readonly IpRange[], value: bigint): IpRange[] {
  const i = firstAfter(ranges, value) - 1;
  const r = ranges[i];
  if (r === undefined || r.end < value) throw new Error(`Address ${value} is not in the ranges`);
  const pieces: IpRange[] = [];
  if (r.start < value) pieces.push({ start: r.start, end: value - 1n });
  if (value < r.end) pieces.push({ start: value + 1n, end: r.end });
  const out = ranges.slice();
  out.splice(i, 1, ...pieces);
  return out;
}

/** The index of the first range starting after `value` (ranges.length when none does). */
function firstAfter(ranges: readonly IpRange[], value: bigint): number {
  let lo = 0, hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid].start <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
