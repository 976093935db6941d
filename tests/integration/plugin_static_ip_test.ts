// Static IPs through the built plugin in real namespaces: an address asked for in CNI_ARGS
// `IP=` (podman --ip) or in runtimeConfig.ips (what libcni sends a plugin that declares the `ips`
// capability, e.g. podman --ip with --ip6) is configured in the pod, reported in the result and
// released on DEL, for IPv4, IPv6 and both; one that is taken or outside the pool is refused
// and the node and the pod are left exactly as they were.
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, ping, type TempNetns } from "../harness/netns.ts";
import { type PluginRun, resultIps, type TestNode, testNode } from "../harness/plugin.ts";
import { diffState, snapshot } from "../reliability/node_state.ts";

const ignore = !canRunPrivileged;
const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));

/** One node layout: its podCIDRs, and free addresses to ask for (one per podCIDR, in order). */
interface Layout {
  readonly name: string;
  readonly podCIDRs: string[];
  readonly free: string[];
  /** Another free address per podCIDR, for a second pod. */
  readonly other: string[];
}

const LAYOUTS: readonly Layout[] = [
  { name: "IPv4", podCIDRs: ["10.250.20.0/24"], free: ["10.250.20.77"], other: ["10.250.20.78"] },
  {
    name: "IPv6",
    podCIDRs: ["fd00:250:20::/64"],
    free: ["fd00:250:20::77"],
    other: ["fd00:250:20::78"],
  },
  {
    name: "dual-stack",
    podCIDRs: ["10.250.20.0/24", "fd00:250:20::/64"],
    free: ["10.250.20.77", "fd00:250:20::77"],
    other: ["10.250.20.78", "fd00:250:20::78"],
  },
];

/** How the runtime asks: podman's CNI_ARGS, or runtimeConfig.ips (prefix allowed there). */
type Via = "CNI_ARGS" | "runtimeConfig";

function ask(node: TestNode, via: Via, ips: readonly string[], prefixes: readonly number[]) {
  return via === "CNI_ARGS"
    ? { args: `IgnoreUnknown=1;K8S_POD_NAME=static;IP=${ips.join(",")}`, conf: node.conf() }
    : {
      args: "IgnoreUnknown=1;K8S_POD_NAME=static",
      conf: node.conf({ runtimeConfig: { ips: ips.map((ip, i) => `${ip}/${prefixes[i]}`) } }),
    };
}

const prefixOf = (cidr: string) => Number(cidr.split("/")[1]);
const gatewayOf = (cidr: string) => cidr.replace(/0?\/\d+$/, "1");

/** Global addresses on the pod's eth0, as the kernel has them ("ip/prefix"). */
async function podAddrs(pod: TempNetns): Promise<string[]> {
  const out = await runOutput(
    pod.exec(["ip", "-j", "addr", "show", "dev", "eth0", "scope", "global"]),
  );
  if (out.code !== 0) return [];
  const [link] = JSON.parse(out.stdout) as { addr_info: { local?: string; prefixlen: number }[] }[];
  // `scope global` leaves an empty object for every address it filtered out.
  return link.addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`).sort();
}

/** The IPAM record of `ip`, or undefined when nobody holds it. */
async function holder(node: TestNode, ip: string): Promise<string | undefined> {
  return await Deno.readTextFile(`${node.dataDir}/testnet/${ip}`).catch(() => undefined);
}

/** ADD for a fresh attachment asking for `ips` the way `via` does. */
async function add(node: TestNode, id: string, pod: TempNetns, via: Via, ips: string[]) {
  const cidrs = node.conf().podCIDRs as string[];
  // runtimeConfig.ips may carry a prefix ("<ip>[/<prefix>]"): send the podCIDR's, as podman does.
  const prefixes = ips.map((ip) => {
    const cidr = cidrs.find((c) => c.includes(":") === ip.includes(":"));
    return cidr ? prefixOf(cidr) : ip.includes(":") ? 128 : 32;
  });
  return await node.exec({
    command: "ADD",
    containerId: id,
    netns: pod.path,
    ...ask(node, via, ips, prefixes),
  });
}

for (const layout of LAYOUTS) {
  for (const via of ["CNI_ARGS", "runtimeConfig"] as const) {
    Deno.test({
      name: `${layout.name} static IP via ${via} is configured, reported and released on DEL`,
      ignore,
    }, async () => {
      await using node = await testNode({ podCIDRs: layout.podCIDRs });
      const pod = await node.pod();
      const r = await add(node, "static-1", pod, via, layout.free);
      assertEquals(r.code, 0, r.stdout);
      const want = layout.free.map((ip, i) => `${ip}/${prefixOf(layout.podCIDRs[i])}`);
      // Reported: exactly the asked-for addresses, each with its podCIDR's gateway.
      assertEquals(
        (r.json?.ips as { address: string; gateway: string }[]).map((i) => [i.address, i.gateway]),
        want.map((a, i) => [a, gatewayOf(layout.podCIDRs[i])]),
      );
      // Configured: the kernel has them on the pod's eth0, and they carry packets.
      assertEquals(await podAddrs(pod), [...want].sort());
      for (const cidr of layout.podCIDRs) {
        assert(await ping(pod, gatewayOf(cidr)), `pod cannot ping its gateway ${gatewayOf(cidr)}`);
      }
      // Held in IPAM by this attachment.
      for (const ip of layout.free) {
        assertMatch(String(await holder(node, ip)), /^static-1\r\neth0\r\nstatic$/);
      }
      const del = await node.exec({
        command: "DEL",
        containerId: "static-1",
        netns: pod.path,
        conf: node.conf(),
      });
      assertEquals([del.code, del.stdout], [0, ""]);
      assertEquals(await node.allocations(), []);
      assertEquals(vethsOf(await node.links()), []);
      // Released for real: another pod gets the same addresses.
      const again = await add(node, "static-2", await node.pod(), via, layout.free);
      assertEquals(resultIps(again), want, again.stdout);
    });
  }
}

/**
 * Runs a refused ADD for a fresh pod and checks that it changed nothing: the node's links,
 * addresses, routes, rules and IPAM files, and the pod's namespace, are as before.
 */
async function assertRefused(
  node: TestNode,
  run: (pod: TempNetns) => Promise<PluginRun>,
  code: number,
  msg: RegExp,
) {
  const pod = await node.pod();
  const before = await snapshot(node.netns.path, node.dataDir);
  const podBefore = await snapshot(pod.path, "/nonexistent");
  const r = await run(pod);
  assertEquals([r.code, r.json?.code], [1, code], r.stdout);
  assertMatch(String(r.json?.msg), msg);
  assertEquals(
    diffState(before, await snapshot(node.netns.path, node.dataDir)),
    "",
    "node changed",
  );
  assertEquals(diffState(podBefore, await snapshot(pod.path, "/nonexistent")), "", "pod changed");
}

for (const via of ["CNI_ARGS", "runtimeConfig"] as const) {
  Deno.test({
    name:
      `A static IP via ${via} that another container holds is refused with 11, changing nothing`,
    ignore,
  }, async () => {
    await using node = await testNode({ podCIDRs: ["10.250.21.0/24", "fd00:250:21::/64"] });
    const first = await add(node, "holder", await node.pod(), via, [
      "10.250.21.9",
      "fd00:250:21::9",
    ]);
    assertEquals(first.code, 0, first.stdout);
    const held = await node.allocations();
    // Each family taken on its own (the other one free), and both; IPv6 also in a non-canonical
    // spelling, which must name the same reservation.
    const asks = [
      ["10.250.21.9", "fd00:250:21::10"],
      ["10.250.21.10", "fd00:250:21::9"],
      ["10.250.21.10", "fd00:250:21:0:0::0:9"],
      ["10.250.21.9", "fd00:250:21::9"],
    ];
    for (const ips of asks) {
      await assertRefused(
        node,
        (pod) => add(node, "late", pod, via, ips),
        11,
        /Requested IP (10\.250\.21\.9|fd00:250:21::9) is already allocated/,
      );
    }
    // The holder keeps its addresses.
    assertEquals(await node.allocations(), held);
    assertMatch(String(await holder(node, "10.250.21.9")), /^holder\r\n/);
    assertMatch(String(await holder(node, "fd00:250:21::9")), /^holder\r\n/);
  });

  Deno.test({
    name:
      `A static IP via ${via} outside the pool, a gateway, network or broadcast address, or two in one pool, is refused with 7, changing nothing`,
    ignore,
  }, async () => {
    await using node = await testNode({ podCIDRs: ["10.250.22.0/24", "fd00:250:22::/64"] });
    // A live pod, so there is a bridge and IPAM state that must stay as they are.
    assertEquals((await node.addedPod("live")).add.code, 0);
    const cases: [string[], RegExp][] = [
      [["192.0.2.10", "fd00:250:22::10"], /192\.0\.2\.10 is not in any podCIDR/],
      [["10.250.22.10", "2001:db8::10"], /2001:db8::10 is not in any podCIDR/],
      [["10.250.22.1", "fd00:250:22::10"], /10\.250\.22\.1 is the gateway/],
      [["10.250.22.10", "fd00:250:22::1"], /fd00:250:22::1 is the gateway/],
      [["10.250.22.0", "fd00:250:22::10"], /10\.250\.22\.0 is the network address/],
      [["10.250.22.10", "fd00:250:22::"], /fd00:250:22:: is the network address/],
      [["10.250.22.255", "fd00:250:22::10"], /10\.250\.22\.255 is the broadcast address/],
      [["10.250.22.10", "10.250.22.11"], /more than one address in 10\.250\.22\.0\/24/],
    ];
    for (const [ips, msg] of cases) {
      await assertRefused(node, (pod) => add(node, "late", pod, via, ips), 7, msg);
    }
  });
}

Deno.test({
  name: "runtimeConfig.ips wins over CNI_ARGS IP= when a runtime sends both",
  ignore,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.23.0/24"] });
  const pod = await node.pod();
  const r = await node.exec({
    command: "ADD",
    containerId: "both",
    netns: pod.path,
    args: "IgnoreUnknown=1;IP=10.250.23.5",
    conf: node.conf({ runtimeConfig: { ips: ["10.250.23.6"] } }),
  });
  assertEquals(r.code, 0, r.stdout);
  assertEquals(resultIps(r), ["10.250.23.6/24"]);
  assertEquals(await podAddrs(pod), ["10.250.23.6/24"]);
});
