// ADD: addresses from IPAM, a veth pair into the pod, the host end on the bridge. Every step
// that changes the node is undone, in reverse, if a later one fails.
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { Result, Route } from "../cni/result.ts";
import { type Cidr, formatIp, gatewayOf, type Ip, parseIpWithPrefix } from "../ip/cidr.ts";
import { setupIpMasq, teardownIpMasq } from "../net/iptables.ts";
import {
  attachToBridge,
  configurePodInterface,
  createVethPair,
  deleteLink,
  ensureBridge,
  type PodAddress,
  type PodRoute,
  type VethPlan,
} from "../net/link.ts";
import { defaultRouteMtu } from "../net/mtu.ts";
import { admitPod } from "./admission.ts";
import { EEXIST, NetlinkError, Rtnl } from "../net/netlink.ts";
import { planVeth, podAddress } from "./plan.ts";
import { checkNetns, ipamFor, type Request } from "./request.ts";
import { stepTimer } from "./steps.ts";
import { UndoStack } from "./undo.ts";

/** Wires the pod and returns the result (in the internal 1.1 shape). */
export async function add(req: Request): Promise<Result> {
  const { env, conf } = req;
  checkNetns(env.netns);
  const ipam = ipamFor(req);
  const undo = new UndoStack();
  const lap = stepTimer(req.log);
  try {
    const ipamResult = await ipam.add();
    lap("ipam");
    undo.push("release IPs", () => ipam.del());
    const addresses = podAddresses(ipamResult);
    req.log.ips = addresses.map((a) => a.address);
    const plan = planVeth({
      containerId: env.containerId,
      ifname: env.ifname,
      netns: env.netns,
      bridge: conf.bridge,
      mtu: conf.mtu ?? await defaultRouteMtu(),
      hairpin: conf.hairpinMode,
      addresses,
      routes: podRoutes(ipamResult.routes ?? [], addresses),
    });
    lap("plan");
    const bridgeMac = await wirePod(plan, {
      lap,
      vethCreated: () => undo.push("delete veth", () => deleteLink(plan.hostVeth)),
    });
    if (conf.ipMasq) {
      undo.push("remove masquerade", () => teardownIpMasq(conf.name, env.containerId));
      await setupIpMasq({
        network: conf.name,
        containerId: env.containerId,
        addrs: masqAddrs(addresses),
      });
    }
    // Last, so the pod's addresses are final; before the result, so no container of the pod
    // runs before the agent enforces its policy (DESIGN.md "Pod lifecycle").
    if (conf.agentSocket) {
      await admitPod(req, conf.agentSocket, addresses.map((a) => bareIp(a.address)), undo);
      lap("admit");
    }
    return resultOf(plan, bridgeMac, ipamResult);
  } catch (err) {
    // Where a failed ADD's time went: the step that threw (an admission's whole wait), the undo.
    lap("failed");
    const failed = await undo.unwind();
    lap("undo");
    if (failed.length) req.log.undoFailed = failed;
    throw err;
  }
}

/**
 * Everything ADD asks of the kernel, in order: the bridge, the veth pair, the pod side, the host
 * side; returns the bridge's MAC. `on.lap(step)` marks the end of each step for the log line
 * ("bridge", "pod", "attach"); `on.vethCreated()` runs once the pair exists. The latency bench
 * does not time this function as the kernel's share: it times a fixed netlink sequence any bridge
 * plugin needs (bench/plugin_latency.ts), so what this adds beyond it counts as mycni's own cost.
 *
 * @example
 * const mac = await wirePod(plan, { lap: () => {}, vethCreated: () => {} });
 */
export async function wirePod(
  plan: VethPlan,
  on: { lap(step: string): void; vethCreated(): void },
): Promise<string> {
  // One socket per netns, closed when this returns (an undo opens its own): the pod netns is
  // entered once, for the socket() call.
  using node = Rtnl.open();
  const bridge = ensureBridge(node, plan);
  on.lap("bridge");
  using pod = Rtnl.open(plan.netns);
  createVeth(pod, node, plan);
  on.vethCreated();
  configurePodInterface(pod, plan);
  on.lap("pod");
  const bridgeMac = await attachToBridge(node, plan, bridge);
  on.lap("attach");
  return bridgeMac;
}

/** Creates the veth; a stale host end left by a crashed ADD of this attachment is replaced once. */
function createVeth(pod: Rtnl, node: Rtnl, plan: VethPlan): void {
  try {
    createVethPair(pod, plan);
  } catch (err) {
    if (!(err instanceof NetlinkError && err.errno === EEXIST)) throw err;
    if (!deleteLink(plan.hostVeth, node)) {
      throw new CniError(
        ErrorCode.Internal,
        `Cannot create ${plan.ifname} in ${plan.netns}: an interface named ${plan.ifname} already exists there`,
        err.message,
      );
    }
    createVethPair(pod, plan);
  }
}

function podAddresses(result: Result): PodAddress[] {
  return (result.ips ?? []).map((ipc) => {
    let parsed: { ip: Ip; cidr: Cidr };
    try {
      parsed = parseIpWithPrefix(ipc.address);
    } catch (err) {
      throw new CniError(
        ErrorCode.Internal,
        `IPAM returned a bad address "${ipc.address}": ${(err as Error).message}`,
      );
    }
    const gateway = ipc.gateway
      ? parseIpWithPrefix(`${ipc.gateway}/${parsed.cidr.prefix}`).ip
      : gatewayOf(parsed.cidr);
    return podAddress(parsed.ip, parsed.cidr, gateway);
  });
}

/** IPAM's routes via the family's gateway, plus a default route per family if IPAM gave none. */
function podRoutes(routes: readonly Route[], addresses: readonly PodAddress[]): PodRoute[] {
  const out: PodRoute[] = [];
  for (const a of addresses) {
    const family = routes.filter((r) => r.dst.includes(":") === (a.family === 6));
    const mine = family.map((r) => ({ dst: r.dst, via: r.gw ?? a.gateway }));
    const anyDefault = a.family === 4 ? "0.0.0.0/0" : "::/0";
    if (!mine.some((r) => r.dst === anyDefault)) mine.push({ dst: anyDefault, via: a.gateway });
    for (const r of mine) if (!out.some((o) => o.dst === r.dst)) out.push(r);
  }
  return out;
}

/** "10.244.1.5/24" -> "10.244.1.5" (PodAddress holds canonical text). */
function bareIp(address: string): string {
  return address.slice(0, address.indexOf("/"));
}

function masqAddrs(addresses: readonly PodAddress[]) {
  return addresses.map((a) => {
    const { ip, cidr } = parseIpWithPrefix(a.address);
    return {
      ip: formatIp(ip),
      cidr: `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`,
      family: a.family,
    };
  });
}

function resultOf(plan: VethPlan, bridgeMac: string, ipamResult: Result): Result {
  return {
    interfaces: [
      { name: plan.bridge, mac: bridgeMac },
      { name: plan.hostVeth, mac: plan.hostMac },
      { name: plan.ifname, mac: plan.podMac, mtu: plan.mtu, sandbox: plan.netns },
    ],
    ips: plan.addresses.map((a) => ({ address: a.address, gateway: a.gateway, interface: 2 })),
    routes: plan.routes.map((r) => ({ dst: r.dst, gw: r.via })),
    ...(ipamResult.dns ? { dns: ipamResult.dns } : {}),
  };
}
