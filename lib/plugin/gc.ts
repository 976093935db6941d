// GC (spec 1.1): release everything not in cni.dev/valid-attachments: IPAM reservations, host
// veths (derived names, so found without any netns) and per-attachment masquerade. Continues on
// errors and reports them all at the end, as the spec asks.
import { CniError, ErrorCode } from "../cni/errors.ts";
import { teardownIpMasq } from "../net/iptables.ts";
import { deleteLink, listBridgePorts } from "../net/link.ts";
import { hostVethName, isHostVethName } from "./plan.ts";
import { ipamFor, type Request } from "./request.ts";

/** Removes stale attachments. */
export async function gc(req: Request): Promise<void> {
  const { conf } = req;
  const valid = conf.validAttachments;
  // Absent is not "nothing is valid": refuse rather than release every pod's addresses.
  if (!valid) throw new CniError(ErrorCode.InvalidConfig, "GC needs cni.dev/valid-attachments");
  const errors: string[] = [];
  const released = await ipamFor(req).gc(valid).catch((err) => {
    errors.push(`IPAM: ${(err as Error).message}`);
    return [];
  });
  const keep = new Set(valid.map((v) => hostVethName(v.containerID, v.ifname)));
  const stale = new Set(
    listBridgePorts(conf.bridge).filter((p) => isHostVethName(p) && !keep.has(p)),
  );
  for (const a of released) {
    const veth = hostVethName(a.containerID, a.ifname);
    if (!keep.has(veth)) stale.add(veth);
    if (conf.ipMasq && !valid.some((v) => v.containerID === a.containerID)) {
      await teardownIpMasq(conf.name, a.containerID).catch((err) =>
        errors.push((err as Error).message)
      );
    }
  }
  for (const veth of stale) {
    try {
      deleteLink(veth);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  req.log.released = released.length;
  req.log.vethsDeleted = stale.size;
  if (errors.length) {
    throw new CniError(
      ErrorCode.Internal,
      `GC finished with ${errors.length} error(s)`,
      errors.join("; "),
    );
  }
}
