// The simulated cluster's address plan and underlay wiring: a "switch" namespace holding the
// underlay bridge, nodes and the external host hanging off it through veths; optionally a second
// segment (its own switch) joined to the first by a router namespace. Documentation ranges only
// (RFC 5737 TEST-NET, RFC 3849 2001:db8::/32, ULA), so nothing can leak anywhere.
import { inNetns, run, runOutput } from "../../lib/process/run.ts";

/** Underlay networks (the "LAN" between nodes). */
export const UNDERLAY = { v4: "192.0.2.0/24", v6: "fd00:192:0:2::/64" } as const;

/**
 * The external host: on the underlay (the nodes' default gateway) and with a "public"
 * TEST-NET address behind it. It has no route to any pod CIDR, so a pod's packet only gets an
 * answer when its node masqueraded it.
 */
export const EXTERNAL = {
  underlay: ["192.0.2.1", "fd00:192:0:2::1"],
  public: ["203.0.113.1", "2001:db8:203::1"],
} as const;

/** Where the fake API server listens in API mode (on the external host's underlay address). */
export const API_ADDR = `${EXTERNAL.underlay[0]}:6443`;

/** Cluster-wide pod ranges each node's podCIDR is cut from. */
export const CLUSTER_CIDRS = ["10.244.0.0/16", "fd00:10:244::/56"] as const;

/** One node's names and addresses, v4 first. */
export interface NodePlan {
  readonly name: string;
  readonly index: number;
  /** Underlay addresses. */
  readonly ips: readonly string[];
  readonly podCIDRs: readonly string[];
  /** The first address of each podCIDR: the bridge, the pods' gateway. */
  readonly gateways: readonly string[];
}

/**
 * Names and addresses of node `index` (1-based): n1 = 192.0.2.11, 10.244.1.0/24, ...
 *
 * @example
 * planNode(2, true).podCIDRs; // ["10.244.2.0/24", "fd00:10:244:2::/64"]
 */
export function planNode(index: number, dualStack: boolean): NodePlan {
  return planNodeOn(index, { families: dualStack ? [4, 6] : [4], segment: 0 });
}

/** An IP family of the simulated cluster. */
export type IpFamily = 4 | 6;

/**
 * The underlay segments: A is the one every cluster has (the external host is on it); B sits
 * behind the router, so its nodes are not on-link for A's. Node N is host 10+N on its segment.
 */
export const SEGMENTS = [
  {
    name: "A",
    v4: "192.0.2.",
    v6: "fd00:192:0:2::",
    router: ["192.0.2.254", "fd00:192:0:2::fe"],
  },
  {
    name: "B",
    v4: "198.51.100.",
    v6: "fd00:198:51:100::",
    router: ["198.51.100.254", "fd00:198:51:100::fe"],
  },
] as const;

/** Index into {@linkcode SEGMENTS}. */
export type Segment = 0 | 1;

/**
 * Node `index` on `segment` with the cluster's IP families: the podCIDRs depend on the index
 * only, so a node that moves to the other segment keeps them (as a real node keeps its
 * spec.podCIDRs when its address changes).
 *
 * @example
 * planNodeOn(3, { families: [6], segment: 1 }).ips; // ["fd00:198:51:100::13"]
 */
export function planNodeOn(
  index: number,
  opts: { families: readonly IpFamily[]; segment: Segment },
): NodePlan {
  if (index < 1 || index > 200) throw new Error(`Node index ${index} is outside 1..200`);
  const seg = SEGMENTS[opts.segment];
  const pick = <T>(v4: T, v6: T) => opts.families.map((f) => (f === 4 ? v4 : v6));
  return {
    name: `n${index}`,
    index,
    ips: pick(`${seg.v4}${10 + index}`, `${seg.v6}${10 + index}`),
    podCIDRs: pick(`10.244.${index}.0/24`, `fd00:10:244:${index}::/64`),
    gateways: pick(`10.244.${index}.1`, `fd00:10:244:${index}::1`),
  };
}

/** The segment an underlay address is on. */
export function segmentOf(ip: string): Segment {
  return SEGMENTS.findIndex((s) => ip.startsWith(s.v4) || ip.startsWith(s.v6)) === 1 ? 1 : 0;
}

/** The prefix length of the underlay network of `ip`'s family. */
export function underlayPrefix(ip: string): number {
  return ip.includes(":") ? 64 : 24;
}

/** Creates a named namespace with lo up; returns its path. */
export async function addNetns(name: string): Promise<string> {
  await run(["ip", "netns", "add", name]);
  await run(["ip", "-n", name, "link", "set", "lo", "up"]);
  return `/run/netns/${name}`;
}

/** Deletes a named namespace; absent is fine. */
export async function deleteNetns(name: string): Promise<void> {
  await runOutput(["ip", "netns", "del", name]);
}

/** Runs `ip -batch -` inside the named namespace. */
export async function ipBatch(ns: string, lines: readonly string[]): Promise<void> {
  await run(["ip", "-n", ns, "-batch", "-"], { stdin: lines.join("\n") + "\n" });
}

/** Creates the switch: a namespace with bridge br0, up. */
export async function createSwitch(ns: string): Promise<void> {
  await addNetns(ns);
  await ipBatch(ns, ["link add br0 type bridge", "link set br0 up"]);
}

/**
 * Plugs namespace `ns` into the switch as port `port`: its eth0 gets `addrs` (underlay, no
 * DAD) and, when given, default routes via `gateways`.
 */
export async function plugIntoSwitch(
  sw: string,
  ns: string,
  opts: {
    port: string;
    addrs: readonly string[];
    gateways?: readonly string[];
    /** The interface's name in `ns` (default eth0). */
    ifname?: string;
    /** More routes, as `ip route add` arguments ("198.51.100.0/24 via 192.0.2.254"). */
    routes?: readonly string[];
  },
): Promise<void> {
  const dev = opts.ifname ?? "eth0";
  await ipBatch(sw, [
    `link add ${opts.port} type veth peer name ${dev} netns ${ns}`,
    `link set ${opts.port} master br0 up`,
  ]);
  // A real node's link-local finished DAD long ago; here the link is new, and a tentative
  // link-local would hold up the first IPv6 neighbour exchange for ~2 s.
  if (opts.addrs.some((a) => a.includes(":"))) {
    await run(
      inNetns(`/run/netns/${ns}`, ["sysctl", "-q", "-w", `net.ipv6.conf.${dev}.accept_dad=0`]),
    );
  }
  const lines = opts.addrs.map((a) =>
    a.includes(":") ? `addr add ${a} dev ${dev} nodad` : `addr add ${a} dev ${dev}`
  );
  lines.push(`link set ${dev} up`);
  for (const gw of opts.gateways ?? []) {
    lines.push(`route add default via ${gw} dev ${dev}`);
  }
  for (const r of opts.routes ?? []) lines.push(`route add ${r}`);
  await ipBatch(ns, lines);
}

/**
 * The router between the segments: a namespace with a leg on each switch (.254 / ::fe),
 * forwarding on, no NAT; its default route is the external host on segment A, so segment B
 * reaches the outside through it. Like a cloud fabric, it knows node addresses only: it drops
 * anything to or from a pod address, so pod traffic between segments must cross encapsulated
 * (and a node's traffic into the tunnel must come from an address the tunnel brings back).
 */
export async function createRouter(
  ns: string,
  switches: readonly [string, string],
  opts: { families: readonly IpFamily[]; external: readonly string[] },
): Promise<void> {
  await addNetns(ns);
  const path = `/run/netns/${ns}`;
  await run(inNetns(path, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]));
  await run(inNetns(path, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]));
  for (const cidr of CLUSTER_CIDRS) {
    const tables = cidr.includes(":") ? "ip6tables" : "iptables";
    for (const dir of ["-s", "-d"]) {
      await run(inNetns(path, [tables, "-w", "5", "-A", "FORWARD", dir, cidr, "-j", "DROP"]));
    }
  }
  for (const [i, sw] of switches.entries()) {
    const seg = SEGMENTS[i];
    await plugIntoSwitch(sw, ns, {
      port: "router",
      ifname: `leg${seg.name}`,
      addrs: opts.families.map((f) =>
        f === 4 ? `${seg.router[0]}/24` : `${seg.router[1]}/${underlayPrefix(seg.router[1])}`
      ),
      gateways: i === 0 ? opts.external : [],
    });
  }
}

/**
 * The routes a host on `segment` needs to reach the other segment when its default route is
 * not the router (segment A's default is the external host).
 */
export function routesToOtherSegment(
  segment: Segment,
  families: readonly IpFamily[],
): string[] {
  const here = SEGMENTS[segment], there = SEGMENTS[segment === 0 ? 1 : 0];
  return families.map((f) =>
    f === 4 ? `${there.v4}0/24 via ${here.router[0]}` : `${there.v6}/64 via ${here.router[1]}`
  );
}
