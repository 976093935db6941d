// Canonical text from address and CIDR text (memoised), and what is read from lists of them.
import { canonicalCidr, canonicalIp, familiesOf, validCidrs } from "../../../lib/ip/canonical.ts";
import { formatCidr } from "../../../lib/ip/cidr.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("canonicalCidr() writes a strict CIDR canonically, or says why it is none", () => {
  const hit = canonicalCidr("FD00:10:244:0002::/64");
  assertEquals("text" in hit && hit.text, "fd00:10:244:2::/64");
  assertEquals("error" in canonicalCidr("10.244.1.1/24"), true); // host bits set
  assertEquals(canonicalCidr("FD00:10:244:0002::/64"), hit); // the same answer again
});

Deno.test("canonicalIp() writes an address canonically, or answers undefined", () => {
  assertEquals(canonicalIp("FD00:0:0::1"), { family: 6, text: "fd00::1" });
  assertEquals(canonicalIp("192.0.2.11"), { family: 4, text: "192.0.2.11" });
  assertEquals(canonicalIp("192.0.2.300"), undefined);
});

Deno.test("validCidrs() parses the valid CIDRs of a list and skips the rest", () => {
  assertEquals(validCidrs(["10.244.1.0/24", "nope", "fd00::/64"]).map(formatCidr), [
    "10.244.1.0/24",
    "fd00::/64",
  ]);
});

Deno.test("familiesOf() lists the families present, v4 first", () => {
  assertEquals(familiesOf(["fd00::/64", "10.0.0.0/8"]), [4, 6]);
  assertEquals(familiesOf(["fd00::/64"]), [6]);
  assertEquals(familiesOf(["10.0.0.0/33"]), []);
});
