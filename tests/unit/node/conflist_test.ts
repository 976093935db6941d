import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { NETWORK_NAME, renderConflist } from "../../../lib/node/conflist.ts";
import { parseNetConf } from "../../../lib/cni/netconf.ts";

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
