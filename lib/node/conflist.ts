// Pure desired state: from the node list to the cluster CIDRs and the conflist this node should
// have (the routes to peers: backend.ts). Nothing here touches the kernel or the disk.
import {
  type Cidr,
  cidrsOverlap,
  type Family,
  familyBits,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
} from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";

/** A parsed podCIDR in canonical text, or why it is not one. */
export type CanonicalCidr = { readonly cidr: Cidr; readonly text: string } | {
  readonly error: string;
};

// Node lists repeat the same strings on every reconcile; parsing them (bigint math) is most of a
// reconcile's CPU at 1000 nodes, so parse each distinct string once. Bounded: cleared when full.
const CACHE_LIMIT = 50_000;
const cidrCache = new Map<string, CanonicalCidr>();
const ipCache = new Map<string, { family: Family; text: string } | undefined>();

/**
 * `text` as a strict CIDR in canonical form (memoised).
 *
 * @example
 * canonicalCidr("FD00:10:244:0002::/64"); // { cidr, text: "fd00:10:244:2::/64" }
 */
export function canonicalCidr(text: string): CanonicalCidr {
  let hit = cidrCache.get(text);
  if (hit === undefined) {
    try {
      const cidr = parseCidr(text, { strict: true });
      hit = { cidr, text: formatCidr(cidr) };
    } catch (err) {
      hit = { error: (err as Error).message };
    }
    if (cidrCache.size >= CACHE_LIMIT) cidrCache.clear();
    cidrCache.set(text, hit);
  }
  return hit;
}

/** `text` as an IP in canonical form, or undefined (memoised). */
export function canonicalIp(text: string): { family: Family; text: string } | undefined {
  if (ipCache.has(text)) return ipCache.get(text);
  let hit: { family: Family; text: string } | undefined;
  try {
    const ip = parseIp(text);
    hit = { family: ip.family, text: formatIp(ip) };
  } catch {
    hit = undefined;
  }
  if (ipCache.size >= CACHE_LIMIT) ipCache.clear();
  ipCache.set(text, hit);
  return hit;
}

/** A node (or one of its podCIDRs) left out of the routes, and why. */
export interface Skipped {
  readonly node: string;
  readonly reason: string;
}

/**
 * The destinations never masqueraded: `--cluster-cidr` when given, else the union of every
 * node's podCIDRs, aggregated so a cluster allocated from one range costs a handful of rules.
 *
 * @example
 * clusterCidrs([], [{ name: "a", ips: [], podCIDRs: ["10.244.0.0/24", "10.244.1.0/24"] }]);
 * // ["10.244.0.0/23"]
 */
export function clusterCidrs(given: readonly string[], nodes: Iterable<NodeInfo>): string[] {
  if (given.length > 0) return aggregateCidrs(given.map((c) => parseCidr(c))).map(formatCidr);
  const all: Cidr[] = [];
  for (const node of nodes) all.push(...validCidrs(node.podCIDRs));
  return aggregateCidrs(all).map(formatCidr);
}

/** The smallest set of networks covering exactly the same addresses (v4 first). */
export function aggregateCidrs(cidrs: readonly Cidr[]): Cidr[] {
  const sorted = [...cidrs].sort((a, b) =>
    a.family - b.family || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0) ||
    a.prefix - b.prefix
  );
  const out: Cidr[] = [];
  for (const c of sorted) {
    const last = out[out.length - 1];
    if (last && last.family === c.family && last.prefix <= c.prefix && cidrsOverlap(last, c)) {
      continue;
    }
    out.push(c);
    // Merge siblings upwards: 10.0.0.0/24 + 10.0.1.0/24 -> 10.0.0.0/23, and again if possible.
    while (out.length >= 2) {
      const b = out[out.length - 1], a = out[out.length - 2];
      if (a.family !== b.family || a.prefix !== b.prefix || a.prefix === 0) break;
      const size = 1n << BigInt(familyBits(a.family) - a.prefix);
      if (a.network + size !== b.network || a.network % (size * 2n) !== 0n) break;
      out.splice(out.length - 2, 2, { family: a.family, network: a.network, prefix: a.prefix - 1 });
    }
  }
  return out;
}

/** The families this node's datapath needs: those of its podCIDRs and of the cluster CIDRs. */
export function familiesOf(cidrs: readonly string[]): Family[] {
  const set = new Set(validCidrs(cidrs).map((c) => c.family));
  return ([4, 6] as const).filter((f) => set.has(f));
}

function validCidrs(texts: readonly string[]): Cidr[] {
  const out: Cidr[] = [];
  for (const t of texts) {
    // A bad one is reported by peerCidrs() as a skipped podCIDR; not a reason to fail here.
    const c = canonicalCidr(t);
    if ("cidr" in c) out.push(c.cidr);
  }
  return out;
}

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
    bridge: "cni0",
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
