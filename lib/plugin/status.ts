// STATUS (spec 1.1): ready when ADD could succeed: the IPAM state is usable and has room (or the
// delegated IPAM plugin says it is ready), and, with ipMasq, iptables is on the node. The
// datapath itself needs nothing on the node: ADD, DEL, CHECK and GC speak netlink. With
// agentSocket, the agent must answer a ping (ADD asks it to admit each pod).
// Error 50 otherwise.
import { CniError, ErrorCode } from "../cni/errors.ts";
import { missingTools } from "../net/tools.ts";
import { pingAgent } from "./admission.ts";
import { ipamFor, type Request } from "./request.ts";

/** What ADD and DEL exec on the node for `ipMasq` (the plugin runs on the host). */
export function masqTools(families: readonly (4 | 6)[]): string[] {
  return families.flatMap((f) =>
    f === 4 ? ["iptables-restore", "iptables-save"] : [
      "ip6tables-restore",
      "ip6tables-save",
    ]
  );
}

/** Throws CNI error 50 when not ready. */
export async function status(req: Request): Promise<void> {
  const { conf } = req;
  if (conf.ipMasq) {
    // Delegated IPAM names no podCIDRs: assume IPv4.
    const families = conf.podCIDRs.length ? [...new Set(conf.podCIDRs.map((c) => c.family))] : [4];
    const path = req.rawEnv.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin";
    const missing = missingTools(masqTools(families as (4 | 6)[]), path);
    if (missing.length) {
      throw new CniError(
        ErrorCode.NotAvailable,
        `Missing on this node: ${missing.join(", ")}`,
        "ipMasq runs iptables-restore and iptables-save (ip6tables-* for IPv6) on the host",
      );
    }
  }
  await ipamFor(req).status();
  // ADD cannot succeed while the agent that admits pods does not answer.
  if (conf.agentSocket) await pingAgent(conf.agentSocket);
}
