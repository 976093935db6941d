// The simulated cluster's address plan and underlay wiring: a "switch" namespace holding the
// underlay bridge, nodes and the external host hanging off it through veths. Documentation
// ranges only (RFC 5737 TEST-NET, RFC 3849 2001:db8::/32, ULA), so nothing can leak anywhere.
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
  if (index < 1 || index > 200) throw new Error(`Node index ${index} is outside 1..200`);
  const v6 = dualStack;
  return {
    name: `n${index}`,
    index,
    ips: [`192.0.2.${10 + index}`, ...(v6 ? [`fd00:192:0:2::${10 + index}`] : [])],
    podCIDRs: [`10.244.${index}.0/24`, ...(v6 ? [`fd00:10:244:${index}::/64`] : [])],
    gateways: [`10.244.${index}.1`, ...(v6 ? [`fd00:10:244:${index}::1`] : [])],
  };
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
  opts: { port: string; addrs: readonly string[]; gateways?: readonly string[] },
): Promise<void> {
  await ipBatch(sw, [
    `link add ${opts.port} type veth peer name eth0 netns ${ns}`,
    `link set ${opts.port} master br0 up`,
  ]);
  // A real node's link-local finished DAD long ago; here eth0 is new, and a tentative
  // link-local would hold up the first IPv6 neighbour exchange for ~2 s.
  if (opts.addrs.some((a) => a.includes(":"))) {
    await run(
      inNetns(`/run/netns/${ns}`, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=0"]),
    );
  }
  const lines = opts.addrs.map((a) =>
    a.includes(":") ? `addr add ${a} dev eth0 nodad` : `addr add ${a} dev eth0`
  );
  lines.push("link set eth0 up");
  for (const gw of opts.gateways ?? []) {
    lines.push(`route add default via ${gw} dev eth0`);
  }
  await ipBatch(ns, lines);
}
