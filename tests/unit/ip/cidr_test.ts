import {
  aggregateCidrs,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIp,
  gatewayOf,
  hostRange,
  isTooSmall,
  parseCidr,
  parseIp,
} from "../../../lib/ip/cidr.ts";
import { assertEquals, assertThrows } from "../../harness/assert.ts";

Deno.test("formatIp() writes IPv6 the way Go's net.IP.String() does", () => {
  const cases: [string, string][] = [
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["fd00:0:0:0:0:0:0:1", "fd00::1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["FD00::A", "fd00::a"],
  ];
  for (const [input, want] of cases) assertEquals(formatIp(parseIp(input)), want);
});

Deno.test("parseIp() rejects what is not an address", () => {
  const bad = ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1::2::3", ":::", "g::1", "1.2.3.4 "];
  const badV4 = [
    "1.2.3.04",
    "1.2.3.+4",
    "1.2.3.1e2",
    "1.2.3.0x1",
    "1.2.3. 4",
    "1.2.3.",
    "1.2.3.1000",
  ];
  for (const text of [...bad, ...badV4]) {
    assertThrows(() => parseIp(text), text);
  }
});

Deno.test("parseCidr() takes address/prefix and nothing else", () => {
  assertEquals(formatCidr(parseCidr("10.1.0.0/16")), "10.1.0.0/16");
  assertEquals(formatCidr(parseCidr("fd00::/64")), "fd00::/64");
  assertEquals(parseCidr("10.0.0.0/08").prefix, 8);
  const bad = ["10.0.0.0", "10.0.0.0/", "/8", "10.0.0.0/8/8", "10.0.0.0/1234", "10.0.0.0/33"];
  for (const text of [...bad, "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/ 8", "fd00::/129"]) {
    assertThrows(() => parseCidr(text), text);
  }
});

Deno.test("parseCidr() strict refuses host bits; hostRange() skips network and broadcast", () => {
  assertThrows(() => parseCidr("10.0.0.1/24", { strict: true }));
  const c = parseCidr("10.0.0.0/24", { strict: true });
  const { first, last } = hostRange(c);
  assertEquals([formatIp({ family: 4, value: first }), formatIp({ family: 4, value: last })], [
    "10.0.0.1",
    "10.0.0.254",
  ]);
  assertEquals(formatIp(gatewayOf(c)), "10.0.0.1");
  const v6 = parseCidr("fd00::/120");
  assertEquals(formatIp({ family: 6, value: hostRange(v6).last }), "fd00::ff");
});

Deno.test("cidrContains(), cidrsOverlap() and isTooSmall() across families", () => {
  assertEquals(cidrContains(parseCidr("10.0.0.0/8"), parseIp("10.9.9.9")), true);
  assertEquals(cidrContains(parseCidr("10.0.0.0/8"), parseIp("fd00::1")), false);
  assertEquals(cidrsOverlap(parseCidr("10.0.0.0/8"), parseCidr("10.1.0.0/16")), true);
  assertEquals(cidrsOverlap(parseCidr("10.0.0.0/16"), parseCidr("10.1.0.0/16")), false);
  assertEquals([isTooSmall(parseCidr("10.0.0.0/30")), isTooSmall(parseCidr("10.0.0.0/31"))], [
    false,
    true,
  ]);
  assertEquals(formatCidr(parseCidr("fd00:10:244:1::/64")), "fd00:10:244:1::/64");
});

Deno.test("aggregateCidrs() drops contained networks and keeps non-siblings apart", () => {
  const out = aggregateCidrs(
    ["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/24", "11.0.2.0/24"].map((c) => parseCidr(c)),
  );
  assertEquals(out.map((c) => c.prefix), [8, 24, 24]);
});
