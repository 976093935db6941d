import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseAgentArgs, UsageError } from "../../../lib/node/options.ts";

Deno.test("parseAgentArgs() applies the contract's defaults", () => {
  const o = parseAgentArgs(["--nodes-file", "/n.json"], { NODE_NAME: "n1" });
  assertEquals(o.nodeName, "n1");
  assertEquals(o.cniBinDir, "/opt/cni/bin");
  assertEquals(o.cniConfDir, "/etc/cni/net.d");
  assertEquals(o.cniDataDir, "/var/lib/cni/networks");
  assertEquals(o.logFile, "/var/log/mycni.log");
  assertEquals(o.healthAddr, { hostname: "127.0.0.1", port: 9749 });
  assertEquals(o.clusterCidrs, []);
  assertEquals([o.once, o.uninstall, o.kube], [false, false, undefined]);
});

Deno.test("parseAgentArgs() takes repeated --cluster-cidr and the in-cluster service account", () => {
  const o = parseAgentArgs(
    ["--node-name", "n1", "--cluster-cidr", "10.244.0.0/16", "--cluster-cidr", "fd00:10:244::/56"],
    { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
  );
  assertEquals(o.clusterCidrs, ["10.244.0.0/16", "fd00:10:244::/56"]);
  assertEquals(o.kube, {
    url: "https://10.96.0.1:443",
    tokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
    caFile: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
  });
});

Deno.test("parseAgentArgs() uses only the named token and CA outside a pod", () => {
  const o = parseAgentArgs(["--node-name", "n1", "--kube-api", "http://127.0.0.1:6443"], {});
  assertEquals(o.kube, { url: "http://127.0.0.1:6443", tokenFile: undefined, caFile: undefined });
});

Deno.test("parseAgentArgs() rejects a missing node name, source, bad CIDR or unknown flag", () => {
  assertThrows(() => parseAgentArgs(["--nodes-file", "f"], {}), UsageError);
  assertThrows(() => parseAgentArgs(["--node-name", "n1"], {}), /No node source/);
  assertThrows(
    () =>
      parseAgentArgs(
        ["--node-name", "n1", "--nodes-file", "f", "--cluster-cidr", "10.0.0.1/8"],
        {},
      ),
    /host bits/,
  );
  assertThrows(() => parseAgentArgs(["--node-name", "n1", "--bogus"], {}), UsageError);
});

Deno.test("parseAgentArgs() needs no node or source for --uninstall", () => {
  const o = parseAgentArgs(["--uninstall", "--health-addr", "[::1]:9000"], {});
  assertEquals([o.uninstall, o.healthAddr], [true, { hostname: "::1", port: 9000 }]);
});

Deno.test("parseAgentArgs() defaults to --backend auto, VNI 1, port 8472", () => {
  const o = parseAgentArgs(["--node-name", "n1", "--nodes-file", "f"], {});
  assertEquals([o.backend, o.vxlanVni, o.vxlanPort], ["auto", 1, 8472]);
  const v = parseAgentArgs(
    ["--node-name", "n1", "--nodes-file", "f", "--backend", "vxlan", "--vxlan-vni", "42"],
    {},
  );
  assertEquals([v.backend, v.vxlanVni, v.vxlanPort], ["vxlan", 42, 8472]);
});

Deno.test("parseAgentArgs() rejects an unknown backend, a VNI past 24 bits, a bad port", () => {
  const args = ["--node-name", "n1", "--nodes-file", "f"];
  assertThrows(() => parseAgentArgs([...args, "--backend", "udp"], {}), /--backend wants one of/);
  assertThrows(() => parseAgentArgs([...args, "--vxlan-vni", "16777216"], {}), /--vxlan-vni/);
  assertThrows(() => parseAgentArgs([...args, "--vxlan-port", "0"], {}), /--vxlan-port/);
  assertThrows(() => parseAgentArgs([...args, "--vxlan-port", "8472x"], {}), UsageError);
});
