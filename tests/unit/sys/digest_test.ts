import { nameDigest } from "../../../lib/sys/digest.ts";
import { derivedMac, hostVethName, isHostVethName } from "../../../lib/plugin/plan.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";

Deno.test("nameDigest() is 32 lowercase hex characters and stable", () => {
  assertMatch(nameDigest("abc/eth0"), /^[0-9a-f]{32}$/);
  assertEquals(nameDigest("abc/eth0"), nameDigest("abc/eth0"));
});

Deno.test("hostVethName() gives 15-character names without collisions over 20000 pods", () => {
  const names = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const n = hostVethName(`${i.toString(16).padStart(64, "0")}`, "eth0");
    assert(isHostVethName(n) && n.length === 15, n);
    names.add(n);
  }
  assertEquals(names.size, 20000);
});

Deno.test("derivedMac() is a locally administered unicast address", () => {
  for (const seed of ["a", "b", "pod/x/eth0"]) {
    const mac = derivedMac(seed);
    assertMatch(mac, /^02(:[0-9a-f]{2}){5}$/);
    // The same MAC as every earlier version gave (CHECK compares the pod's MAC with it).
    assertEquals(mac, ["02", ...nameDigest(seed).slice(0, 10).match(/../g)!].join(":"));
  }
});
