// Property-based tests of the CIDR math (lib/ip/cidr.ts) and of the pod-network checks
// parseNetConf builds on it, over random IPv4 and IPv6 addresses and prefixes.
// deno-lint-ignore-file no-import-prefix -- test-only npm package, pinned where it is used
import fc from "npm:fast-check@4.10.2";
import {
  type Cidr,
  cidrContains,
  cidrSize,
  cidrsOverlap,
  type Family,
  familyBits,
  formatCidr,
  formatIp,
  gatewayOf,
  hostRange,
  isTooSmall,
  lastAddress,
  parseCidr,
  parseIp,
} from "../../../lib/ip/cidr.ts";
import { CniError, ErrorCode } from "../../../lib/cni/errors.ts";
import { parseNetConf } from "../../../lib/cni/netconf.ts";
import { assert, assertEquals, assertThrows } from "../../harness/assert.ts";

const v4Value = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n });
const v6Value = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });
const anyIp = fc.oneof(
  v4Value.map((value) => ({ family: 4 as Family, value })),
  v6Value.map((value) => ({ family: 6 as Family, value })),
);
/** A network of `family` with a prefix in [min, max]. */
function network(family: Family, min: number, max: number): fc.Arbitrary<Cidr> {
  const bits = familyBits(family);
  return fc.tuple(family === 4 ? v4Value : v6Value, fc.integer({ min, max })).map((
    [value, prefix],
  ) => {
    const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
    return { family, network: value & mask, prefix };
  });
}
const anyCidr = fc.oneof(network(4, 0, 32), network(6, 0, 128));

Deno.test("formatIp() and parseIp() round-trip every IPv4 and IPv6 address", () => {
  fc.assert(fc.property(anyIp, (ip) => {
    assertEquals(parseIp(formatIp(ip)), ip);
  }));
});

Deno.test("formatIp() writes IPv6 in RFC 5952 form, as the WHATWG URL parser does", () => {
  // Addresses with runs of zero groups, where the choice of "::" matters.
  const group = fc.oneof(fc.constant(0n), fc.constant(0n), fc.bigInt({ min: 0n, max: 0xffffn }));
  const zeroy = fc.array(group, { minLength: 8, maxLength: 8 }).map((g) =>
    g.reduce((acc, x) => (acc << 16n) | x, 0n)
  );
  fc.assert(fc.property(fc.oneof(zeroy, v6Value), (value) => {
    const text = formatIp({ family: 6, value });
    assertEquals(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
    assertEquals(parseIp(text).value, value);
  }));
});

Deno.test("parseCidr() round-trips formatCidr() and strict mode rejects host bits", () => {
  fc.assert(fc.property(anyCidr, anyIp, (cidr, ip) => {
    assertEquals(parseCidr(formatCidr(cidr), { strict: true }), cidr);
    if (ip.family !== cidr.family) return;
    const text = `${formatIp(ip)}/${cidr.prefix}`;
    const loose = parseCidr(text);
    assert(cidrContains(loose, ip), `${text} does not contain its own address`);
    if (loose.network !== ip.value) assertThrows(() => parseCidr(text, { strict: true }));
  }));
});

Deno.test("cidrContains() is exactly network <= ip <= last address", () => {
  fc.assert(fc.property(anyCidr, anyIp, (cidr, ip) => {
    const inside = ip.family === cidr.family && ip.value >= cidr.network &&
      ip.value <= lastAddress(cidr);
    assertEquals(cidrContains(cidr, ip), inside);
    assertEquals(lastAddress(cidr) - cidr.network + 1n, cidrSize(cidr));
  }));
});

Deno.test("cidrsOverlap() is symmetric and true exactly when the ranges intersect", () => {
  fc.assert(fc.property(anyCidr, anyCidr, (a, b) => {
    const intersect = a.family === b.family && a.network <= lastAddress(b) &&
      b.network <= lastAddress(a);
    assertEquals(cidrsOverlap(a, b), intersect);
    assertEquals(cidrsOverlap(b, a), intersect);
  }));
});

Deno.test("hostRange() never includes the network or IPv4 broadcast and starts at the gateway", () => {
  fc.assert(fc.property(fc.oneof(network(4, 0, 30), network(6, 0, 126)), (cidr) => {
    const { first, last } = hostRange(cidr);
    assertEquals(first, gatewayOf(cidr).value);
    assert(first > cidr.network, "network address handed out");
    assert(last <= lastAddress(cidr));
    if (cidr.family === 4) assert(last < lastAddress(cidr), "broadcast handed out");
    // Room for the gateway and at least one pod.
    assert(last - first >= 1n, `${formatCidr(cidr)} has no pod address`);
    assert(!isTooSmall(cidr));
  }));
});

Deno.test("parseNetConf() accepts /16-/30 and /64-/120 podCIDRs and rejects /31, /32, /127, /128 with code 7", () => {
  const conf = (cidr: string) => ({ cniVersion: "1.1.0", name: "n", type: "mycni", podcidr: cidr });
  fc.assert(fc.property(fc.oneof(network(4, 16, 30), network(6, 64, 120)), (cidr) => {
    const parsed = parseNetConf(conf(formatCidr(cidr)));
    assertEquals(parsed.podCIDRs, [cidr]);
  }));
  fc.assert(fc.property(
    fc.oneof(network(4, 31, 32), network(6, 127, 128)),
    (cidr) => {
      const err = assertThrows(() => parseNetConf(conf(formatCidr(cidr))));
      assert(err instanceof CniError, String(err));
      assertEquals(err.code, ErrorCode.InvalidConfig);
      assert(/too small/.test(err.message), err.message);
    },
  ));
});

Deno.test("parseNetConf() rejects overlapping or same-family podCIDRs and host bits with code 7", () => {
  fc.assert(fc.property(anyCidr, anyCidr, (a, b) => {
    if (isTooSmall(a) || isTooSmall(b) || a.family !== b.family) return;
    if (formatCidr(a) === formatCidr(b)) return; // a repeat is the same network, accepted
    const err = assertThrows(() =>
      parseNetConf({
        cniVersion: "1.1.0",
        name: "n",
        type: "mycni",
        podCIDRs: [formatCidr(a), formatCidr(b)],
      })
    );
    assert(err instanceof CniError && err.code === ErrorCode.InvalidConfig, String(err));
  }));
  fc.assert(fc.property(network(4, 16, 29), fc.integer({ min: 1, max: 3 }), (cidr, host) => {
    const text = `${formatIp({ family: 4, value: cidr.network + BigInt(host) })}/${cidr.prefix}`;
    const err = assertThrows(() =>
      parseNetConf({ cniVersion: "1.1.0", name: "n", type: "mycni", podcidr: text })
    );
    assert(err instanceof CniError && err.code === ErrorCode.InvalidConfig, String(err));
    assert(/host bits/.test(err.message), err.message);
  }));
});
