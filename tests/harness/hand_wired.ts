// The same datapath mycni builds, wired by hand with ip and sysctl (no plugin, no agent): the
// baseline for the throughput bench, and a way to exercise the fixture without mycni.
import { inNetns, run, runOutput } from "../../lib/process/run.ts";
import { ipBatch, type NodePlan, type Segment } from "./topology.ts";

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
  opts: { plan: NodePlan; hostIndex: number; hostVeth: string; mtu?: number },
): Promise<string[]> {
  const ips: string[] = [];
  const mtu = opts.mtu === undefined ? "" : ` mtu ${opts.mtu}`;
  const lines = [
    `link add eth0${mtu} type veth peer name ${opts.hostVeth}${mtu} netns ${nodeNs}`,
  ];
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

/**
 * Routes on node `ns` to every other node's podCIDRs via that node's underlay address; with
 * `vxlan`, nodes on the other segment are reached through a VXLAN device wired by hand the way
 * mycni wires its own (VNI 1, port 8472, nolearning, static FDB and neighbour entries, onlink
 * routes via the peer podCIDR's network address): the bench's VXLAN baseline.
 */
export async function routeByHand(
  ns: string,
  self: NodePlan,
  all: readonly NodePlan[],
  opts: { vxlan?: boolean; segmentOf?: (ip: string) => Segment } = {},
): Promise<void> {
  const segment = opts.segmentOf ?? (() => 0 as Segment);
  const across = (o: NodePlan) => opts.vxlan === true && segment(o.ips[0]) !== segment(self.ips[0]);
  const mac = (p: NodePlan) => `02:00:00:00:00:${p.index.toString(16).padStart(2, "0")}`;
  const lines: string[] = [];
  const fdb: string[] = [];
  const others = all.filter((o) => o.name !== self.name);
  if (others.some(across)) {
    const local = self.ips[0];
    const mtu = 1500 - (local.includes(":") ? 70 : 50);
    await runOutput(["ip", "-n", ns, "link", "del", "vx0"]);
    lines.push(
      `link add vx0 address ${
        mac(self)
      } mtu ${mtu} type vxlan id 1 local ${local} dstport 8472 nolearning`,
      "link set vx0 up",
      ...self.podCIDRs.map((c) => {
        const host = c.includes(":") ? `${c.split("/")[0]}/128 nodad` : `${c.split("/")[0]}/32`;
        return `addr add ${host} dev vx0`;
      }),
    );
  }
  for (const other of others) {
    if (across(other)) {
      fdb.push(`fdb append ${mac(other)} dev vx0 dst ${other.ips[0]} self permanent`);
    }
    other.podCIDRs.forEach((cidr) => {
      const v6 = cidr.includes(":");
      if (across(other)) {
        const vtep = cidr.split("/")[0];
        lines.push(`neigh replace ${vtep} lladdr ${mac(other)} dev vx0 nud permanent`);
        lines.push(`route replace ${cidr} via ${vtep} dev vx0 onlink`);
        return;
      }
      const via = other.ips.find((ip) => ip.includes(":") === v6);
      if (via) lines.push(`route replace ${cidr} via ${via}`);
    });
  }
  if (lines.length) await ipBatch(ns, lines);
  if (fdb.length) await run(["bridge", "-n", ns, "-batch", "-"], { stdin: fdb.join("\n") + "\n" });
}
