// The conflist this node should have: the plugin's config the agent writes into the CNI conf
// dir. Pure: nothing here touches the kernel or the disk.
import { DEFAULT_BRIDGE } from "../cni/netconf.ts";

/** What goes into this node's conflist. */
export interface ConflistInput {
  readonly podCIDRs: readonly string[];
  readonly dataDir: string;
  readonly logFile: string;
  readonly mtu: number;
  /** Chain the reference `portmap` plugin (a `portmap` binary is in the CNI bin dir). */
  readonly portmap: boolean;
  /**
   * The agent's admission socket, when it enforces policy: the plugin then asks it before each
   * ADD returns. Absent: the plugin asks nobody (and the field is not written).
   */
  readonly agentSocket?: string;
}

/** Name of the conflist file in the CNI conf dir. */
export const CONFLIST_NAME = "10-mycni.conflist";

/** The conflist's network `name`: also the IPAM state directory under `dataDir`. */
export const NETWORK_NAME = "mycni";

/**
 * The conflist text (stable, so "changed" is a string compare).
 *
 * @example
 * renderConflist({ podCIDRs: ["10.244.1.0/24"], dataDir: "/var/lib/cni/networks",
 *   logFile: "/var/log/mycni.log", mtu: 1500, portmap: true });
 */
export function renderConflist(input: ConflistInput): string {
  const plugins: Record<string, unknown>[] = [{
    type: "mycni",
    bridge: DEFAULT_BRIDGE,
    podCIDRs: [...input.podCIDRs],
    dataDir: input.dataDir,
    logFile: input.logFile,
    mtu: input.mtu,
    hairpinMode: true,
    ...(input.agentSocket === undefined ? {} : { agentSocket: input.agentSocket }),
    // Runtimes that pin addresses (podman --ip/--ip6) pass them as runtimeConfig.ips, and only to
    // a plugin that declares the capability; kubelet never does.
    capabilities: { ips: true },
  }];
  if (input.portmap) {
    plugins.push({ type: "portmap", capabilities: { portMappings: true }, snat: true });
  }
  const conf = {
    cniVersion: "1.0.0",
    cniVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    name: NETWORK_NAME,
    plugins,
  };
  return JSON.stringify(conf, null, 2) + "\n";
}
