// Random clusters for policy property tests: 2-3 dual-stack nodes, namespaces with labels (some
// without a Namespace object), pods with labels and named container ports (dual-stack, single-
// stack, host-network, without addresses), and NetworkPolicies as their JSON specs through the
// real parser. A world mutates step by step (a pod relabelled, a policy replaced, ...) keeping
// the objects that did not change, as the agent's informers do, so compiles in one process see
// what their caches see in production. Seeded: the same seed gives the same worlds.
import { type Family, formatCidr, formatIp, parseCidr, parseIp } from "../../lib/ip/cidr.ts";
import { parseNetworkPolicy } from "../../lib/kube/network_policy.ts";
import {
  type ContainerPort,
  type NamespaceInfo,
  objectKey,
  type PodInfo,
  type PolicyEntry,
  type Protocol,
} from "../../lib/kube/policy_objects.ts";
import type { PolicyState } from "../../lib/policy/compile.ts";

/** A seeded pseudo-random source (mulberry32). */
export class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  /** In [0, 1). */
  float(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** In [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)];
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  /** A uniform value in [0, n). */
  bigBelow(n: bigint): bigint {
    let v = 0n;
    for (let bits = 0n; (1n << bits) < n; bits += 16n) v = (v << 16n) | BigInt(this.int(0, 0xffff));
    return v % n;
  }
}

/** A node: its addresses, its podCIDRs, and the first address of each (the bridge, cni0). */
export interface WorldNode {
  readonly name: string;
  readonly index: number;
  readonly ips: readonly [string, string];
  readonly gateways: readonly [string, string];
  readonly podCIDRs: readonly [string, string];
}

/** The cluster, as objects; `state()` gives the PolicyState of this step. */
export interface World {
  readonly nodes: readonly WorldNode[];
  /** null: pods live there but the Namespace object is not (yet) known. */
  readonly namespaces: Map<string, NamespaceInfo | null>;
  readonly pods: Map<string, PodInfo>;
  readonly policies: Map<string, { readonly spec: unknown; readonly entry: PolicyEntry }>;
  /** How often a policy port is a name: some worlds are mostly named ports. */
  readonly namedShare: number;
}

/** The CIDRs the cluster's pods come from (for the masquerade part of each node's table). */
export const CLUSTER_CIDRS = ["10.244.0.0/16", "fd00:10:244::/48"];

const NS_NAMES = ["x", "y", "z", "w"];
const POD_LABELS: Record<string, readonly string[]> = {
  app: ["web", "db", "api"],
  tier: ["fe", "be"],
  role: ["x"],
};
const NS_LABELS: Record<string, readonly string[]> = { team: ["a", "b"], env: ["prod", "dev"] };
const PORT_NAMES = ["http", "dns", "metrics", "nosuch"];
const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];
// Host numbers near the /25, /26 and /24 edges, so ipBlocks cut right beside pods.
const HOSTS = [2, 3, 4, 63, 64, 65, 127, 128, 129, 191, 192, 193, 253, 254];

/** A new random world. */
export function randomWorld(rng: Rng): World {
  const nodes = [...Array(rng.int(2, 3)).keys()].map((i): WorldNode => ({
    name: `n${i + 1}`,
    index: i + 1,
    ips: [`192.0.2.1${i + 1}`, `2001:db8::1${i + 1}`],
    gateways: [`10.244.${i + 1}.1`, `fd00:10:244:${i + 1}::1`],
    podCIDRs: [`10.244.${i + 1}.0/24`, `fd00:10:244:${i + 1}::/64`],
  }));
  const world: World = {
    nodes,
    namespaces: new Map(),
    pods: new Map(),
    policies: new Map(),
    namedShare: rng.pick([0.4, 0.4, 0.9]),
  };
  for (const ns of NS_NAMES.slice(0, rng.int(2, 4))) {
    world.namespaces.set(ns, rng.chance(0.85) ? randomNamespace(rng, ns) : null);
  }
  for (let i = rng.int(4, 10); i > 0; i--) addPod(rng, world);
  for (let i = rng.int(2, 6); i > 0; i--) addPolicy(rng, world);
  return world;
}

/**
 * The PolicyState of the world now. A node's addresses include its bridge's: the node's traffic
 * to its own pods leaves from that address, and explain must know it is the node's.
 */
export function stateOf(world: World): PolicyState {
  const namespaces = new Map<string, NamespaceInfo>();
  for (const [name, ns] of world.namespaces) if (ns) namespaces.set(name, ns);
  return {
    pods: new Map(world.pods),
    namespaces,
    policies: new Map([...world.policies].map(([k, p]) => [k, p.entry])),
    nodes: new Map(world.nodes.map((n) => [n.name, [...n.ips, ...n.gateways]])),
  };
}

/** Changes one to three things, replacing changed objects and keeping the rest. */
export function mutate(rng: Rng, world: World): string[] {
  const done: string[] = [];
  for (let n = rng.int(1, 3); n > 0; n--) done.push(mutateOnce(rng, world));
  return done;
}

function mutateOnce(rng: Rng, world: World): string {
  const pods = [...world.pods.keys()];
  const key = pods.length ? rng.pick(pods) : undefined;
  const old = key === undefined ? undefined : world.pods.get(key)!;
  switch (rng.int(0, 9)) {
    case 0:
      if (!old) break;
      world.pods.set(key!, { ...old, labels: randomLabels(rng, POD_LABELS) });
      return `relabel pod ${key}`;
    case 1:
      if (!old) break;
      world.pods.set(key!, { ...old, ports: randomPorts(rng) });
      return `new ports on pod ${key}`;
    case 2:
      return `add pod ${addPod(rng, world)}`;
    case 3:
      if (!old) break;
      world.pods.delete(key!);
      return `delete pod ${key}`;
    case 4: {
      const pending = pods.filter((k) => world.pods.get(k)!.ips.length === 0);
      if (pending.length === 0) break;
      const k = rng.pick(pending), p = world.pods.get(k)!;
      const node = world.nodes.find((n) => n.name === p.node)!;
      world.pods.set(k, { ...p, ips: podAddresses(rng, world, node, rng.pick(["dual", "v4"])) });
      return `pod ${k} got its addresses`;
    }
    case 5: {
      const ns = rng.pick([...world.namespaces.keys()]);
      world.namespaces.set(ns, rng.chance(0.9) ? randomNamespace(rng, ns) : null);
      return `relabel namespace ${ns}`;
    }
    case 6:
      return `add policy ${addPolicy(rng, world)}`;
    case 8: {
      // The kubelet reuses a deleted pod's address while its Pod object lingers (terminating):
      // two pods on one node hold one address for a while.
      const holders = pods.filter((k) => {
        const p = world.pods.get(k)!;
        return !p.hostNetwork && p.ips.length > 0;
      });
      if (holders.length === 0) break;
      const k = addPod(rng, world), stale = world.pods.get(rng.pick(holders))!;
      world.pods.set(k, {
        ...world.pods.get(k)!,
        node: stale.node,
        ips: stale.ips,
        hostNetwork: false,
      });
      return `add pod ${k} on the addresses of ${objectKey(stale.namespace, stale.name)}`;
    }
    case 7: {
      const keys = [...world.policies.keys()];
      if (keys.length === 0) break;
      const k = rng.pick(keys);
      world.policies.delete(k);
      return `delete policy ${k}`;
    }
    default:
      break;
  }
  return "nothing";
}

function randomNamespace(rng: Rng, name: string): NamespaceInfo {
  return {
    name,
    labels: { "kubernetes.io/metadata.name": name, ...randomLabels(rng, NS_LABELS) },
  };
}

function randomLabels(
  rng: Rng,
  pool: Record<string, readonly string[]>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, values] of Object.entries(pool)) if (rng.chance(0.6)) out[k] = rng.pick(values);
  return out;
}

function addPod(rng: Rng, world: World): string {
  const namespace = rng.pick([...world.namespaces.keys()]);
  let i = 0;
  while (world.pods.has(objectKey(namespace, `p${i}`))) i++;
  const name = `p${i}`;
  const node = rng.pick(world.nodes);
  const kind = rng.pick(["dual", "dual", "dual", "v4", "v6", "v6", "none", "host"] as const);
  const pod: PodInfo = {
    namespace,
    name,
    labels: randomLabels(rng, POD_LABELS),
    node: node.name,
    ips: kind === "host" ? node.ips : kind === "none" ? [] : podAddresses(rng, world, node, kind),
    hostNetwork: kind === "host",
    ports: randomPorts(rng),
  };
  world.pods.set(objectKey(namespace, name), pod);
  return objectKey(namespace, name);
}

/** Fresh addresses on `node`, IPv4 first; never one another pod holds. */
function podAddresses(
  rng: Rng,
  world: World,
  node: WorldNode,
  kind: "dual" | "v4" | "v6",
): string[] {
  const taken = new Set([...world.pods.values()].flatMap((p) => p.ips));
  const fresh = (make: (h: number) => string) => {
    for (;;) {
      const ip = make(rng.chance(0.7) ? rng.pick(HOSTS) : rng.int(2, 254));
      if (!taken.has(ip)) return ip;
    }
  };
  // IPv6 hosts run past 0xff too, so /120 blocks have pods on both sides.
  const v6 = (h: number) =>
    formatIp(
      parseIp(`fd00:10:244:${node.index}::${(h + (rng.chance(0.3) ? 0x100 : 0)).toString(16)}`),
    );
  const out: string[] = [];
  if (kind !== "v6") out.push(fresh((h) => `10.244.${node.index}.${h}`));
  if (kind !== "v4") out.push(fresh(v6));
  return out;
}

/** Named ports that mostly agree ("http" is 80/TCP on most pods) and sometimes do not. */
function randomPorts(rng: Rng): ContainerPort[] {
  const out: ContainerPort[] = [];
  for (let n = rng.int(0, 3); n > 0; n--) {
    const name = rng.pick(["http", "http", "dns", "metrics", ""]);
    const port = name === "http"
      ? (rng.chance(0.7) ? 80 : rng.pick([81, 8080]))
      : name === "dns"
      ? (rng.chance(0.8) ? 53 : 5353)
      : name === "metrics"
      ? rng.pick([9090, 8080])
      : rng.pick([80, 81, 8080]);
    const protocol = name === "dns"
      ? (rng.chance(0.7) ? "UDP" : rng.pick(PROTOCOLS))
      : rng.chance(0.8)
      ? "TCP"
      : rng.pick(PROTOCOLS);
    out.push({ name, port, protocol });
  }
  return out;
}

function addPolicy(rng: Rng, world: World): string {
  const namespace = rng.pick([...world.namespaces.keys()]);
  const name = `np${rng.int(0, 5)}`; // a name in use is replaced
  const spec = randomPolicySpec(rng, world);
  const parsed = parseNetworkPolicy({ metadata: { namespace, name }, spec });
  if (!parsed.ok) throw new Error(`generated policy ${namespace}/${name}: ${parsed.reason}`);
  world.policies.set(objectKey(namespace, name), { spec, entry: parsed.entry });
  return objectKey(namespace, name);
}

function randomPolicySpec(rng: Rng, world: World): Record<string, unknown> {
  const spec: Record<string, unknown> = { podSelector: randomSelector(rng, POD_LABELS, 0.3) };
  const types = rng.pick([undefined, undefined, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
  if (types) spec.policyTypes = types;
  for (const [dir, peers] of [["ingress", "from"], ["egress", "to"]] as const) {
    const r = rng.float();
    if (r < 0.25) continue; // absent
    if (r < 0.35) spec[dir] = []; // empty: isolates, allows nothing
    else spec[dir] = [...Array(rng.int(1, 3))].map(() => randomRule(rng, world, peers));
  }
  return spec;
}

function randomRule(rng: Rng, world: World, peersField: "from" | "to"): Record<string, unknown> {
  const rule: Record<string, unknown> = {};
  const r = rng.float();
  if (r < 0.05) rule[peersField] = [];
  else if (r > 0.25) {
    rule[peersField] = [...Array(rng.pick([1, 1, 1, 2, 3]))].map(() => randomPeer(rng, world));
  }
  const p = rng.float();
  if (p < 0.05) rule.ports = [];
  else if (p > 0.35) {
    rule.ports = [...Array(rng.int(1, 2))].map(() => randomPolicyPort(rng, world.namedShare));
  }
  return rule;
}

function randomPeer(rng: Rng, world: World): Record<string, unknown> {
  const r = rng.float();
  if (r < 0.25) return { podSelector: randomSelector(rng, POD_LABELS, 0.2) };
  if (r < 0.45) return { namespaceSelector: randomSelector(rng, NS_LABELS, 0.2) };
  if (r < 0.65) {
    return {
      podSelector: randomSelector(rng, POD_LABELS, 0.3),
      namespaceSelector: randomSelector(rng, NS_LABELS, 0.3),
    };
  }
  return { ipBlock: randomIpBlock(rng, world) };
}

/** A label selector JSON: empty with probability `empty`, else matchLabels and expressions. */
function randomSelector(
  rng: Rng,
  pool: Record<string, readonly string[]>,
  empty: number,
): Record<string, unknown> {
  if (rng.chance(empty)) return {};
  const keys = Object.keys(pool);
  const out: Record<string, unknown> = {};
  if (rng.chance(0.5)) {
    const k = rng.pick(keys);
    out.matchLabels = { [k]: rng.pick(pool[k]) };
  }
  if (!out.matchLabels || rng.chance(0.4)) {
    out.matchExpressions = [...Array(rng.int(1, 2))].map(() => {
      const key = rng.pick(keys);
      const operator = rng.pick(["In", "NotIn", "Exists", "DoesNotExist"]);
      if (operator === "Exists" || operator === "DoesNotExist") return { key, operator };
      const values = [...new Set([rng.pick(pool[key]), rng.pick(pool[key])])];
      return { key, operator, values };
    });
  }
  return out;
}

/** Blocks that cover pods, nodes and outside hosts, at sizes on both sides of 256 addresses. */
function randomIpBlock(rng: Rng, world: World): { cidr: string; except?: string[] } {
  const family: Family = rng.chance(0.5) ? 4 : 6;
  const i = rng.int(1, 3);
  const podIps = [...world.pods.values()].filter((p) => !p.hostNetwork).flatMap((p) => p.ips)
    .map((ip) => parseIp(ip)).filter((ip) => ip.family === family);
  const single = podIps.length > 0 && rng.chance(0.1)
    ? [`${formatIp(rng.pick(podIps))}/${family === 4 ? 32 : 128}`]
    : [];
  const cidrs = family === 4
    ? [
      `10.244.${i}.0/24`,
      `10.244.${i}.0/25`,
      `10.244.${i}.128/25`,
      `10.244.${i}.64/26`,
      "10.244.2.0/23",
      "10.244.0.0/22",
      "10.244.0.0/16",
      "0.0.0.0/0",
      "192.0.2.0/24",
      "203.0.113.0/24",
      "203.0.112.0/23",
    ]
    : [
      `fd00:10:244:${i}::/120`,
      `fd00:10:244:${i}::/121`,
      `fd00:10:244:${i}::80/121`,
      `fd00:10:244:${i}::100/120`,
      `fd00:10:244:${i}::/119`,
      `fd00:10:244:${i}::/64`,
      "fd00:10:244::/48",
      "::/0",
      "2001:db8::/64",
      "2001:db8:ff::/120",
    ];
  const bits = family === 4 ? 32 : 128;
  if (rng.chance(0.25)) {
    // 512 addresses less one near the middle: pieces of 254 to 257 addresses, on both sides of
    // the renderer's 256-address switch from listed addresses to an interval set.
    const wide = parseCidr(
      family === 4 ? rng.pick(["10.244.0.0/23", "10.244.2.0/23"]) : `fd00:10:244:${i}::/119`,
    );
    const hole = { family, network: wide.network + BigInt(rng.int(254, 257)), prefix: bits };
    return { cidr: formatCidr(wide), except: [formatCidr(hole)] };
  }
  const cidr = parseCidr(rng.pick([...cidrs, ...single]));
  const except: string[] = [];
  for (let n = rng.pick([0, 0, 1, 1, 2]); n > 0 && cidr.prefix < bits; n--) {
    const size = 1n << BigInt(bits - cidr.prefix);
    const inside = podIps.filter((ip) =>
      ip.value >= cidr.network && ip.value < cidr.network + size
    );
    const anchor = inside.length > 0 && rng.chance(0.6)
      ? rng.pick(inside).value
      : cidr.network + rng.bigBelow(size);
    const prefix = Math.min(
      bits,
      rng.pick([
        cidr.prefix + 1,
        cidr.prefix + 2,
        cidr.prefix + 8,
        bits,
        rng.int(cidr.prefix + 1, bits),
      ]),
    );
    const host = (1n << BigInt(bits - prefix)) - 1n;
    except.push(formatCidr({ family, network: anchor & ~host, prefix }));
  }
  return except.length ? { cidr: formatCidr(cidr), except } : { cidr: formatCidr(cidr) };
}

/** A port entry JSON: by number (sometimes with endPort), by name, or the whole protocol. */
function randomPolicyPort(rng: Rng, namedShare: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (rng.chance(namedShare)) {
    // A name, mostly with the protocol the pods give it (absent is TCP).
    const name = rng.pick(PORT_NAMES);
    if (rng.chance(0.3)) out.protocol = rng.pick(PROTOCOLS);
    else if (name === "dns") out.protocol = "UDP";
    out.port = name;
    return out;
  }
  if (rng.chance(0.8)) out.protocol = rng.pick(PROTOCOLS); // absent: TCP
  if (rng.chance(0.25)) return out;
  const port = rng.pick([53, 80, 81, 5353, 8080, 9090]);
  out.port = port;
  if (rng.chance(0.25)) out.endPort = port + rng.pick([1, 10, 1000]);
  return out;
}
