// One invocation as the verbs see it: validated env and config, and the IPAM backend for it.
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { CniEnv } from "../cni/env.ts";
import type { NetConf } from "../cni/netconf.ts";
import { builtinIpam } from "../ipam/builtin.ts";
import { type Ip, parseIp } from "../ip/cidr.ts";
import { delegatedIpam } from "./delegated_ipam.ts";
import type { Ipam } from "../ipam/ipam.ts";
import type { Owner } from "../ipam/store.ts";
import { checkPodNetns, NetnsError } from "../net/netns.ts";

/** A parsed invocation. */
export interface Request {
  readonly env: CniEnv;
  readonly conf: NetConf;
  /** The raw environment (lib/cni/env.ts PLUGIN_ENV), passed on to delegated plugins. */
  readonly rawEnv: Readonly<Record<string, string>>;
  /** Facts for the log line (IPs, steps); verbs add to it. */
  readonly log: Record<string, unknown>;
}

/** The attachment as IPAM records it, naming the pod when the runtime told us. */
export function ownerOf(req: Request): Owner {
  const ns = req.env.args.get("K8S_POD_NAMESPACE"), pod = req.env.args.get("K8S_POD_NAME");
  return {
    containerId: req.env.containerId,
    ifname: req.env.ifname,
    ...(pod ? { pod: ns ? `${ns}/${pod}` : pod } : {}),
  };
}

/** The IPAM backend for this request: delegated when the config names one, else built in. */
export function ipamFor(req: Request): Ipam {
  if (req.conf.ipam) return delegatedIpam(req.conf, req.rawEnv, req.env.path);
  return builtinIpam(req.conf, ownerOf(req), requestedIps(req));
}

/**
 * Static addresses the runtime asked for: runtimeConfig.ips (`"<ip>[/<prefix>]"`, CONVENTIONS.md;
 * libcni fills it in for a config that declares the `ips` capability, podman does when a
 * container has more than one static IP), else CNI_ARGS `IP=a[,b]` (podman --ip alone;
 * host-local honours both). When both come, runtimeConfig wins: the conventions say a plugin
 * that understands the structured key must ignore the deprecated CNI_ARGS one.
 */
function requestedIps(req: Request): Ip[] {
  const fromConfig = req.conf.raw.runtimeConfig as { ips?: unknown } | undefined;
  if (fromConfig?.ips !== undefined) return runtimeConfigIps(fromConfig.ips);
  const text = req.env.args.get("IP");
  if (!text) return [];
  return text.split(",").map((t) => {
    try {
      return parseIp(t.trim().replace(/\/[0-9]+$/, ""));
    } catch {
      throw new CniError(
        ErrorCode.InvalidEnv,
        `Invalid CNI_ARGS IP "${t.slice(0, 60)}": not an IP address`,
      );
    }
  });
}

function runtimeConfigIps(list: unknown): Ip[] {
  if (!Array.isArray(list)) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      'Invalid network configuration field "runtimeConfig.ips": want a list of addresses',
    );
  }
  return list.map((t, i) => {
    try {
      if (typeof t !== "string") throw new Error("not a string");
      // The prefix, if any, is the runtime's view of the network: the podCIDR's is used.
      return parseIp(t.replace(/\/[0-9]+$/, ""));
    } catch {
      throw new CniError(
        ErrorCode.InvalidConfig,
        `Invalid network configuration field "runtimeConfig.ips[${i}]": ${
          JSON.stringify(t)?.slice(0, 60)
        } is not an IP address`,
      );
    }
  });
}

/**
 * Checks CNI_NETNS before a verb enters it (lib/net/netns.ts), as the spec's codes say: 4 for a
 * path that is no network namespace, 8 for the plugin's own.
 */
export function checkNetns(path: string): void {
  try {
    checkPodNetns(path);
  } catch (err) {
    if (!(err instanceof NetnsError)) throw err;
    const code = err.reason === "own" ? ErrorCode.InvalidNetns : ErrorCode.InvalidEnv;
    throw new CniError(code, err.message);
  }
}
