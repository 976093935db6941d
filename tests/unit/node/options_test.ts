import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import {
  parseAgentArgs,
  parseExplainArgs,
  parseFlowsArgs,
  UsageError,
} from "../../../lib/node/options.ts";

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
  assertEquals(o.agentSocket, "/run/mycni/agent.sock");
});

Deno.test("parseAgentArgs() takes --agent-socket, absolute and within a unix socket's limit", () => {
  const args = ["--node-name", "n1", "--nodes-file", "f", "--agent-socket"];
  assertEquals(parseAgentArgs([...args, "/var/run/x/a.sock"], {}).agentSocket, "/var/run/x/a.sock");
  assertThrows(() => parseAgentArgs([...args, "a.sock"], {}), /--agent-socket wants an absolute/);
  assertThrows(() => parseAgentArgs([...args, "/" + "s".repeat(107)], {}), /longer than 107/);
  assertThrows(() => parseAgentArgs(args, {}), UsageError);
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

Deno.test("parseAgentArgs() takes --no-masquerade-cidr (repeated or comma-separated) and --network-policy", () => {
  const o = parseAgentArgs(
    [
      "--node-name",
      "n1",
      "--nodes-file",
      "f",
      "--no-masquerade-cidr",
      "172.16.0.0/12,fd00:99::/64",
      "--no-masquerade-cidr",
      "192.168.0.0/16",
      "--network-policy=false",
    ],
    {},
  );
  assertEquals(o.noMasqueradeCidrs, ["172.16.0.0/12", "fd00:99::/64", "192.168.0.0/16"]);
  assertEquals(o.networkPolicy, false);
  assertEquals(parseAgentArgs(["--node-name", "n1", "--nodes-file", "f"], {}).networkPolicy, true);
  assertThrows(
    () =>
      parseAgentArgs(["--node-name", "n1", "--nodes-file", "f", "--network-policy", "maybe"], {}),
    /--network-policy wants true or false/,
  );
  assertThrows(
    () =>
      parseAgentArgs([
        "--node-name",
        "n1",
        "--nodes-file",
        "f",
        "--no-masquerade-cidr",
        "10.0.0.1/8",
      ], {}),
    /--no-masquerade-cidr: .*host bits/,
  );
});

Deno.test("parseExplainArgs() reads the flow and defaults the protocol to TCP", () => {
  assertEquals(parseExplainArgs(["--from", "x/a", "--to", "y/b", "--port", "80"]), {
    from: "x/a",
    to: "y/b",
    port: 80,
    protocol: "TCP",
    healthAddr: { hostname: "127.0.0.1", port: 9749 },
  });
  const o = parseExplainArgs([
    "--from",
    "x/a",
    "--to",
    "203.0.113.1",
    "--port",
    "53/udp",
    "--health-addr",
    "127.0.0.1:9000",
  ]);
  assertEquals([o.to, o.port, o.protocol, o.healthAddr.port], ["203.0.113.1", 53, "UDP", 9000]);
  for (
    const bad of [
      ["--from", "x/a", "--to", "y/b"],
      ["--from", "a", "--to", "y/b", "--port", "80"],
      ["--from", "x/a", "--to", "y/b", "--port", "80/ICMP"],
      ["--from", "x/a", "--to", "y/b", "--port", "70000"],
    ]
  ) {
    assertThrows(() => parseExplainArgs(bad), UsageError, bad.join(" "));
  }
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

Deno.test("parseAgentArgs() defaults to --policy-strict true, --flow-log denied, rate 100", () => {
  const o = parseAgentArgs(["--node-name", "n1", "--nodes-file", "f"], {});
  assertEquals([o.policyStrict, o.flowLog, o.flowLogRate], [true, "denied", 100]);
  const v = parseAgentArgs(
    [
      "--node-name",
      "n1",
      "--nodes-file",
      "f",
      "--policy-strict",
      "false",
      "--flow-log",
      "none",
      "--flow-log-rate",
      "7",
    ],
    {},
  );
  assertEquals([v.policyStrict, v.flowLog, v.flowLogRate], [false, "none", 7]);
});

Deno.test("parseAgentArgs() rejects a bad --policy-strict, --flow-log or --flow-log-rate", () => {
  const args = ["--node-name", "n1", "--nodes-file", "f"];
  assertThrows(() => parseAgentArgs([...args, "--policy-strict", "maybe"], {}), /--policy-strict/);
  assertThrows(() => parseAgentArgs([...args, "--flow-log", "all"], {}), /--flow-log wants one/);
  for (const rate of ["0", "-1", "1.5", "x", "1000001"]) {
    assertThrows(
      () => parseAgentArgs([...args, `--flow-log-rate=${rate}`], {}),
      /--flow-log-rate wants/,
      rate,
    );
  }
});

Deno.test("parseFlowsArgs() takes --follow, --json and --health-addr, and nothing else", () => {
  assertEquals(parseFlowsArgs([]), {
    follow: false,
    json: false,
    healthAddr: { hostname: "127.0.0.1", port: 9749 },
  });
  assertEquals(parseFlowsArgs(["--follow", "--json", "--health-addr", "[::1]:9000"]), {
    follow: true,
    json: true,
    healthAddr: { hostname: "::1", port: 9000 },
  });
  assertThrows(() => parseFlowsArgs(["--from", "x/a"]), UsageError);
  assertThrows(() => parseFlowsArgs(["extra"]), UsageError);
});
