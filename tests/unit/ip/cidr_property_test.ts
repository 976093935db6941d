// Property-based tests of the CIDR math (lib/ip/cidr.ts) and of the pod-network checks
// parseNetConf builds on it, over random IPv4 and IPv6 addresses and prefixes. What is right
// comes from tests/harness/ip_oracle.ts (bit strings, the URL parser), never from cidr.ts itself.
// deno-lint-ignore-file no-import-prefix -- test-only npm package, pinned where it is used
import fc from "npm:fast-check@4.10.2";
import {
  type Cidr,
  cidrContains,
  cidrSize,
  cidrsOverlap,
  type Family,
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
import {
  cidrText,
  lastOf,
  podCapacity,
  roleOf,
  sizeOf,
  textOf,
  within,
} from "../../harness/ip_oracle.ts";

const v4Value = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n });
const v6Value = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });
const anyIp = fc.oneof(
  v4Value.map((value) => ({ family: 4 as Family, value })),
  v6Value.map((value) => ({ family: 6 as Family, value })),
);
/** A network of `family` with a prefix in [min, max]. */
function network(family: Family, min: number, max: number): fc.Arbitrary<Cidr> {
  const bits = family === 4 ? 32 : 128;
  return fc.tuple(family === 4 ? v4Value : v6Value, fc.integer({ min, max })).map((
    [value, prefix],
  ) => {
    // Clear the host bits by shifting them out and back.
    const host = BigInt(bits - prefix);
    return { family, network: (value >> host) << host, prefix };
  });
}
const anyCidr = fc.oneof(network(4, 0, 32), network(6, 0, 128));

Deno.test("formatIp() writes every address as the oracle does and parseIp() reads it back", () => {
  fc.assert(fc.property(anyIp, (ip) => {
    assertEquals(formatIp(ip), textOf(ip));
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
    assertEquals(formatCidr(cidr), cidrText(cidr));
    assertEquals(parseCidr(cidrText(cidr), { strict: true }), cidr);
    if (ip.family !== cidr.family) return;
    const text = `${textOf(ip)}/${cidr.prefix}`;
    const loose = parseCidr(text);
    assertEquals(loose.prefix, cidr.prefix);
    assert(within(loose, ip), `${text} does not contain its own address`);
    assertEquals(roleOf(loose, { family: ip.family, value: loose.network }), "network");
    if (loose.network !== ip.value) assertThrows(() => parseCidr(text, { strict: true }));
  }));
});

Deno.test("cidrContains(), lastAddress() and cidrSize() agree with the bit-string oracle", () => {
  fc.assert(fc.property(anyCidr, anyIp, (cidr, ip) => {
    assertEquals(cidrContains(cidr, ip), within(cidr, ip));
    // And the addresses at its edges, where an off-by-one would show.
    const max = (1n << (cidr.family === 4 ? 32n : 128n)) - 1n;
    for (const value of [cidr.network - 1n, cidr.network, lastOf(cidr), lastOf(cidr) + 1n]) {
      if (value < 0n || value > max) continue;
      const edge = { family: cidr.family, value };
      assertEquals(cidrContains(cidr, edge), within(cidr, edge), `${textOf(edge)}`);
    }
    assertEquals(lastAddress(cidr), lastOf(cidr));
    assertEquals(cidrSize(cidr), sizeOf(cidr));
  }));
});

Deno.test("cidrsOverlap() is symmetric and true exactly when the ranges intersect", () => {
  fc.assert(fc.property(anyCidr, anyCidr, (a, b) => {
    const intersect = a.family === b.family && a.network <= lastOf(b) && b.network <= lastOf(a);
    assertEquals(cidrsOverlap(a, b), intersect);
    assertEquals(cidrsOverlap(b, a), intersect);
  }));
});

Deno.test("hostRange() runs from the gateway to the last pod address; gatewayOf() is the gateway", () => {
  fc.assert(fc.property(fc.oneof(network(4, 0, 30), network(6, 0, 126)), (cidr) => {
    const { first, last } = hostRange(cidr);
    const role = (value: bigint) => roleOf(cidr, { family: cidr.family, value });
    assertEquals(role(gatewayOf(cidr).value), "gateway");
    assertEquals(role(first), "gateway");
    assertEquals(role(last), "pod");
    // Nothing beyond `last` may go to a pod: the IPv4 broadcast, or the end of an IPv6 network.
    if (cidr.family === 4) assertEquals(role(last + 1n), "broadcast");
    else assertEquals(last, lastOf(cidr));
    assertEquals(last - first, podCapacity(cidr), `${cidrText(cidr)}: pod addresses`);
    assert(podCapacity(cidr) >= 1n && !isTooSmall(cidr));
  }));
});

Deno.test("parseNetConf() accepts /16-/30 and /64-/120 podCIDRs and rejects /31, /32, /127, /128 with code 7", () => {
  const conf = (cidr: string) => ({ cniVersion: "1.1.0", name: "n", type: "mycni", podcidr: cidr });
  fc.assert(fc.property(fc.oneof(network(4, 16, 30), network(6, 64, 120)), (cidr) => {
    const parsed = parseNetConf(conf(cidrText(cidr)));
    assertEquals(parsed.podCIDRs, [cidr]);
  }));
  fc.assert(fc.property(
    fc.oneof(network(4, 31, 32), network(6, 127, 128)),
    (cidr) => {
      const err = assertThrows(() => parseNetConf(conf(cidrText(cidr))));
      assert(err instanceof CniError, String(err));
      assertEquals(err.code, ErrorCode.InvalidConfig);
      assert(/too small/.test(err.message), err.message);
    },
  ));
});

Deno.test("parseNetConf() rejects overlapping or same-family podCIDRs and host bits with code 7", () => {
  fc.assert(fc.property(anyCidr, anyCidr, (a, b) => {
    if (podCapacity(a) < 1n || podCapacity(b) < 1n || a.family !== b.family) return;
    if (cidrText(a) === cidrText(b)) return; // a repeat is the same network, accepted
    const err = assertThrows(() =>
      parseNetConf({
        cniVersion: "1.1.0",
        name: "n",
        type: "mycni",
        podCIDRs: [cidrText(a), cidrText(b)],
      })
    );
    assert(err instanceof CniError && err.code === ErrorCode.InvalidConfig, String(err));
  }));
  fc.assert(fc.property(network(4, 16, 29), fc.integer({ min: 1, max: 3 }), (cidr, host) => {
    const text = `${textOf({ family: 4, value: cidr.network + BigInt(host) })}/${cidr.prefix}`;
    const err = assertThrows(() =>
      parseNetConf({ cniVersion: "1.1.0", name: "n", type: "mycni", podcidr: text })
    );
    assert(err instanceof CniError && err.code === ErrorCode.InvalidConfig, String(err));
    assert(/host bits/.test(err.message), err.message);
  }));
});
