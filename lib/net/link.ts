// The pod datapath as `ip` commands: a veth pair made inside the pod netns with its peer pushed
// into ours, the peer enslaved to the bridge. Two `ip -batch` runs on the fast path, one per side.
import { CniError, ErrorCode } from "../cni/errors.ts";
import { CommandError, inNetns, run, runOutput } from "./run.ts";

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
 * Creates the pair from inside the pod netns (so the pod end never exists in the host netns
 * under a clashing name) and configures the pod side: lo, addresses, default routes.
 * IPv6 addresses get `nodad` and a fixed link-local, so ADD never returns with a tentative
 * address and never waits the ~2 s DAD costs (what the reference does with accept_dad=0).
 */
export async function createPodInterface(plan: VethPlan): Promise<void> {
  const { ifname, mtu } = plan;
  const v6 = plan.addresses.some((a) => a.family === 6);
  const lines = [
    `link add name ${ifname} address ${plan.podMac} mtu ${mtu} type veth peer name ${plan.hostVeth} address ${plan.hostMac} mtu ${mtu} netns ${Deno.pid}`,
    "link set dev lo up",
    ...(v6
      ? [
        `link set dev ${ifname} addrgenmode none`,
        `addr add ${linkLocal(plan.podMac)}/64 dev ${ifname} nodad`,
      ]
      : []),
    ...plan.addresses.map((a) =>
      `addr add ${a.address} dev ${ifname}${a.family === 6 ? " nodad" : ""}`
    ),
    `link set dev ${ifname} up`,
    ...plan.routes.map((r) => `route add ${r.dst} via ${r.via} dev ${ifname}`),
  ];
  await run(inNetns(plan.netns, ["ip", "-batch", "-"]), { stdin: lines.join("\n") + "\n" });
}

/**
 * Enslaves the host veth to the bridge and makes sure the bridge is up with its gateway
 * addresses; returns the bridge's MAC. `addr replace` is idempotent, so every ADD re-asserts
 * the gateway (a crash between creating the bridge and addressing it heals on the next pod).
 */
export async function attachToBridge(plan: VethPlan): Promise<string> {
  const lines = [
    `link set dev ${plan.hostVeth} master ${plan.bridge}`,
    ...(plan.hairpin ? [`link set dev ${plan.hostVeth} type bridge_slave hairpin on`] : []),
    // A bridge port needs no IPv6 address of its own: no link-local, no DAD, no MLD noise.
    `link set dev ${plan.hostVeth} addrgenmode none`,
    `link set dev ${plan.hostVeth} up`,
    ...plan.addresses.map((a) =>
      `addr replace ${a.gatewayCidr} dev ${plan.bridge}${a.family === 6 ? " nodad" : ""}`
    ),
    `link set dev ${plan.bridge} up`,
    `link show dev ${plan.bridge}`,
  ].join("\n") + "\n";
  let out = await runOutput(["ip", "-j", "-batch", "-"], { stdin: lines });
  if (
    out.code !== 0 && /Cannot find device|does not exist/.test(out.stderr) &&
    out.stderr.includes(plan.bridge)
  ) {
    await createBridge(plan);
    out = await runOutput(["ip", "-j", "-batch", "-"], { stdin: lines });
  }
  if (out.code !== 0) {
    throw new CommandError(
      ["ip", "-batch", `(attach ${plan.hostVeth} to ${plan.bridge})`],
      out.code,
      out.stderr,
    );
  }
  let bridge = (JSON.parse(out.stdout.trim().split("\n").at(-1) ?? "[]") as IpLinkState[])[0];
  if (bridge?.operstate !== "UP") bridge = await waitOperUp(plan.bridge);
  return bridge?.address ?? plan.bridgeMac;
}

interface IpLinkState {
  address?: string;
  operstate?: string;
}

// A new bridge reports carrier through linkwatch, which batches non-urgent events for up to a
// second; until then the pod's first ARP to the gateway is lost. The reference bridge waits
// for the port the same way (up to 2.55 s); this only happens for the first pod on a node.
const OPER_UP_WAIT_MS = [5, 10, 20, 40, 80, 160, 320, 640, 1000];

async function waitOperUp(name: string): Promise<IpLinkState> {
  let link: IpLinkState | undefined;
  for (const ms of OPER_UP_WAIT_MS) {
    await new Promise((r) => setTimeout(r, ms));
    link = (JSON.parse(await run(["ip", "-j", "link", "show", "dev", name])) as IpLinkState[])[0];
    if (link?.operstate === "UP") return link;
  }
  throw new CniError(
    ErrorCode.Internal,
    `Bridge ${name} did not come up within 2.3 s (operstate ${link?.operstate})`,
  );
}

/**
 * Creates the bridge with a fixed MAC (so it does not change as ports come and go). Two ADDs
 * racing on a new node both try: "File exists" is success (plugins#366).
 */
async function createBridge(plan: VethPlan): Promise<void> {
  const out = await runOutput([
    "ip",
    "link",
    "add",
    "name",
    plan.bridge,
    "address",
    plan.bridgeMac,
    "mtu",
    String(plan.mtu),
    "type",
    "bridge",
  ]);
  if (out.code !== 0 && !/File exists/.test(out.stderr)) {
    throw new CommandError(
      ["ip", "link", "add", plan.bridge, "type", "bridge"],
      out.code,
      out.stderr,
    );
  }
  // The bridge's IPv6 link-local would sit in DAD for ~2 s after it comes up, and until then
  // the node cannot resolve pod neighbours over IPv6 (forwarded traffic to a new node's first
  // pods stalls). Off before the first `up`, as the reference does for pods (accept_dad=0).
  try {
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${plan.bridge}/accept_dad`, "0");
  } catch { /* IPv6 disabled on this node */ }
  const kind = JSON.parse(await run(["ip", "-j", "-d", "link", "show", "dev", plan.bridge])) as {
    linkinfo?: { info_kind?: string };
  }[];
  if (kind[0]?.linkinfo?.info_kind !== "bridge") {
    throw new CniError(ErrorCode.Internal, `"${plan.bridge}" already exists but is not a bridge`);
  }
}

/** Deletes a link in our netns; already gone is success. Deleting one end of a veth removes both. */
export async function deleteLink(name: string): Promise<boolean> {
  // Most DELs repeat one that already removed the veth (containerd calls DEL twice): procfs
  // answers "no such link" without spawning ip. /proc/sys/net is per the reader's netns.
  if (!linkInProcfs(name)) return false;
  const out = await runOutput(["ip", "link", "del", "dev", name]);
  if (out.code === 0) return true;
  if (/Cannot find device|does not exist/.test(out.stderr)) return false;
  throw new CommandError(["ip", "link", "del", "dev", name], out.code, out.stderr);
}

/** Whether a link named `name` exists in our netns, read from procfs (no process spawned). */
export function linkInProcfs(name: string): boolean {
  try {
    Deno.statSync(`/proc/sys/net/ipv4/conf/${name}`);
    return true;
  } catch {
    return false;
  }
}

/** Links enslaved to `bridge` in our netns ([] when the bridge does not exist). */
export async function listBridgePorts(bridge: string): Promise<string[]> {
  const out = await runOutput(["ip", "-j", "link", "show", "master", bridge]);
  if (out.code !== 0) return [];
  return (JSON.parse(out.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname);
}

/** The EUI-64 link-local address for a MAC (RFC 4291 appendix A). */
export function linkLocal(mac: string): string {
  const b = mac.split(":").map((h) => parseInt(h, 16));
  b[0] ^= 0x02;
  const hex = (x: number, y: number) => ((x << 8) | y).toString(16);
  return `fe80::${hex(b[0], b[1])}:${hex(b[2], 0xff)}:${hex(0xfe, b[3])}:${hex(b[4], b[5])}`;
}
