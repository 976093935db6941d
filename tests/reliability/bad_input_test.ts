// A corpus of malformed invocations, each exec'd like a runtime would: every one must be
// answered with the spec's error JSON and the right code on stdout, a non-zero exit, and leave
// the node (links, addresses, routes, iptables, IPAM state dir) and the pod exactly as they were.
import { assert, assertEquals } from "../harness/assert.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { testNode } from "../harness/plugin.ts";
import { diffState, settledSnapshot, snapshot } from "./node_state.ts";

/** One bad invocation: env overrides (undefined removes the variable) and config or raw stdin. */
interface Case {
  readonly what: string;
  readonly code: number;
  readonly env?: Record<string, string | undefined>;
  /** Fields merged into the node's good config (undefined removes one). */
  readonly conf?: Record<string, unknown>;
  /** Raw stdin instead of a config. */
  readonly stdin?: string;
}

const LONG_ID = "a".repeat(4096);
const MiB = 1024 * 1024;

// Codes: 1 version, 4 env (a missing or empty CNI_CONTAINERID too, as in the reference skeleton:
// 3 means a container the plugin does not know), 6 decode, 7 config, 8 the plugin's own netns.
const CASES: readonly Case[] = [
  { what: "empty stdin", code: 6, stdin: "" },
  { what: "truncated JSON", code: 6, stdin: '{"cniVersion":"1.1.0","name":"testnet","type":' },
  { what: "invalid JSON (bare words)", code: 6, stdin: "{cniVersion: 1.1.0}" },
  { what: "10 MiB of garbage on stdin", code: 6, stdin: "x".repeat(10 * MiB) },
  { what: "10 MiB JSON string on stdin", code: 7, stdin: JSON.stringify("y".repeat(10 * MiB)) },
  { what: "raw NUL inside a JSON string", code: 6, stdin: '{"cniVersion":"1.1.0\u0000"}' },
  { what: "JSON nested 100k deep", code: 7, stdin: "[".repeat(100_000) + "]".repeat(100_000) },
  { what: "config is a list", code: 7, stdin: "[]" },
  { what: "config is null", code: 7, stdin: "null" },
  { what: "config is a number", code: 7, stdin: "42" },
  { what: "unsupported cniVersion", code: 1, conf: { cniVersion: "9.9.9" } },
  { what: "cniVersion 0.2.0", code: 1, conf: { cniVersion: "0.2.0" } },
  { what: "cniVersion with a trailing space", code: 1, conf: { cniVersion: "1.1.0 " } },
  { what: "cniVersion is a number", code: 1, conf: { cniVersion: 1.1 } },
  { what: "cniVersion missing (0.1.0)", code: 1, conf: { cniVersion: undefined } },
  { what: "name missing", code: 7, conf: { name: undefined } },
  { what: "name is a number", code: 7, conf: { name: 5 } },
  { what: "name with a slash", code: 7, conf: { name: "../etc" } },
  { what: "name empty", code: 7, conf: { name: "" } },
  { what: "name 4 KiB long", code: 7, conf: { name: LONG_ID } },
  { what: "type is an object", code: 7, conf: { type: {} } },
  { what: "bridge is a number", code: 7, conf: { bridge: 0 } },
  { what: "bridge with a slash", code: 7, conf: { bridge: "br/0" } },
  { what: "bridge longer than 15", code: 7, conf: { bridge: "bridge0123456789" } },
  { what: "podcidr is a number", code: 7, conf: { podcidr: 10, podCIDRs: undefined } },
  { what: "podcidr not a CIDR", code: 7, conf: { podcidr: "banana", podCIDRs: undefined } },
  { what: "podcidr prefix 33", code: 7, conf: { podcidr: "10.9.0.0/33", podCIDRs: undefined } },
  { what: "podcidr /31 too small", code: 7, conf: { podcidr: "10.9.0.0/31", podCIDRs: undefined } },
  { what: "podcidr /32 too small", code: 7, conf: { podcidr: "10.9.0.7/32", podCIDRs: undefined } },
  { what: "podCIDRs IPv6 /127 too small", code: 7, conf: { podCIDRs: ["fd00:9::/127"] } },
  {
    what: "podcidr with host bits",
    code: 7,
    conf: { podcidr: "10.9.0.5/24", podCIDRs: undefined },
  },
  { what: "podCIDRs not a list", code: 7, conf: { podCIDRs: "10.9.0.0/24" } },
  { what: "podCIDRs holds a number", code: 7, conf: { podCIDRs: [42] } },
  { what: "podCIDRs overlapping", code: 7, conf: { podCIDRs: ["10.9.0.0/16", "10.9.1.0/24"] } },
  { what: "podCIDRs two IPv4", code: 7, conf: { podCIDRs: ["10.9.0.0/24", "10.8.0.0/24"] } },
  { what: "podcidr overlapping podCIDRs", code: 7, conf: { podcidr: "10.250.0.0/16" } },
  { what: "no pod network at all", code: 7, conf: { podCIDRs: undefined } },
  { what: "ipam is a string", code: 7, conf: { ipam: "host-local" } },
  { what: "ipam without type", code: 7, conf: { ipam: {} } },
  { what: "ipam type with a slash", code: 7, conf: { ipam: { type: "../../bin/sh" } } },
  { what: "ipam plugin not in CNI_PATH", code: 7, conf: { ipam: { type: "no-such-ipam" } } },
  { what: "dataDir is a list", code: 7, conf: { dataDir: ["/tmp"] } },
  { what: "dataDir cannot be created", code: 5, conf: { dataDir: "/proc/mcr-no-such/ipam" } },
  { what: "mtu is a string", code: 7, conf: { mtu: "1500" } },
  { what: "mtu too small", code: 7, conf: { mtu: 10 } },
  { what: "mtu not an integer", code: 7, conf: { mtu: 1499.5 } },
  { what: "mtu too large", code: 7, conf: { mtu: 65536 } },
  { what: "hairpinMode is a string", code: 7, conf: { hairpinMode: "yes" } },
  { what: "ipMasq is a number", code: 7, conf: { ipMasq: 1 } },
  { what: "logFile is false", code: 7, conf: { logFile: false } },
  { what: "logLevel unknown", code: 7, conf: { logLevel: "loud" } },
  { what: "prevResult is a string", code: 6, conf: { prevResult: "yes" } },
  { what: "prevResult ips not a list", code: 6, conf: { prevResult: { ips: 3 } } },
  { what: "unknown CNI_COMMAND", code: 4, env: { CNI_COMMAND: "DESTROY" } },
  { what: "lower-case CNI_COMMAND", code: 4, env: { CNI_COMMAND: "add" } },
  { what: "CNI_CONTAINERID missing", code: 4, env: { CNI_CONTAINERID: undefined } },
  { what: "CNI_CONTAINERID empty", code: 4, env: { CNI_CONTAINERID: "" } },
  // DEL and CHECK too: a DEL that took "" for a container could release the live pod's state.
  ...(["DEL", "CHECK"] as const).flatMap((verb) => [
    {
      what: `${verb} with CNI_CONTAINERID missing`,
      code: 4,
      env: { CNI_COMMAND: verb, CNI_CONTAINERID: undefined },
    },
    {
      what: `${verb} with CNI_CONTAINERID empty`,
      code: 4,
      env: { CNI_COMMAND: verb, CNI_CONTAINERID: "" },
    },
  ]),
  { what: "CNI_CONTAINERID with ..", code: 4, env: { CNI_CONTAINERID: "../../etc/passwd" } },
  { what: "CNI_CONTAINERID is ..", code: 4, env: { CNI_CONTAINERID: ".." } },
  { what: "CNI_CONTAINERID with /", code: 4, env: { CNI_CONTAINERID: "abc/def" } },
  { what: "CNI_CONTAINERID with a newline", code: 4, env: { CNI_CONTAINERID: "abc\ndef" } },
  { what: "CNI_CONTAINERID 4 KiB long", code: 4, env: { CNI_CONTAINERID: LONG_ID } },
  {
    what: "DEL with a bad CNI_CONTAINERID",
    code: 4,
    env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "a/../b" },
  },
  { what: "CNI_NETNS missing", code: 4, env: { CNI_NETNS: undefined } },
  { what: "CNI_NETNS empty on ADD", code: 4, env: { CNI_NETNS: "" } },
  { what: "CNI_NETNS does not exist", code: 4, env: { CNI_NETNS: "/run/netns/mcr-no-such-ns" } },
  { what: "CNI_NETNS is a mount namespace", code: 4, env: { CNI_NETNS: "/proc/self/ns/mnt" } },
  { what: "CNI_NETNS is a UTS namespace", code: 4, env: { CNI_NETNS: "/proc/self/ns/uts" } },
  { what: "CNI_NETNS is the plugin's own netns", code: 8, env: { CNI_NETNS: "/proc/self/ns/net" } },
  { what: "CNI_IFNAME missing", code: 4, env: { CNI_IFNAME: undefined } },
  { what: "CNI_IFNAME empty", code: 4, env: { CNI_IFNAME: "" } },
  { what: "CNI_IFNAME 16 characters", code: 4, env: { CNI_IFNAME: "eth0123456789abc" } },
  { what: "CNI_IFNAME with /", code: 4, env: { CNI_IFNAME: "eth/0" } },
  { what: "CNI_IFNAME is ..", code: 4, env: { CNI_IFNAME: ".." } },
  { what: "CNI_IFNAME with a colon", code: 4, env: { CNI_IFNAME: "eth0:1" } },
  { what: "CNI_IFNAME with a space", code: 4, env: { CNI_IFNAME: "eth 0" } },
  { what: "CNI_PATH missing", code: 4, env: { CNI_PATH: undefined } },
  { what: "CNI_ARGS without =", code: 4, env: { CNI_ARGS: "IgnoreUnknown" } },
  { what: "CNI_ARGS IP= not an address", code: 4, env: { CNI_ARGS: "IP=10.250.1.999" } },
  { what: "CNI_ARGS IP= outside the pool", code: 7, env: { CNI_ARGS: "IP=192.0.2.10" } },
  { what: "CNI_ARGS IP= the gateway", code: 7, env: { CNI_ARGS: "IP=10.250.1.1" } },
  { what: "runtimeConfig.ips not a list", code: 7, conf: { runtimeConfig: { ips: "10.250.1.9" } } },
  { what: "runtimeConfig.ips holds a number", code: 7, conf: { runtimeConfig: { ips: [9] } } },
  {
    what: "runtimeConfig.ips not an address",
    code: 7,
    conf: { runtimeConfig: { ips: ["10.250.1.999/24"] } },
  },
  {
    what: "runtimeConfig.ips outside the pool",
    code: 7,
    conf: { runtimeConfig: { ips: ["192.0.2.10"] } },
  },
  {
    what: "CHECK in config version 0.3.1",
    code: 1,
    env: { CNI_COMMAND: "CHECK" },
    conf: { cniVersion: "0.3.1" },
  },
  {
    what: "GC in config version 1.0.0",
    code: 1,
    env: { CNI_COMMAND: "GC" },
    conf: { cniVersion: "1.0.0" },
  },
  { what: "GC without valid-attachments", code: 7, env: { CNI_COMMAND: "GC" } },
  {
    what: "GC valid-attachments not a list",
    code: 7,
    env: { CNI_COMMAND: "GC" },
    conf: { "cni.dev/valid-attachments": "all" },
  },
  {
    what: "GC attachment with a bad ID",
    code: 7,
    env: { CNI_COMMAND: "GC" },
    conf: { "cni.dev/valid-attachments": [{ containerID: "../x", ifname: "eth0" }] },
  },
  {
    what: "GC attachment with a numeric ifname",
    code: 7,
    env: { CNI_COMMAND: "GC" },
    conf: { "cni.dev/valid-attachments": [{ containerID: "x", ifname: 0 }] },
  },
  {
    what: "STATUS with a broken podcidr",
    code: 7,
    env: { CNI_COMMAND: "STATUS" },
    conf: { podcidr: "10.9.0.0/99" },
  },
];

Deno.test({
  name:
    "Every malformed invocation gets error JSON with the right code and leaves the node unchanged",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.1.0/24", "fd00:250:1::/64"] });
  const good = node.conf();
  // A live pod first, so there is a bridge, a veth and IPAM state that must stay as they are.
  const live = await node.pod(), target = await node.pod();
  const add = await node.exec({
    command: "ADD",
    containerId: "live",
    netns: live.path,
    conf: good,
  });
  assertEquals(add.code, 0, add.stdout);
  // The regular file is a netns path that is not a namespace.
  const regular = `${node.dataDir}/../not-a-netns`;
  await Deno.writeTextFile(regular, "");
  const cases: Case[] = [
    ...CASES,
    { what: "CNI_NETNS is a regular file", code: 4, env: { CNI_NETNS: regular } },
    { what: "CNI_NETNS is a directory", code: 4, env: { CNI_NETNS: node.dataDir } },
  ];
  const baseEnv: Record<string, string> = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "bad-input",
    CNI_NETNS: target.path,
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bad",
    CNI_PATH: "/usr/lib/cni",
  };
  const before = await settledSnapshot(node.netns.path, node.dataDir);
  const podBefore = await snapshot(target.path, "/nonexistent");
  const failures: string[] = [];
  for (const c of cases) {
    const env = { ...baseEnv };
    for (const [k, v] of Object.entries(c.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const conf = { ...good, ...c.conf };
    for (const [k, v] of Object.entries(c.conf ?? {})) if (v === undefined) delete conf[k];
    const r = await node.exec({ command: "", conf: c.stdin ?? conf, env });
    const problems: string[] = [];
    if (r.code === 0) problems.push("exit 0");
    const json = r.json;
    if (!json) problems.push(`stdout is not JSON: ${r.stdout.slice(0, 120)}`);
    else {
      if (json.code !== c.code) problems.push(`code ${json.code}, want ${c.code}`);
      if (typeof json.msg !== "string" || json.msg === "") problems.push("no msg");
      if (typeof json.cniVersion !== "string") problems.push("no cniVersion");
      const extra = Object.keys(json).filter((k) =>
        !["cniVersion", "code", "msg", "details"].includes(k)
      );
      if (extra.length) problems.push(`extra keys ${extra}`);
    }
    if (r.stdout.trim().split("\n").length !== 1) problems.push("more than one line on stdout");
    const changed = diffState(before, await snapshot(node.netns.path, node.dataDir));
    if (changed) problems.push(`node changed: ${changed}`);
    const podChanged = diffState(podBefore, await snapshot(target.path, "/nonexistent"));
    if (podChanged) problems.push(`pod changed: ${podChanged}`);
    if (problems.length) {
      failures.push(`${c.what}: ${problems.join("; ")} (msg: ${String(json?.msg).slice(0, 160)})`);
    }
  }
  const clean = cases.length - failures.length;
  console.log(
    `reliability bad-input: ${cases.length} malformed invocations tried, ${clean} rejected cleanly` +
      ` (error JSON, right code, non-zero exit, node and pod unchanged), ${failures.length} not`,
  );
  assert(cases.length >= 40, "the corpus must hold at least 40 cases");
  assertEquals(failures, []);
  // The live pod is still intact and removable.
  const del = await node.exec({
    command: "DEL",
    containerId: "live",
    netns: live.path,
    conf: good,
  });
  assertEquals(del.code, 0, del.stdout);
  assertEquals(await node.allocations(), []);
});
