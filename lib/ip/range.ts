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
