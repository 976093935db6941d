import { CniError } from "../../../lib/cni/errors.ts";
import { parseNetConf } from "../../../lib/cni/netconf.ts";
import { formatCidr } from "../../../lib/ip/cidr.ts";
import { assertEquals, assertMatch, assertThrows } from "../../harness/assert.ts";

const base = { cniVersion: "1.1.0", name: "mycni", type: "mycni", podcidr: "10.244.1.0/24" };

function codeOf(json: unknown): [number, string] {
  const err = assertThrows(() => parseNetConf(json));
  if (!(err instanceof CniError)) throw err;
  return [err.code, err.message + " " + err.details];
}

Deno.test("parseNetConf() fills DESIGN.md's defaults", () => {
  const conf = parseNetConf(base);
  assertEquals(
    [
      conf.bridge,
      conf.dataDir,
      conf.hairpinMode,
      conf.ipMasq,
      conf.logFile,
      conf.logLevel,
      conf.mtu,
    ],
    ["cni0", "/var/lib/cni/networks", true, false, "/var/log/mycni.log", "info", undefined],
  );
  assertEquals(conf.podCIDRs.map(formatCidr), ["10.244.1.0/24"]);
});

Deno.test("parseNetConf() takes podcidr and podCIDRs together as one dual-stack set", () => {
  const conf = parseNetConf({ ...base, podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] });
  assertEquals(conf.podCIDRs.map(formatCidr), ["10.244.1.0/24", "fd00:10:244:1::/64"]);
});

Deno.test("parseNetConf() takes agentSocket only when given", () => {
  assertEquals(parseNetConf(base).agentSocket, undefined);
  assertEquals("agentSocket" in parseNetConf(base), false);
  const conf = parseNetConf({ ...base, agentSocket: "/run/mycni/agent.sock" });
  assertEquals(conf.agentSocket, "/run/mycni/agent.sock");
});

Deno.test("parseNetConf() ignores unknown fields", () => {
  assertEquals(parseNetConf({ ...base, somethingNew: { x: 1 } }).name, "mycni");
});

const bad: [string, Record<string, unknown>, number, RegExp][] = [
  ["missing cniVersion", { ...base, cniVersion: undefined }, 1, /0\.1\.0/],
  ["old cniVersion", { ...base, cniVersion: "0.2.0" }, 1, /Incompatible/],
  ["numeric cniVersion", { ...base, cniVersion: 1 }, 1, /Incompatible/],
  ["bad name", { ...base, name: "a/b" }, 7, /"name"/],
  ["missing name", { ...base, name: undefined }, 7, /"name": is required/],
  ["bridge too long", { ...base, bridge: "averyveryverylongbridge" }, 7, /"bridge"/],
  ["bridge wrong type", { ...base, bridge: 5 }, 7, /"bridge": want a string/],
  ["mtu as string", { ...base, mtu: "1500" }, 7, /"mtu"/],
  ["mtu too small", { ...base, mtu: 20 }, 7, /"mtu"/],
  ["hairpin as string", { ...base, hairpinMode: "yes" }, 7, /"hairpinMode"/],
  ["ipMasq as number", { ...base, ipMasq: 1 }, 7, /"ipMasq"/],
  ["log level", { ...base, logLevel: "loud" }, 7, /"logLevel"/],
  ["no CIDR", { ...base, podcidr: undefined }, 7, /required/],
  ["garbage CIDR", { ...base, podcidr: "10.244.1/24" }, 7, /"podcidr"/],
  ["host bits", { ...base, podcidr: "10.244.1.1/24" }, 7, /host bits/],
  ["too small v4", { ...base, podcidr: "10.244.1.0/31" }, 7, /too small/],
  ["too small v6", { ...base, podcidr: "fd00::/127" }, 7, /too small/],
  ["two v4", { ...base, podCIDRs: ["10.9.0.0/24"] }, 7, /at most one IPv4/],
  ["overlap", { ...base, podCIDRs: ["10.244.0.0/16"] }, 7, /overlaps/],
  ["podCIDRs not a list", { ...base, podCIDRs: "10.1.0.0/24" }, 7, /"podCIDRs"/],
  [
    "podCIDRs entry not a string",
    { ...base, podcidr: undefined, podCIDRs: [5] },
    7,
    /podCIDRs\[0\]/,
  ],
  ["ipam not an object", { ...base, ipam: "host-local" }, 7, /"ipam"/],
  ["agentSocket as number", { ...base, agentSocket: 1 }, 7, /"agentSocket": want a string/],
  ["agentSocket null", { ...base, agentSocket: null }, 7, /"agentSocket": want a string/],
  ["agentSocket relative", { ...base, agentSocket: "agent.sock" }, 7, /"agentSocket".*absolute/],
  [
    "agentSocket past sun_path",
    { ...base, agentSocket: "/" + "s".repeat(107) },
    7,
    /"agentSocket": longer than 107 bytes/,
  ],
  ["ipam type with slash", { ...base, ipam: { type: "../x" } }, 7, /"ipam.type"/],
  [
    "valid-attachments not a list",
    { ...base, "cni.dev/valid-attachments": {} },
    7,
    /valid-attachments/,
  ],
  [
    "valid-attachments bad id",
    { ...base, "cni.dev/valid-attachments": [{ containerID: "../x", ifname: "eth0" }] },
    7,
    /valid-attachments\[0\]/,
  ],
];
for (const [what, json, code, re] of bad) {
  Deno.test(`parseNetConf() rejects ${what} with code ${code}`, () => {
    const [got, msg] = codeOf(json);
    assertEquals(got, code, msg);
    assertMatch(msg, re);
  });
}

Deno.test("parseNetConf() rejects a config that is not an object", () => {
  assertEquals(codeOf([1, 2])[0], 7);
  assertEquals(codeOf(null)[0], 7);
});
