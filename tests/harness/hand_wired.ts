// The same datapath mycni builds, wired by hand with ip and sysctl (no plugin, no agent): the
// baseline for the throughput bench, and a way to exercise the fixture without mycni.
import { inNetns, run } from "../../lib/process/run.ts";
import { ipBatch, type NodePlan } from "./topology.ts";

/** Bridge cni0 holding the gateways, forwarding on, optional masquerade of pod traffic. */
export async function wireNodeByHand(
  ns: string,
  plan: NodePlan,
  opts: { masquerade: boolean; clusterCidrs: readonly string[] },
): Promise<void> {
  const lines = ["link add cni0 type bridge", "link set cni0 up"];
  plan.podCIDRs.forEach((cidr, i) => {
    const prefix = cidr.split("/")[1];
    const v6 = cidr.includes(":");
    lines.push(
      `addr add ${plan.gateways[i]}/${prefix} dev cni0${v6 ? " nodad" : ""}`,
    );
  });
  await ipBatch(ns, lines);
  const path = `/run/netns/${ns}`;
  await run(inNetns(path, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]));
  if (plan.podCIDRs.length > 1) {
    await run(inNetns(path, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]));
  }
  if (!opts.masquerade) return;
  for (const cidr of plan.podCIDRs) {
    const v6 = cidr.includes(":");
    const cluster = opts.clusterCidrs.find((c) => c.includes(":") === v6)!;
    const rules = [
      "*nat",
      `-A POSTROUTING -s ${cidr} ! -d ${cluster} -j MASQUERADE`,
      "COMMIT",
      "",
    ].join("\n");
    await run(
      inNetns(path, [v6 ? "ip6tables-restore" : "iptables-restore", "--noflush", "-w", "5"]),
      {
        stdin: rules,
      },
    );
  }
}

/** A pod by hand: veth eth0 in the pod, its peer on cni0, address `hostIndex` of each podCIDR. */
export async function wirePodByHand(
  nodeNs: string,
  podNs: string,
  opts: { plan: NodePlan; hostIndex: number; hostVeth: string },
): Promise<string[]> {
  const ips: string[] = [];
  const lines = [`link add eth0 type veth peer name ${opts.hostVeth} netns ${nodeNs}`];
  opts.plan.podCIDRs.forEach((cidr) => {
    const [net, prefix] = cidr.split("/");
    const v6 = cidr.includes(":");
    const ip = v6
      ? `${net}${opts.hostIndex.toString(16)}`
      : net.replace(/\.0$/, `.${opts.hostIndex}`);
    ips.push(ip);
    lines.push(`addr add ${ip}/${prefix} dev eth0${v6 ? " nodad" : ""}`);
  });
  lines.push("link set eth0 up");
  opts.plan.gateways.forEach((gw) => {
    lines.push(`route add default via ${gw} dev eth0`);
  });
  await ipBatch(podNs, lines);
  await ipBatch(nodeNs, [
    `link set ${opts.hostVeth} master cni0`,
    `link set ${opts.hostVeth} up`,
  ]);
  return ips;
}

/** Routes on node `ns` to every other node's podCIDRs via that node's underlay address. */
export async function routeByHand(
  ns: string,
  self: NodePlan,
  all: readonly NodePlan[],
): Promise<void> {
  const lines: string[] = [];
  for (const other of all) {
    if (other.name === self.name) continue;
    other.podCIDRs.forEach((cidr) => {
      const v6 = cidr.includes(":");
      const via = other.ips.find((ip) => ip.includes(":") === v6);
      if (via) lines.push(`route replace ${cidr} via ${via}`);
    });
  }
  if (lines.length) await ipBatch(ns, lines);
}
