import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseCidr } from "../../../lib/ip/cidr.ts";
import {
  aggregateCidrs,
  clusterCidrs,
  familiesOf,
  NETWORK_NAME,
  renderConflist,
} from "../../../lib/node/conflist.ts";
import { parseNetConf } from "../../../lib/cni/netconf.ts";
import type { NodeInfo } from "../../../lib/kube/node.ts";

const nodes: NodeInfo[] = [
  {
    name: "n1",
    ips: ["192.0.2.11", "2001:db8::11"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  },
  {
    name: "n2",
    ips: ["192.0.2.12", "2001:db8::12"],
    podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
  },
  { name: "n3", ips: ["192.0.2.13"], podCIDRs: ["10.244.3.0/24", "fd00:10:244:3::/64"] },
];

Deno.test("clusterCidrs() aggregates every node's podCIDRs when none are given", () => {
  const many = Array.from({ length: 256 }, (_, i) => ({
    name: `n${i}`,
    ips: [],
    podCIDRs: [`10.244.${i}.0/24`],
  }));
  assertEquals(clusterCidrs([], many), ["10.244.0.0/16"]);
  assertEquals(clusterCidrs([], nodes), [
    "10.244.1.0/24",
    "10.244.2.0/23",
    "fd00:10:244:1::/64",
    "fd00:10:244:2::/63",
  ]);
});

Deno.test("clusterCidrs() uses --cluster-cidr when given, whatever the nodes say", () => {
  assertEquals(clusterCidrs(["10.244.0.0/16", "fd00:10:244::/56"], nodes), [
    "10.244.0.0/16",
    "fd00:10:244::/56",
  ]);
});

Deno.test("aggregateCidrs() drops contained networks and keeps non-siblings apart", () => {
  const out = aggregateCidrs(
    ["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/24", "11.0.2.0/24"].map((c) => parseCidr(c)),
  );
  assertEquals(out.map((c) => c.prefix), [8, 24, 24]);
});

Deno.test("familiesOf() lists the families present, v4 first", () => {
  assertEquals(familiesOf(["fd00::/64", "10.0.0.0/8"]), [4, 6]);
  assertEquals(familiesOf(["fd00::/64"]), [6]);
});

Deno.test("renderConflist() chains portmap only when asked", () => {
  const input = {
    podCIDRs: ["10.244.1.0/24"],
    dataDir: "/var/lib/cni/networks",
    logFile: "/var/log/mycni.log",
    mtu: 1450,
  };
  const withPortmap = JSON.parse(renderConflist({ ...input, portmap: true }));
  assertEquals(withPortmap, {
    cniVersion: "1.0.0",
    cniVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    name: "mycni",
    plugins: [
      {
        type: "mycni",
        bridge: "cni0",
        podCIDRs: ["10.244.1.0/24"],
        dataDir: "/var/lib/cni/networks",
        logFile: "/var/log/mycni.log",
        mtu: 1450,
        hairpinMode: true,
        capabilities: { ips: true },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  });
  const without = JSON.parse(renderConflist({ ...input, portmap: false }));
  assertEquals(without.plugins.length, 1);
});

Deno.test("renderConflist() writes agentSocket into the plugin's config only when given", () => {
  const input = {
    podCIDRs: ["10.244.1.0/24"],
    dataDir: "/var/lib/cni/networks",
    logFile: "/var/log/mycni.log",
    mtu: 1450,
    portmap: true,
  };
  const without = JSON.parse(renderConflist(input));
  assertEquals("agentSocket" in without.plugins[0], false);
  assertEquals(renderConflist({ ...input, agentSocket: undefined }), renderConflist(input));
  const withSocket = JSON.parse(renderConflist({ ...input, agentSocket: "/run/mycni/agent.sock" }));
  assertEquals(withSocket.plugins[0].agentSocket, "/run/mycni/agent.sock");
  assertEquals("agentSocket" in withSocket.plugins[1], false, "portmap is not told");
  // The plugin's own parser takes what the agent writes.
  const conf = parseNetConf({
    cniVersion: withSocket.cniVersion,
    name: withSocket.name,
    ...withSocket.plugins[0],
  });
  assertEquals([conf.agentSocket, conf.name], ["/run/mycni/agent.sock", NETWORK_NAME]);
});
