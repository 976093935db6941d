import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { renderConflist } from "../../../lib/node/conflist.ts";

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
