import { formatResult, parseResult, type Result } from "../../../lib/cni/result.ts";
import { assertEquals } from "../../harness/assert.ts";

const result: Result = {
  interfaces: [{ name: "cni0", mac: "02:00:00:00:00:01" }, {
    name: "eth0",
    mac: "02:00:00:00:00:02",
    mtu: 1400,
    sandbox: "/run/netns/p",
  }],
  ips: [{ address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 }, {
    address: "fd00::5/64",
    gateway: "fd00::1",
    interface: 1,
  }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.1" }],
};

Deno.test("formatResult() writes 1.1.0 with interface MTU", () => {
  const out = formatResult(result, "1.1.0") as { interfaces: { mtu?: number }[] };
  assertEquals(out.interfaces[1].mtu, 1400);
});

Deno.test("formatResult() drops 1.1 fields for 1.0.0 and adds ips[].version for 0.x", () => {
  const v1 = formatResult(result, "1.0.0") as { interfaces: object[]; ips: object[] };
  assertEquals(v1.interfaces[1], {
    name: "eth0",
    mac: "02:00:00:00:00:02",
    sandbox: "/run/netns/p",
  });
  assertEquals(v1.ips[0], { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 });
  const v04 = formatResult(result, "0.4.0") as { ips: { version: string }[] };
  assertEquals(v04.ips.map((i) => i.version), ["4", "6"]);
});

Deno.test("formatResult() omits empty dns", () => {
  assertEquals("dns" in formatResult({ ...result, dns: {} }, "1.1.0"), false);
  assertEquals(formatResult({ ...result, dns: { nameservers: ["10.96.0.10"] } }, "1.1.0").dns, {
    nameservers: ["10.96.0.10"],
  });
});

Deno.test("parseResult() reads every version back into one shape", () => {
  for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const) {
    const back = parseResult(formatResult(result, v), "prevResult");
    assertEquals(back.ips?.map((i) => i.address), ["10.244.1.5/24", "fd00::5/64"]);
  }
  const legacy = parseResult({
    cniVersion: "0.2.0",
    ip4: { ip: "10.1.0.5/16", gateway: "10.1.0.1", routes: [{ dst: "0.0.0.0/0" }] },
  }, "x");
  assertEquals(legacy, {
    ips: [{ address: "10.1.0.5/16", gateway: "10.1.0.1" }],
    routes: [{ dst: "0.0.0.0/0" }],
  });
});
