// Two simulated nodes for the runtimes: node namespaces on an underlay bridge in a "switch"
// namespace (TEST-NET-1 and 2001:db8:: addresses), routes between their podCIDRs (IPv4, or
// IPv4 + IPv6 for a dual-stack cluster), a conflist per node.
import { formatIp, gatewayOf, parseCidr } from "../../../lib/ip/cidr.ts";
import { run, runOutput } from "../../../lib/process/run.ts";
import { type TempNetns, tempNetns, uniqueName } from "../netns.ts";

/** A node as the agent's `--nodes-file` describes it; one entry per family, IPv4 first. */
export interface NodeSpec {
  readonly name: string;
  /** Underlay addresses (`ips[0]`, IPv4, is the hostPort target). */
  readonly ips: readonly string[];
  readonly podCIDRs: readonly string[];
}

/** The nodes, dual-stack; a cluster that is not keeps only the first (IPv4) of each list. */
export const NODE_SPECS: readonly NodeSpec[] = [
  {
    name: "n1",
    ips: ["192.0.2.11", "2001:db8::11"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  },
  {
    name: "n2",
    ips: ["192.0.2.12", "2001:db8::12"],
    podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
  },
];

/** One node: its namespace and its private CNI dirs. */
export interface SimNode {
  readonly spec: NodeSpec;
  readonly ns: TempNetns;
  readonly dir: string;
  readonly confDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The pod gateways the plugin puts on the bridge: first address of each podCIDR. */
  readonly gateways: readonly string[];
  /** The IPv4 one. */
  readonly gateway: string;
}

/** Which plugin the nodes' conflist drives. */
export type PluginKind = "mycni" | "reference";

/** The network name each conflist declares (podman's `--network`, libcni's NETWORK). */
export const NETWORK: Record<PluginKind, string> = { mycni: "mycni", reference: "mciref" };

/** The conflist `bin/mycni-init` writes (its shape, by hand until the agent exists). */
export function mycniConflist(node: SimNode, extra: readonly object[] = []): object {
  return {
    cniVersion: "1.0.0",
    cniVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    name: NETWORK.mycni,
    plugins: [
      {
        type: "mycni",
        bridge: "cni0",
        podCIDRs: node.spec.podCIDRs,
        dataDir: node.dataDir,
        logFile: node.logFile,
        mtu: 1500,
        hairpinMode: true,
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      ...extra,
    ],
  };
}

/** The reference `bridge` + `host-local` conflist with the same bridge, CIDR and portmap. */
export function referenceConflist(node: SimNode, extra: readonly object[] = []): object {
  return {
    cniVersion: "1.0.0",
    name: NETWORK.reference,
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        mtu: 1500,
        ipam: {
          type: "host-local",
          // One range set per family: host-local then hands out one address of each.
          ranges: node.spec.podCIDRs.map((subnet, i) => [{ subnet, gateway: node.gateways[i] }]),
          routes: node.spec.podCIDRs.map((c) => ({ dst: c.includes(":") ? "::/0" : "0.0.0.0/0" })),
          dataDir: node.dataDir,
        },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      ...extra,
    ],
  };
}

/** Writes `conf` as `<dir>/<file>` atomically (runtimes watch the dir and must not read half). */
export async function writeConflist(dir: string, file: string, conf: object): Promise<void> {
  await Deno.writeTextFile(`${dir}/.${file}.tmp`, JSON.stringify(conf, null, 1));
  await Deno.rename(`${dir}/.${file}.tmp`, `${dir}/${file}`);
}

/** Nodes, the switch between them, and how their routes were made. */
export interface Cluster extends AsyncDisposable {
  readonly nodes: readonly SimNode[];
  /** "agent" when bin/mycni-init wired the nodes, "by hand" while it is a stub. */
  readonly wiring: "agent" | "by hand";
}

/** Options for {@linkcode createCluster}. */
export interface ClusterOptions {
  readonly kind: PluginKind;
  /** Built bin/mycni-init, used for the mycni cluster when it is more than a stub. */
  readonly agent?: string;
  /** Dir the agent installs the plugin into (what the shims call). */
  readonly agentBinDir?: string;
  /** Give the nodes an IPv6 underlay address and podCIDR too. */
  readonly dualStack?: boolean;
}

function gatewayFor(cidr: string): string {
  return formatIp(gatewayOf(parseCidr(cidr)));
}

/**
 * Creates the nodes under `dir` for `kind`: underlay, forwarding, routes and conflists.
 *
 * @example
 * await using cluster = await createCluster(tmp, { kind: "reference" });
 */
export async function createCluster(dir: string, opts: ClusterOptions): Promise<Cluster> {
  const made: TempNetns[] = [];
  const dispose = async () => {
    for (const ns of made.reverse()) await ns[Symbol.asyncDispose]();
  };
  try {
    const sw = await tempNetns("mci");
    made.push(sw);
    // No MLD snooping: nothing queries, and NDP must simply flood.
    await run(["ip", "-n", sw.name, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
    await run(["ip", "-n", sw.name, "link", "set", "br0", "up"]);
    const nodes: SimNode[] = [];
    const families = opts.dualStack ? 2 : 1;
    for (const full of NODE_SPECS) {
      const spec: NodeSpec = {
        name: full.name,
        ips: full.ips.slice(0, families),
        podCIDRs: full.podCIDRs.slice(0, families),
      };
      const ns = await tempNetns("mci");
      made.push(ns);
      const port = uniqueName("mcp");
      await run([
        "ip",
        "-n",
        sw.name,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name,
      ]);
      await run(["ip", "-n", sw.name, "link", "set", port, "master", "br0", "up"]);
      for (const ip of spec.ips) {
        // nodad: usable at once, not after ~2 s of duplicate address detection.
        const addr = ip.includes(":")
          ? [`${ip}/64`, "dev", "eth0", "nodad"]
          : [`${ip}/24`, "dev", "eth0"];
        await run(["ip", "-n", ns.name, "addr", "add", ...addr]);
      }
      await run(["ip", "-n", ns.name, "link", "set", "eth0", "up"]);
      await run(ns.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
      if (opts.dualStack) await run(ns.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]));
      const nodeDir = `${dir}/${spec.name}`;
      const node: SimNode = {
        spec,
        ns,
        dir: nodeDir,
        confDir: `${nodeDir}/net.d`,
        dataDir: `${nodeDir}/ipam`,
        logFile: `${nodeDir}/mycni.log`,
        gateways: spec.podCIDRs.map(gatewayFor),
        gateway: gatewayFor(spec.podCIDRs[0]),
      };
      await Deno.mkdir(node.confDir, { recursive: true });
      await Deno.mkdir(node.dataDir, { recursive: true });
      nodes.push(node);
    }
    const wiring = opts.kind === "mycni" && opts.agent
      ? await wireWithAgent(dir, nodes, opts.agent, opts.agentBinDir!)
      : "by hand";
    if (wiring === "by hand") {
      for (const node of nodes) {
        for (const other of nodes) {
          if (other === node) continue;
          for (const [i, cidr] of other.spec.podCIDRs.entries()) {
            await run(["ip", "-n", node.ns.name, "route", "add", cidr, "via", other.spec.ips[i]]);
          }
        }
        const conf = opts.kind === "mycni" ? mycniConflist(node) : referenceConflist(node);
        await writeConflist(node.confDir, `10-${NETWORK[opts.kind]}.conflist`, conf);
      }
    }
    return { nodes, wiring, [Symbol.asyncDispose]: dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** Runs `mycni-init --once` in each node; "by hand" when the agent is still a stub. */
async function wireWithAgent(
  dir: string,
  nodes: readonly SimNode[],
  agent: string,
  binDir: string,
): Promise<Cluster["wiring"]> {
  const nodesFile = `${dir}/nodes.json`;
  await Deno.writeTextFile(
    nodesFile,
    JSON.stringify(
      nodes.map(({ spec }) => ({ name: spec.name, ips: spec.ips, podCIDRs: spec.podCIDRs })),
    ),
  );
  for (const node of nodes) {
    const out = await runOutput(node.ns.exec([
      agent,
      "--once",
      "--nodes-file",
      nodesFile,
      "--node-name",
      node.spec.name,
      "--cni-bin-dir",
      binDir,
      "--cni-conf-dir",
      node.confDir,
      "--cni-data-dir",
      node.dataDir,
      "--log-file",
      node.logFile,
    ]));
    if (out.code !== 0 && out.stderr.includes("not built yet")) return "by hand";
    if (out.code !== 0) {
      throw new Error(
        `mycni-init --once on ${node.spec.name} exited ${out.code}: ${out.stderr.trim()}`,
      );
    }
  }
  return "agent";
}
