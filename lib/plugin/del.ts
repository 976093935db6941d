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
  // After the veth is gone (the pod can no longer send from its addresses) and before IPAM
  // frees them (their next owner inherits nothing): best effort, DEL never fails on it.
  if (conf.agentSocket) {
    req.log.agent = await releaseAtAgent(req, conf.agentSocket);
    lap("agent");
  }
  const ipam = ipamFor(req);
  // Before IPAM frees the addresses (their next owner's flows must not be cut): a UDP flow's
  // entry would otherwise keep sending to the address's next owner. Best effort, as above.
  req.log.conntrack = await removeConntrack(ipam);
  lap("conntrack");
  // Released after the veth is gone, so the address is never on two live interfaces.
  await ipam.del();
  lap("ipam");
}

/** Removes the conntrack entries of the attachment's addresses; how many, or why not. */
async function removeConntrack(ipam: Ipam): Promise<number | string> {
  try {
    return deleteConntrackEntries(await ipam.held());
  } catch (err) {
    return `not removed: ${(err as Error).message}`;
  }
}
