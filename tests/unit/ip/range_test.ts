// Address range math (lib/ip/range.ts): worked examples for both families, then properties
// checked against a naive oracle that walks small ranges address by address.
// deno-lint-ignore-file no-import-prefix -- test-only npm package, pinned where it is used
import fc from "npm:fast-check@4.10.2";
import { parseCidr } from "../../../lib/ip/cidr.ts";
import {
  cidrRange,
  formatRange,
  type IpRange,
  mergeRanges,
  rangesContain,
  subtractRanges,
  withAddress,
  withoutAddress,
} from "../../../lib/ip/range.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const v4 = (text: string) => parseCidr(`${text}/32`).network;
const v6 = (text: string) => parseCidr(`${text}/128`).network;
const r = (start: bigint, end: bigint): IpRange => ({ start, end });

Deno.test("cidrRange() spans a network's first to last address in both families", () => {
  assertEquals(cidrRange(parseCidr("172.17.0.0/16")), r(v4("172.17.0.0"), v4("172.17.255.255")));
  assertEquals(cidrRange(parseCidr("10.1.2.3/32")), r(v4("10.1.2.3"), v4("10.1.2.3")));
  assertEquals(cidrRange(parseCidr("0.0.0.0/0")), r(0n, (1n << 32n) - 1n));
  assertEquals(
    cidrRange(parseCidr("fd00:10:244::/48")),
    r(v6("fd00:10:244::"), v6("fd00:10:244:ffff:ffff:ffff:ffff:ffff")),
  );
  assertEquals(cidrRange(parseCidr("::/0")), r(0n, (1n << 128n) - 1n));
});

Deno.test("subtractRanges() leaves the documentation's ipBlock as two ranges", () => {
  // kubernetes.io network-policies: 172.17.0.0/16 except 172.17.1.0/24 is
  // 172.17.0.0–172.17.0.255 and 172.17.2.0–172.17.255.255.
  const left = subtractRanges([cidrRange(parseCidr("172.17.0.0/16"))], [
    cidrRange(parseCidr("172.17.1.0/24")),
  ]);
  assertEquals(left, [
    r(v4("172.17.0.0"), v4("172.17.0.255")),
    r(v4("172.17.2.0"), v4("172.17.255.255")),
  ]);
  assertEquals(left.map((x) => formatRange(4, x)), ["172.17.0.0/24", "172.17.2.0-172.17.255.255"]);
});

Deno.test("subtractRanges() cuts IPv6 the same way, at the top of the address space too", () => {
  const left = subtractRanges([cidrRange(parseCidr("::/0"))], [
    cidrRange(parseCidr("::/1")),
    cidrRange(parseCidr("ffff::/16")),
  ]);
  assertEquals(left, [r(1n << 127n, v6("fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))]);
  assertEquals(formatRange(6, left[0]), "8000::-fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
});

Deno.test("subtractRanges() returns nothing when the cut covers everything", () => {
  assertEquals(subtractRanges([r(5n, 9n)], [r(0n, 20n)]), []);
  assertEquals(subtractRanges([], [r(0n, 20n)]), []);
  assertEquals(subtractRanges([r(5n, 9n)], []), [r(5n, 9n)]);
});

Deno.test("mergeRanges() joins overlapping and touching ranges and keeps gaps", () => {
  assertEquals(mergeRanges([r(10n, 12n), r(1n, 3n), r(4n, 4n), r(6n, 7n), r(7n, 11n)]), [
    r(1n, 4n),
    r(6n, 12n),
  ]);
  assertEquals(mergeRanges([]), []);
});

Deno.test("rangesContain() finds an address in merged ranges and misses the gaps", () => {
  const set = [r(1n, 4n), r(6n, 12n), r(20n, 20n)];
  assertEquals([0n, 1n, 4n, 5n, 6n, 12n, 13n, 20n, 21n].map((v) => rangesContain(set, v)), [
    false,
    true,
    true,
    false,
    true,
    true,
    false,
    true,
    false,
  ]);
  assertEquals(rangesContain([], 1n), false);
});

Deno.test("formatRange() writes one address, a CIDR or first-last, as nftables sets take them", () => {
  assertEquals(formatRange(4, r(v4("10.0.0.7"), v4("10.0.0.7"))), "10.0.0.7");
  assertEquals(formatRange(4, r(v4("10.0.0.0"), v4("10.0.0.255"))), "10.0.0.0/24");
  assertEquals(formatRange(4, r(v4("10.0.0.0"), v4("10.0.0.254"))), "10.0.0.0-10.0.0.254");
  // The size of a /24 but not aligned on one.
  assertEquals(formatRange(4, r(v4("10.0.0.128"), v4("10.0.1.127"))), "10.0.0.128-10.0.1.127");
  assertEquals(formatRange(4, r(0n, (1n << 32n) - 1n)), "0.0.0.0/0");
  assertEquals(formatRange(6, r(v6("fd00::"), v6("fd00::ffff"))), "fd00::/112");
  assertEquals(formatRange(6, r(v6("fd00::1"), v6("fd00::1"))), "fd00::1");
  assertEquals(formatRange(6, r(v6("fd00::1"), v6("fd00::3"))), "fd00::1-fd00::3");
});

// ---- Properties against a naive oracle ----------------------------------------------------------
// Ranges live in a 64-address window at a random base; the oracle is one boolean per address.

const WINDOW = 64;
const offsetRange = fc.tuple(fc.nat(WINDOW - 1), fc.nat(WINDOW - 1)).map(([a, b]) =>
  a <= b ? [a, b] : [b, a]
);
// Random ranges rarely touch, so half the lists are runs of ranges that do, shuffled.
const touching = fc.uniqueArray(fc.nat(WINDOW), { minLength: 2, maxLength: 8 }).chain((cuts) => {
  const sorted = [...cuts].sort((a, b) => a - b);
  const runs = sorted.slice(1).map((end, i) => [sorted[i], end - 1]);
  return fc.shuffledSubarray(runs, { minLength: runs.length });
});
const ranges = fc.oneof(fc.array(offsetRange, { maxLength: 8 }), touching);
const v4Base = fc.bigInt({ min: 0n, max: (1n << 32n) - BigInt(WINDOW) });
const v6Base = fc.bigInt({ min: 0n, max: (1n << 128n) - BigInt(WINDOW) });
const anyBase = fc.oneof(v4Base, v6Base);

function at(base: bigint, list: number[][]): IpRange[] {
  return list.map(([a, b]) => ({ start: base + BigInt(a), end: base + BigInt(b) }));
}

/** One flag per address of the window: is it in any of the ranges? */
function members(list: number[][]): boolean[] {
  const out = new Array<boolean>(WINDOW).fill(false);
  for (const [a, b] of list) for (let i = a; i <= b; i++) out[i] = true;
  return out;
}

/** The same flags, read from the implementation's output. */
function flagsOf(base: bigint, out: readonly IpRange[]): boolean[] {
  const flags = new Array<boolean>(WINDOW).fill(false);
  for (const x of out) {
    assert(x.start >= base && x.end < base + BigInt(WINDOW), "range left the window");
    for (let v = x.start; v <= x.end; v++) flags[Number(v - base)] = true;
  }
  return flags;
}

/** Sorted, disjoint, and never touching (touching ranges must have been merged). */
function assertNormal(out: readonly IpRange[]): void {
  out.forEach((x, i) => {
    assert(x.start <= x.end, "empty range");
    if (i > 0) assert(out[i - 1].end + 1n < x.start, "ranges overlap, touch or are unsorted");
  });
}

Deno.test("mergeRanges() keeps exactly the union, sorted and disjoint (property)", () => {
  fc.assert(fc.property(anyBase, ranges, (base, list) => {
    const out = mergeRanges(at(base, list));
    assertNormal(out);
    assertEquals(flagsOf(base, out), members(list));
  }));
});

Deno.test("subtractRanges() keeps what is in from and in no cut (property)", () => {
  fc.assert(fc.property(anyBase, ranges, ranges, (base, from, cut) => {
    const out = subtractRanges(at(base, from), at(base, cut));
    assertNormal(out);
    const keep = members(from), drop = members(cut);
    assertEquals(flagsOf(base, out), keep.map((k, i) => k && !drop[i]));
  }));
});

Deno.test("rangesContain() agrees with a scan of every range (property)", () => {
  fc.assert(fc.property(anyBase, ranges, fc.integer({ min: -2, max: WINDOW + 1 }), (b, list, o) => {
    const base = b + 2n; // room for probes just below the window
    const merged = mergeRanges(at(base, list));
    const value = base + BigInt(o);
    const naive = list.some(([a, z]) => value >= base + BigInt(a) && value <= base + BigInt(z));
    assertEquals(rangesContain(merged, value), naive);
  }));
});

Deno.test("withAddress() and withoutAddress() keep merged ranges merged, as mergeRanges would (property)", () => {
  fc.assert(fc.property(anyBase, ranges, fc.nat(WINDOW - 1), (base, list, o) => {
    const merged = mergeRanges(at(base, list));
    const value = base + BigInt(o);
    const flags = members(list);
    const out = flags[o] ? withoutAddress(merged, value) : withAddress(merged, value);
    assertNormal(out);
    flags[o] = !flags[o];
    assertEquals(flagsOf(base, out), flags);
  }));
});

Deno.test("withAddress() joins the neighbours an address touches; withoutAddress() splits around it", () => {
  assertEquals(withAddress([r(1n, 4n), r(6n, 9n)], 5n), [r(1n, 9n)]);
  assertEquals(withAddress([r(1n, 4n), r(7n, 9n)], 5n), [r(1n, 5n), r(7n, 9n)]);
  assertEquals(withAddress([r(1n, 1n)], 3n), [r(1n, 1n), r(3n, 3n)]);
  assertEquals(withAddress([], 3n), [r(3n, 3n)]);
  assertEquals(withoutAddress([r(1n, 9n)], 5n), [r(1n, 4n), r(6n, 9n)]);
  assertEquals(withoutAddress([r(1n, 9n)], 1n), [r(2n, 9n)]);
  assertEquals(withoutAddress([r(3n, 3n), r(5n, 6n)], 3n), [r(5n, 6n)]);
});

/** Dotted quad by hand, independent of lib/ip. */
function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

Deno.test("formatRange() picks the CIDR form exactly when one aligned block fits (property)", () => {
  const anywhere = fc.tuple(fc.nat(0xffffffff), fc.nat(300));
  // Starts aligned on a block, lengths one short of, equal to and one past the block.
  const nearBlocks = fc.tuple(
    fc.nat(0xffffffff),
    fc.integer({ min: 0, max: 12 }),
    fc.integer({
      min: -1,
      max: 1,
    }),
  ).map(([ip, bits, delta]) => {
    const size = 2 ** bits;
    return [ip - (ip % size), Math.max(0, size - 1 + delta)];
  });
  const cases = fc.oneof(anywhere, nearBlocks).filter(([s, len]) => s + len <= 0xffffffff);
  let cidrs = 0;
  fc.assert(fc.property(cases, ([start, len]) => {
    const end = start + len;
    let expected = `${dotted(start)}-${dotted(end)}`;
    if (len === 0) expected = dotted(start);
    else {
      for (let prefix = 0; prefix <= 32; prefix++) {
        const size = 2 ** (32 - prefix);
        if (start % size === 0 && len + 1 === size) expected = `${dotted(start)}/${prefix}`;
      }
    }
    if (expected.includes("/")) cidrs++;
    assertEquals(formatRange(4, { start: BigInt(start), end: BigInt(end) }), expected);
  }));
  assert(cidrs > 0, "the generator never produced a CIDR-shaped range");
});

Deno.test("cidrRange() covers exactly the addresses sharing the prefix (property)", () => {
  fc.assert(fc.property(fc.nat(0xffffffff), fc.integer({ min: 20, max: 32 }), (ip, prefix) => {
    const cidr = parseCidr(`${dotted(ip)}/${prefix}`);
    const range = cidrRange(cidr);
    const size = 2 ** (32 - prefix);
    const first = ip - (ip % size);
    assertEquals(range, { start: BigInt(first), end: BigInt(first + size - 1) });
  }));
});
