// STATUS (spec 1.1): ready when ADD could succeed: the commands the datapath runs are on the
// node, the IPAM state is usable and has room (or the delegated IPAM plugin says it is ready).
// Error 50 otherwise.
import { CniError, ErrorCode } from "../cni/errors.ts";
import { missingTools } from "../net/tools.ts";
import { ipamFor, type Request } from "./request.ts";

/** What ADD and DEL exec on the node (the plugin runs on the host, not in the agent's image). */
export const NODE_TOOLS = ["ip", "nsenter"] as const;

/** Throws CNI error 50 when not ready. */
export async function status(req: Request): Promise<void> {
  const missing = missingTools(NODE_TOOLS, req.rawEnv.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin");
  if (missing.length) {
    throw new CniError(
      ErrorCode.NotAvailable,
      `Missing on this node: ${missing.join(", ")}`,
      "mycni runs ip (iproute2) and nsenter (util-linux) on the host; install them",
    );
  }
  await ipamFor(req).status();
}
