// DEL: best effort and repeatable. The host veth name derives from (container ID, ifname), so
// it is found without the netns or prevResult (containerd's second DEL, ctr, after a reboot).
import type { Ipam } from "../ipam/ipam.ts";
import { deleteConntrackEntries } from "../net/conntrack.ts";
import { teardownIpMasq } from "../net/iptables.ts";
import { deleteLink } from "../net/link.ts";
import { releaseAtAgent } from "./admission.ts";
import { hostVethName } from "./plan.ts";
import { ipamFor, type Request } from "./request.ts";
import { stepTimer } from "./steps.ts";

/** Removes the veth pair (both ends go with the host end), masquerade, conntrack entries, IPs. */
export async function del(req: Request): Promise<void> {
  const { env, conf } = req;
  const lap = stepTimer(req.log);
  const hostVeth = hostVethName(env.containerId, env.ifname);
  req.log.vethDeleted = deleteLink(hostVeth);
  lap("veth");
  if (conf.ipMasq) await teardownIpMasq(conf.name, env.containerId);
  const ipam = ipamFor(req);
  // What IPAM holds, read before it frees the addresses: their conntrack entries go first (a
  // UDP flow's entry would keep sending to the address's next owner), and not after (that
  // owner's own flows must not be cut).
  const ips = await heldIps(ipam);
  // After the veth is gone (the pod can no longer send from its addresses) and before IPAM
  // frees them (their next owner inherits nothing): best effort, DEL never fails on it. The
  // agent removes the conntrack entries too before it answers, so then they are not walked
  // for twice (each walk reads the kernel's whole conntrack hash: ~9 ms).
  if (conf.agentSocket) {
    req.log.agent = await releaseAtAgent(req, conf.agentSocket, ips);
    lap("agent");
  }
  if (req.log.agent !== "released") {
    req.log.conntrack = removeConntrack(ips);
    lap("conntrack");
  }
  // Released after the veth is gone, so the address is never on two live interfaces.
  await ipam.del();
  lap("ipam");
}

/** The attachment's addresses as IPAM holds them; none when it cannot say (logged by DEL). */
async function heldIps(ipam: Ipam): Promise<string[]> {
  try {
    return await ipam.held();
  } catch {
    return []; // ipam.del() below meets the same store and reports it
  }
}

/** Removes the conntrack entries of `ips`; how many, or why not. */
function removeConntrack(ips: readonly string[]): number | string {
  try {
    return deleteConntrackEntries(ips);
  } catch (err) {
    return `not removed: ${(err as Error).message}`;
  }
}
