// The agent's command line (a contract: DESIGN.md "Node agent contract") turned into options.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { DEFAULT_DATA_DIR, DEFAULT_LOG_FILE } from "../cni/netconf.ts";
import { parseCidr } from "../ip/cidr.ts";
import { inClusterConfig, type KubeConfig } from "../kube/client.ts";
import type { Protocol } from "../kube/policy_objects.ts";
import { BACKEND_MODES, type BackendMode } from "./backend.ts";

/** Everything the agent runs from. */
export interface AgentOptions {
  readonly nodeName: string;
  /** Static mode when set; otherwise `kube` is the source. */
  readonly nodesFile?: string;
  readonly kube?: KubeConfig;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  readonly cniDataDir: string;
  readonly logFile: string;
  readonly clusterCidrs: readonly string[];
  readonly once: boolean;
  readonly uninstall: boolean;
  readonly healthAddr: { readonly hostname: string; readonly port: number };
  /** The plugin binary to install; undefined means `mycni` next to the agent. */
  readonly pluginSrc?: string;
  /** `--no-masquerade-cidr`: more destinations that keep the pod's address. */
  readonly noMasqueradeCidrs: readonly string[];
  /** `--network-policy`: enforce NetworkPolicy (API mode only). */
  readonly networkPolicy: boolean;
  /** `--agent-socket`: where the plugin asks for admission (written into the conflist). */
  readonly agentSocket: string;
  // Backends (DESIGN.md "Backends").
  /** How other nodes' podCIDRs are reached: per peer (`auto`), or forced. */
  readonly backend: BackendMode;
  /** The VXLAN device's VNI and UDP port. */
  readonly vxlanVni: number;
  readonly vxlanPort: number;
  // Policy over time and in sight (DESIGN.md "contract — strictness", "contract — flow log").
  /** `--policy-strict`: a change that denies a flow also cuts its established connections. */
  readonly policyStrict: boolean;
  /** `--flow-log`: record denied connection attempts (`denied`), or not (`none`). */
  readonly flowLog: FlowLogMode;
  /** `--flow-log-rate`: most flow records per second per node. */
  readonly flowLogRate: number;
}

/** What `--flow-log` takes. */
export const FLOW_LOG_MODES = ["denied", "none"] as const;
export type FlowLogMode = typeof FLOW_LOG_MODES[number];

/** A bad command line: the entry prints it with the usage and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Where the agent serves /healthz and /metrics, and where `explain` asks it. */
const DEFAULT_HEALTH_ADDR = "127.0.0.1:9749";

/** Usage text for --help and errors. */
export const USAGE =
  `Usage: mycni-init --node-name NAME (--nodes-file FILE | --kube-api URL | in-cluster)
  --node-name NAME        this node (default $NODE_NAME)
  --nodes-file FILE       static node list [{"name","ip","podCIDRs":[...]}], re-read on change
  --kube-api URL          API server (default in-cluster KUBERNETES_SERVICE_HOST/PORT)
  --token-file FILE       bearer token (default the service account's)
  --ca-file FILE          CA bundle for https (default the service account's)
  --cni-bin-dir DIR       plugin install dir (default /opt/cni/bin)
  --cni-conf-dir DIR      conflist dir (default /etc/cni/net.d)
  --cni-data-dir DIR      plugin IPAM dataDir in the conflist (default /var/lib/cni/networks)
  --log-file FILE         plugin logFile in the conflist (default /var/log/mycni.log)
  --cluster-cidr CIDR     never-masqueraded destination, repeatable (default: all podCIDRs)
  --plugin-src FILE       plugin binary to install (default $MYCNI_PLUGIN_SRC, else mycni
                          next to this program)
  --no-masquerade-cidr CIDR  destination that keeps the pod's address, repeatable
  --network-policy BOOL   enforce NetworkPolicy, API mode (default true)
  --agent-socket PATH     admission socket the plugin asks before an ADD returns, written
                          into the conflist as agentSocket (default /run/mycni/agent.sock)
  --once                  install and sync once, then exit
  --uninstall             remove the conflist, the plugin, our rules and routes, then exit
  --health-addr ADDR      /healthz and /metrics (default 127.0.0.1:9749)
  --backend MODE          auto (default: host-gw to on-link peers, VXLAN to the others),
                          host-gw or vxlan (every peer)
  --vxlan-vni N           the VXLAN device's VNI (default 1)
  --vxlan-port N          the VXLAN device's UDP port (default 8472)
  --policy-strict BOOL    a policy change also cuts the established connections it now
                          denies (default true)
  --flow-log MODE         denied (default: record every denied connection attempt) or none
  --flow-log-rate N       most flow records per second per node (default 100)

       mycni-init explain --from NS/POD --to NS/POD|IP --port N/PROTO [--health-addr ADDR]
  asks the running agent whether that flow is allowed and which policies decide it
  (exit 0 allowed, 1 denied, 2 the question could not be answered)

       mycni-init flows [--follow] [--json] [--health-addr ADDR]
  prints the running agent's recent denied flows (--follow: then each new one as it comes;
  --json: one JSON object per line)`;

/**
 * Parses the command line with `env` supplying defaults. Throws {@linkcode UsageError}.
 *
 * @example
 * parseAgentArgs(["--node-name", "n1", "--nodes-file", "/etc/mycni/nodes.json"], {});
 */
export function parseAgentArgs(
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): AgentOptions {
  const values = parseFlags(args, {
    "node-name": { type: "string" },
    "nodes-file": { type: "string" },
    "kube-api": { type: "string" },
    "token-file": { type: "string" },
    "ca-file": { type: "string" },
    "cni-bin-dir": { type: "string", default: "/opt/cni/bin" },
    "cni-conf-dir": { type: "string", default: "/etc/cni/net.d" },
    "cni-data-dir": { type: "string", default: DEFAULT_DATA_DIR },
    "log-file": { type: "string", default: DEFAULT_LOG_FILE },
    "cluster-cidr": { type: "string", multiple: true, default: [] },
    "no-masquerade-cidr": { type: "string", multiple: true, default: [] },
    "network-policy": { type: "string", default: "true" },
    "agent-socket": { type: "string", default: DEFAULT_AGENT_SOCKET },
    "plugin-src": { type: "string" },
    "health-addr": { type: "string", default: DEFAULT_HEALTH_ADDR },
    once: { type: "boolean", default: false },
    uninstall: { type: "boolean", default: false },
    backend: { type: "string", default: "auto" },
    "vxlan-vni": { type: "string", default: "1" },
    "vxlan-port": { type: "string", default: "8472" },
    "policy-strict": { type: "string", default: "true" },
    "flow-log": { type: "string", default: "denied" },
    "flow-log-rate": { type: "string", default: "100" },
  });
  const uninstall = values.uninstall!;
  const nodeName = values["node-name"] ?? env.NODE_NAME ?? "";
  if (!nodeName && !uninstall) throw new UsageError("--node-name (or $NODE_NAME) is required");
  const clusterCidrs = cidrList(values["cluster-cidr"]!, "--cluster-cidr");
  const noMasqueradeCidrs = cidrList(values["no-masquerade-cidr"]!, "--no-masquerade-cidr");
  const networkPolicy = parseBool(values["network-policy"]!, "--network-policy");
  let kube: KubeConfig | undefined;
  const nodesFile = values["nodes-file"];
  if (!nodesFile && !uninstall) {
    const api = values["kube-api"];
    const inCluster = inClusterConfig(env);
    if (api) {
      // Outside a pod there is no service account to fall back on: only what the flags name.
      kube = {
        url: api,
        tokenFile: values["token-file"] ?? inCluster?.tokenFile,
        caFile: values["ca-file"] ?? inCluster?.caFile,
      };
    } else if (inCluster) {
      kube = {
        ...inCluster,
        tokenFile: values["token-file"] ?? inCluster.tokenFile,
        caFile: values["ca-file"] ?? inCluster.caFile,
      };
    } else {
      throw new UsageError("No node source: give --nodes-file or --kube-api, or run in a pod");
    }
  }
  return {
    nodeName,
    nodesFile,
    kube,
    cniBinDir: values["cni-bin-dir"]!,
    cniConfDir: values["cni-conf-dir"]!,
    cniDataDir: values["cni-data-dir"]!,
    logFile: values["log-file"]!,
    clusterCidrs,
    once: values.once!,
    uninstall,
    healthAddr: parseHostPort(values["health-addr"]!),
    pluginSrc: values["plugin-src"] ?? env.MYCNI_PLUGIN_SRC,
    noMasqueradeCidrs,
    networkPolicy,
    agentSocket: socketPath(values["agent-socket"]!),
    ...parseBackendFlags(values.backend!, values["vxlan-vni"]!, values["vxlan-port"]!),
    ...parseFlowFlags(values["policy-strict"]!, values["flow-log"]!, values["flow-log-rate"]!),
  };
}

/** `--policy-strict`, `--flow-log`, `--flow-log-rate`, checked. */
function parseFlowFlags(
  strict: string,
  mode: string,
  rate: string,
): Pick<AgentOptions, "policyStrict" | "flowLog" | "flowLogRate"> {
  if (!(FLOW_LOG_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`--flow-log wants one of ${FLOW_LOG_MODES.join(", ")}, got "${mode}"`);
  }
  // The kernel's limit takes a rate per second of at least 1; past a million a second the log
  // would be the node's main work.
  const n = Number(rate);
  if (!/^\d+$/.test(rate) || n < 1 || n > 1_000_000) {
    throw new UsageError(`--flow-log-rate wants an integer in 1..1000000, got "${rate}"`);
  }
  return {
    policyStrict: parseBool(strict, "--policy-strict"),
    flowLog: mode as FlowLogMode,
    flowLogRate: n,
  };
}

/** `--backend`, `--vxlan-vni`, `--vxlan-port`, checked. */
function parseBackendFlags(
  backend: string,
  vni: string,
  port: string,
): Pick<AgentOptions, "backend" | "vxlanVni" | "vxlanPort"> {
  if (!(BACKEND_MODES as readonly string[]).includes(backend)) {
    throw new UsageError(`--backend wants one of ${BACKEND_MODES.join(", ")}, got "${backend}"`);
  }
  const int = (flag: string, text: string, max: number, min: number) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) {
      throw new UsageError(`${flag} wants an integer in ${min}..${max}, got "${text}"`);
    }
    return n;
  };
  return {
    backend: backend as BackendMode,
    // 24 bits of VNI on the wire; port 0 would let the kernel pick, which no peer could know.
    vxlanVni: int("--vxlan-vni", vni, 0xffffff, 0),
    vxlanPort: int("--vxlan-port", port, 65535, 1),
  };
}

/** `--agent-socket`'s default (DESIGN.md "Node agent contract"). */
export const DEFAULT_AGENT_SOCKET = "/run/mycni/agent.sock";

/** `--agent-socket`: absolute (the plugin runs from the runtime's cwd) and fits sun_path. */
function socketPath(path: string): string {
  if (!path.startsWith("/")) {
    throw new UsageError(`--agent-socket wants an absolute path, got "${path}"`);
  }
  // sun_path is 108 bytes with the NUL; the plugin refuses a longer one (lib/cni/netconf.ts).
  if (new TextEncoder().encode(path).length > 107) {
    throw new UsageError(`--agent-socket is longer than 107 bytes (a unix socket's limit)`);
  }
  return path;
}

/** Repeated (or comma-separated) CIDR flags, each a strict CIDR. */
function cidrList(given: readonly string[], flag: string): string[] {
  const list = given.flatMap((c) => c.split(",")).filter((c) => c !== "");
  for (const c of list) {
    try {
      parseCidr(c, { strict: true });
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
  }
  return list;
}

function parseBool(text: string, flag: string): boolean {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  throw new UsageError(`${flag} wants true or false, got "${text}"`);
}

/** `mycni-init explain ...`: the flow to ask about and where the agent listens. */
export interface ExplainArgs {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly healthAddr: { readonly hostname: string; readonly port: number };
}

/**
 * Parses the arguments after `explain`. Throws {@linkcode UsageError}.
 *
 * @example
 * parseExplainArgs(["--from", "x/a", "--to", "y/b", "--port", "80/TCP"]);
 */
export function parseExplainArgs(args: readonly string[]): ExplainArgs {
  const values = parseFlags(args, {
    from: { type: "string" },
    to: { type: "string" },
    port: { type: "string" },
    "health-addr": { type: "string", default: DEFAULT_HEALTH_ADDR },
  });
  const { from, to, port } = values;
  if (!from || !to || !port) throw new UsageError("explain needs --from, --to and --port");
  if (!/^[^/\s]+\/[^/\s]+$/.test(from)) throw new UsageError(`--from wants NS/POD, got "${from}"`);
  const m = /^(\d{1,5})(?:\/(TCP|UDP|SCTP))?$/i.exec(port);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) {
    throw new UsageError(`--port wants N/PROTO (N 1-65535, PROTO TCP, UDP or SCTP), got "${port}"`);
  }
  return {
    from,
    to,
    port: Number(m[1]),
    protocol: (m[2] ?? "TCP").toUpperCase() as Protocol,
    healthAddr: parseHostPort(values["health-addr"]!),
  };
}

/** `mycni-init flows ...`: how to print, and where the agent listens. */
export interface FlowsArgs {
  /** Keep printing new records as they come. */
  readonly follow: boolean;
  /** One JSON object per record and line, as the agent logs them. */
  readonly json: boolean;
  readonly healthAddr: { readonly hostname: string; readonly port: number };
}

/**
 * Parses the arguments after `flows`. Throws {@linkcode UsageError}.
 *
 * @example
 * parseFlowsArgs(["--follow", "--json"]);
 */
export function parseFlowsArgs(args: readonly string[]): FlowsArgs {
  const values = parseFlags(args, {
    follow: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    "health-addr": { type: "string", default: DEFAULT_HEALTH_ADDR },
  });
  return {
    follow: values.follow!,
    json: values.json!,
    healthAddr: parseHostPort(values["health-addr"]!),
  };
}

/** The flags in `args`, as `options` declares them; no positionals. Throws {@linkcode UsageError}. */
function parseFlags<O extends ParseArgsOptionsConfig>(args: readonly string[], options: O) {
  try {
    return parseArgs({ args: [...args], strict: true, allowPositionals: false, options }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** "host:port" or "[v6]:port". */
export function parseHostPort(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--health-addr wants host:port, got "${text}"`);
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}
