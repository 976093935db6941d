// The pod datapath, as the `ip` commands it amounts to: a veth pair made inside the pod netns
// with its peer pushed into ours, the peer enslaved to the bridge. Sent over rtnetlink (see
// netlink.ts): no process is spawned on the fast path. The caller opens one socket per
// namespace and passes it to each step: an ADD enters the pod netns once (a setns round trip
// per socket), and every message goes over one of two sockets.
import { EEXIST, NetlinkError, Rtnl } from "./netlink.ts";
import { pathExists } from "../sys/file.ts";
import { delay } from "../time/sleep.ts";
import {
  addrAdd,
  linkAddBridge,
  linkAddVeth,
  linkDel,
  linkGet,
  linkList,
  linkSet,
  linkSetHairpin,
  type LinkState,
} from "./rtnl.ts";
import { routeAdd } from "./route.ts";

/** One address to put on the pod interface, with the gateway (bridge address) of its network. */
export interface PodAddress {
  readonly family: 4 | 6;
  /** "10.244.1.5/24" */
  readonly address: string;
  /** "10.244.1.1" */
  readonly gateway: string;
  /** "10.244.1.1/24": what the bridge holds. */
  readonly gatewayCidr: string;
}

/** Everything needed to wire one attachment; computed up front, pure data. */
export interface VethPlan {
  readonly netns: string;
  readonly ifname: string;
  readonly podMac: string;
  readonly hostVeth: string;
  readonly hostMac: string;
  readonly bridge: string;
  readonly bridgeMac: string;
  readonly mtu: number;
  readonly hairpin: boolean;
  readonly addresses: readonly PodAddress[];
  /** Routes in the pod, each via a gateway on the bridge. */
  readonly routes: readonly PodRoute[];
}

/** A route to install in the pod. */
export interface PodRoute {
  readonly dst: string;
  readonly via: string;
}

/**
 * `ip link add ifname type veth peer name hostVeth netns <ours>`, made from inside the pod netns
 * so the pod end never exists in the host netns under a clashing name.
 */
export function createVethPair(pod: Rtnl, plan: VethPlan): void {
  const { ifname, mtu } = plan;
  linkAddVeth(pod, { name: ifname, mac: plan.podMac, mtu }, {
    name: plan.hostVeth,
    mac: plan.hostMac,
    mtu,
    netnsPid: Deno.pid,
  });
}

/**
 * Configures the pod side of a new pair: lo, addresses, default routes. IPv6 addresses get
 * `nodad` and a fixed link-local, so ADD never returns with a tentative address and never waits
 * the ~2 s DAD costs (what the reference does with accept_dad=0).
 */
export function configurePodInterface(pod: Rtnl, plan: VethPlan): void {
  const { ifname } = plan;
  linkSet(pod, "lo", { up: true });
  const dev = linkGet(pod, ifname);
  if (!dev) throw new Error(`${ifname} is gone from ${plan.netns}`);
  if (plan.addresses.some((a) => a.family === 6)) {
    linkSet(pod, ifname, { noAddrGen: true });
    addrAdd(pod, dev, `${linkLocal(plan.podMac)}/64`, { nodad: true });
  }
  for (const a of plan.addresses) addrAdd(pod, dev, a.address, { nodad: a.family === 6 });
  linkSet(pod, ifname, { up: true });
  for (const r of plan.routes) routeAdd(pod, { dst: r.dst, via: r.via, dev });
}

/**
 * The node's bridge, created (up, with its fixed MAC, no ports yet) on the node's first pod.
 * Made before the pod's veth so that, in a new node netns, the host end does not get ifindex 2,
 * the pod end's: a veth whose ifindex equals its peer's looks like a plain device to the
 * kernel's linkwatch, which then reports its carrier up to a second late, and the bridge does
 * not forward for it until then.
 */
export function ensureBridge(node: Rtnl, plan: VethPlan): LinkState {
  const bridge = linkGet(node, plan.bridge) ?? createBridge(node, plan);
  if (bridge.kind !== "bridge") {
    throw new Error(`"${plan.bridge}" already exists but is not a bridge`);
  }
  return bridge;
}

/**
 * Enslaves the host veth to the bridge and makes sure the bridge is up with its gateway
 * addresses; returns the bridge's MAC. `addr replace` is idempotent, so every ADD re-asserts
 * the gateway (a crash between creating the bridge and addressing it heals on the next pod).
 */
export async function attachToBridge(
  node: Rtnl,
  plan: VethPlan,
  bridge: LinkState,
): Promise<string> {
  // A bridge port needs no IPv6 address of its own: no link-local, no DAD, no MLD noise.
  linkSet(node, plan.hostVeth, { master: bridge.index, noAddrGen: true });
  if (plan.hairpin) linkSetHairpin(node, plan.hostVeth);
  linkSet(node, plan.hostVeth, { up: true });
  for (const a of plan.addresses) {
    addrAdd(node, bridge, a.gatewayCidr, { replace: true, nodad: a.family === 6 });
  }
  linkSet(node, plan.bridge, { up: true });
  let now = linkGet(node, plan.bridge);
  if (!now?.operUp) now = await waitOperUp(node, plan.bridge);
  return now.mac || plan.bridgeMac;
}

// The bridge's carrier comes through linkwatch, which can batch an event for up to a second
// (ensureBridge() and createBridge() say how we avoid that); until the bridge is up the
// gateway cannot answer the pod's ARP, so ADD waits for it rather than return too early.
const OPER_UP_WAIT_MS = [5, 10, 20, 40, 80, 160, 320, 640, 1000];

async function waitOperUp(node: Rtnl, name: string): Promise<LinkState> {
  let link: LinkState | undefined;
  for (const ms of OPER_UP_WAIT_MS) {
    await delay(ms);
    link = linkGet(node, name);
    if (link?.operUp) return link;
  }
  throw new Error(
    `Bridge ${name} did not come up within 2.3 s (${link ? "no carrier" : "it is gone"})`,
  );
}

/**
 * Creates the bridge with a fixed MAC (so it does not change as ports come and go). Two ADDs
 * racing on a new node both try: "File exists" is success (plugins#366).
 */
function createBridge(node: Rtnl, plan: VethPlan): LinkState {
  try {
    linkAddBridge(node, { name: plan.bridge, mac: plan.bridgeMac, mtu: plan.mtu });
  } catch (err) {
    if (!(err instanceof NetlinkError && err.errno === EEXIST)) throw err;
  }
  // The bridge's IPv6 link-local would sit in DAD for ~2 s after it comes up, and until then
  // the node cannot resolve pod neighbours over IPv6 (forwarded traffic to a new node's first
  // pods stalls). Off before the first `up`, as the reference does for pods (accept_dad=0).
  try {
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${plan.bridge}/accept_dad`, "0");
  } catch { /* IPv6 disabled on this node */ }
  // Up before any port joins. A bridge that comes up without carrier has its qdisc ready and
  // waiting, so the carrier its first port brings is an urgent link event, handled at once.
  // Brought up after a port is forwarding, the same event waits for linkwatch's next batch: up
  // to a second in which the gateway cannot answer the first pod's ARP.
  linkSet(node, plan.bridge, { up: true });
  const bridge = linkGet(node, plan.bridge);
  if (!bridge) {
    throw new Error(`Bridge ${plan.bridge} vanished after creation`);
  }
  return bridge;
}

/**
 * Deletes a link in our netns; already gone is success. Deleting one end of a veth removes both.
 * Opens a socket unless given one (`node`, a socket in our netns).
 */
export function deleteLink(name: string, node?: Rtnl): boolean {
  // Most DELs repeat one that already removed the veth (containerd calls DEL twice): procfs
  // answers "no such link" without a netlink round trip. /proc/sys/net is per the reader's netns.
  if (!linkInProcfs(name)) return false;
  if (node) return linkDel(node, name);
  using own = Rtnl.open();
  return linkDel(own, name);
}

/** Whether a link named `name` exists in our netns, read from procfs (no process spawned). */
export function linkInProcfs(name: string): boolean {
  // An FFI lstat: no exception when the link is gone, no Date objects (lib/net/file.ts).
  return pathExists(`/proc/sys/net/ipv4/conf/${name}`);
}

/** Links enslaved to `bridge` in our netns ([] when the bridge does not exist). */
export function listBridgePorts(bridge: string): string[] {
  using node = Rtnl.open();
  const links = linkList(node);
  const br = links.find((l) => l.name === bridge);
  return br ? links.filter((l) => l.master === br.index).map((l) => l.name) : [];
}

/** The EUI-64 link-local address for a MAC (RFC 4291 appendix A). */
export function linkLocal(mac: string): string {
  const b = mac.split(":").map((h) => parseInt(h, 16));
  b[0] ^= 0x02;
  const hex = (x: number, y: number) => ((x << 8) | y).toString(16);
  return `fe80::${hex(b[0], b[1])}:${hex(b[2], 0xff)}:${hex(0xfe, b[3])}:${hex(b[4], b[5])}`;
}
