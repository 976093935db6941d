// CHECK: what ADD made must still be there. prevResult says what that was; the kernel is asked
// over netlink on both sides (host veth on the bridge, pod interface with its addresses and
// routes), as `ip link`, `ip addr` and `ip route show` would.
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { Result } from "../cni/result.ts";
import { hasIpMasq } from "../net/iptables.ts";
import { Rtnl } from "../net/netlink.ts";
import { listRoutes, RT_TABLE_MAIN } from "../net/route.ts";
import { addrList, linkGet, linkList } from "../net/rtnl.ts";
import { formatCidr, formatIp, parseCidr, parseIp, parseIpWithPrefix } from "../ip/cidr.ts";
import { hostVethName } from "./plan.ts";
import { checkNetns, ipamFor, type Request } from "./request.ts";

/** Throws a CNI error naming the first thing that is missing or wrong. */
export async function check(req: Request): Promise<void> {
  const { env, conf } = req;
  const prev = conf.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidConfig, "Required prevResult missing");
  checkNetns(env.netns);
  await ipamFor(req).check();
  const hostVeth = hostVethName(env.containerId, env.ifname);
  checkHostSide(hostVeth, conf.bridge);
  checkPodSide(env.netns, env.ifname, prev);
  // Untracked resources count too (spec): the masquerade this attachment got at ADD.
  const families = [
    ...new Set((prev.ips ?? []).map((i) => i.address.includes(":") ? 6 : 4)),
  ] as (4 | 6)[];
  if (conf.ipMasq && !await hasIpMasq(conf.name, env.containerId, families)) {
    fail(`masquerade chain for container ${env.containerId} is missing`);
  }
}

function checkHostSide(hostVeth: string, bridge: string): void {
  using node = Rtnl.open();
  const links = linkList(node);
  const veth = links.find((l) => l.name === hostVeth);
  if (!veth) fail(`host veth ${hostVeth} is missing`);
  const master = links.find((l) => l.index === veth.master)?.name;
  if (master !== bridge) {
    fail(`host veth ${hostVeth} is not on bridge ${bridge} (master: ${master ?? "none"})`);
  }
}

function checkPodSide(netns: string, ifname: string, prev: Result): void {
  using pod = Rtnl.open(netns);
  const link = linkGet(pod, ifname);
  if (!link) fail(`interface ${ifname} is missing in ${netns}`);
  const want = prev.interfaces?.find((i) => i.name === ifname && i.sandbox !== undefined);
  if (want?.mac && link.mac !== want.mac.toLowerCase()) {
    fail(`${ifname} in ${netns} has MAC ${link.mac}, prevResult says ${want.mac}`);
  }
  const have = addrList(pod).filter((a) => a.index === link.index).map((a) => a.address);
  for (const ip of prev.ips ?? []) {
    if (!have.includes(canonicalAddress(ip.address))) {
      fail(`address ${ip.address} is missing on ${ifname} in ${netns}`);
    }
  }
  for (const family of [4, 6] as const) {
    const wanted = (prev.routes ?? []).filter((r) => r.dst.includes(":") === (family === 6));
    if (!wanted.length) continue;
    // What `ip route show DST` answers: the main table, the exact prefix.
    const routes = listRoutes(pod, family).filter((r) => r.table === RT_TABLE_MAIN);
    for (const r of wanted) {
      const dst = formatCidr(parseCidr(r.dst));
      const gw = r.gw && formatIp(parseIp(r.gw));
      if (!routes.some((have) => have.dst === dst && (!gw || have.via === gw))) {
        fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing in ${netns}`);
      }
    }
  }
}

/** "fd00:0::5/64" as the kernel reports it: "fd00::5/64". */
function canonicalAddress(text: string): string {
  const { ip, cidr } = parseIpWithPrefix(text);
  return `${formatIp(ip)}/${cidr.prefix}`;
}

function fail(what: string): never {
  throw new CniError(ErrorCode.Internal, `CHECK failed: ${what}`);
}
