// Per-peer backend choice and the datapath it asks for (DESIGN.md "Backends"), as pure functions:
// from the node list and what the kernel said about the way to each peer's address, the routes,
// VXLAN neighbours and FDB entries this node should have. Nothing here touches the kernel.
//
// As flannel's vxlan backend with DirectRouting: a peer whose address is on-link gets a plain
// route via that address (host-gw speed); any other peer is reached through the VXLAN device,
// `podCIDR via <VTEP> dev mycni.vxlan onlink`, with a permanent neighbour entry for the VTEP and
// an FDB entry sending its MAC to the peer's underlay address. Unlike flannel, nothing is
// published through the API: every node derives every peer's VTEP MAC and address from data it
// already has (the peer's address and podCIDR).
import { canonicalCidr, canonicalIp } from "../ip/canonical.ts";
import { type Cidr, cidrsOverlap, type Family, formatIp } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import { type RouteAnswer, RTN_LOCAL, RTN_UNICAST } from "../net/route.ts";
import { nameDigest } from "../sys/digest.ts";

/** `--backend`: per peer (`auto`), or one backend for every peer. */
export type BackendMode = "auto" | "host-gw" | "vxlan";
/** How one peer podCIDR is reached. */
export type Backend = "host-gw" | "vxlan";
/** The values `--backend` accepts. */
export const BACKEND_MODES: readonly BackendMode[] = ["auto", "host-gw", "vxlan"];

/**
 * Bytes VXLAN adds to each packet on the underlay: outer IPv4 20 (IPv6 40) + UDP 8 + VXLAN 8 +
 * the inner Ethernet header 14.
 *
 * @example
 * vxlanOverhead(4); // 50
 */
export function vxlanOverhead(underlay: Family): number {
  return (underlay === 4 ? 20 : 40) + 8 + 8 + 14;
}

/**
 * The pods' (and the VXLAN device's) MTU: the underlay's, less the VXLAN overhead when any peer
 * may be reached through VXLAN (`auto`, `vxlan`); `host-gw` keeps the full MTU.
 *
 * @example
 * podMtu("auto", 1500, 4); // 1450
 */
export function podMtu(mode: BackendMode, underlayMtu: number, underlay: Family): number {
  return mode === "host-gw" ? underlayMtu : underlayMtu - vxlanOverhead(underlay);
}

/**
 * The VTEP MAC of the node whose underlay address is `ip`: every node computes every peer's, so
 * nothing needs publishing. Locally administered unicast; for IPv4 `0e:4d` + the four octets
 * (readable, and distinct for distinct addresses), for IPv6 `1e` + 40 bits of a digest of the
 * canonical address (a different first octet, so the two kinds never meet).
 *
 * @example
 * vtepMac("192.0.2.12"); // "0e:4d:c0:00:02:0c"
 */
export function vtepMac(ip: string): string {
  const c = canonicalIp(ip);
  if (!c) throw new Error(`Cannot derive a VTEP MAC from "${ip}": not an IP address`);
  const bytes = c.family === 4
    ? [0x0e, 0x4d, ...c.text.split(".").map(Number)]
    : [0x1e, ...(nameDigest(c.text).slice(0, 10).match(/../g) ?? []).map((h) => parseInt(h, 16))];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * A node's VTEP address in a family: the network address of its podCIDR, as flannel uses. IPAM
 * never hands it out and every node can compute it; on the node's own VXLAN device (as a host
 * address) it is the source of the node's traffic to pods behind the tunnel, which the peer
 * routes back through its own tunnel: the underlay never carries a pod address, and strict
 * reverse-path filtering holds on both ends.
 *
 * @example
 * vtepAddress("10.244.2.0/24"); // "10.244.2.0"
 */
export function vtepAddress(podCidr: string): string {
  const c = canonicalCidr(podCidr);
  if ("error" in c) throw new Error(`Cannot derive a VTEP address from "${podCidr}": ${c.error}`);
  return formatIp({ family: c.cidr.family, value: c.cidr.network });
}

/** The host addresses this node's VXLAN device holds: its VTEPs, one per podCIDR. */
export function ownVtepAddresses(podCIDRs: readonly string[]): string[] {
  return podCIDRs.filter((c) => "cidr" in canonicalCidr(c)).map((c) => {
    const ip = vtepAddress(c);
    return `${ip}/${ip.includes(":") ? 128 : 32}`;
  });
}

/** Another node's podCIDR and the addresses that may reach it. */
export interface PeerCidr {
  readonly node: string;
  readonly family: Family;
  /** Canonical CIDR. */
  readonly dst: string;
  /** Its VTEP address ({@linkcode vtepAddress}). */
  readonly vtep: string;
  /** The node's first address of each family, canonical. */
  readonly addrs: { readonly 4?: string; readonly 6?: string };
}

/** A node (or one of its podCIDRs) left out of the routes, and why. */
export interface Skipped {
  readonly node: string;
  readonly reason: string;
}

/** Every other node's podCIDRs, and the nodes or podCIDRs left out with why. */
export interface PeerList {
  readonly peers: PeerCidr[];
  readonly skipped: Skipped[];
}

/**
 * Other nodes' podCIDRs with their addresses. Nodes are taken in name order so a podCIDR
 * claimed twice always resolves the same way; podCIDRs that overlap this node's are left out.
 *
 * @example
 * peerCidrs([{ name: "n2", ips: ["192.0.2.12"], podCIDRs: ["10.244.2.0/24"] }], "n1").peers;
 * // [{ node: "n2", family: 4, dst: "10.244.2.0/24", vtep: "10.244.2.0", addrs: { 4: "192.0.2.12" } }]
 */
export function peerCidrs(nodes: Iterable<NodeInfo>, self: string): PeerList {
  const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const own = sorted.find((n) => n.name === self);
  const ownCidrs: Cidr[] = [];
  for (const t of own?.podCIDRs ?? []) {
    const c = canonicalCidr(t);
    if ("cidr" in c) ownCidrs.push(c.cidr);
  }
  const peers: PeerCidr[] = [];
  const skipped: Skipped[] = [];
  const taken = new Map<string, string>();
  for (const node of sorted) {
    if (node.name === self) continue;
    const addrs: { 4?: string; 6?: string } = {};
    for (const text of node.ips) {
      const ip = canonicalIp(text);
      if (ip === undefined) {
        skipped.push({ node: node.name, reason: `address "${text}" is not an IP` });
      } else addrs[ip.family] ??= ip.text;
    }
    if (node.podCIDRs.length === 0) skipped.push({ node: node.name, reason: "no podCIDR" });
    for (const text of node.podCIDRs) {
      const c = canonicalCidr(text);
      if ("error" in c) {
        skipped.push({ node: node.name, reason: c.error });
      } else if (ownCidrs.some((o) => cidrsOverlap(o, c.cidr))) {
        skipped.push({
          node: node.name,
          reason: `podCIDR ${c.text} overlaps this node's podCIDRs`,
        });
      } else if (taken.has(c.text)) {
        skipped.push({
          node: node.name,
          reason: `podCIDR ${c.text} is already node ${taken.get(c.text)}'s`,
        });
      } else {
        taken.set(c.text, node.name);
        peers.push({
          node: node.name,
          family: c.cidr.family,
          dst: c.text,
          vtep: formatIp({ family: c.cidr.family, value: c.cidr.network }),
          addrs,
        });
      }
    }
  }
  return { peers, skipped };
}

/** The addresses `ip route get` must be asked about: each peer's host-gw gateway candidate. */
export function pathTargets(mode: BackendMode, peers: readonly PeerCidr[]): string[] {
  if (mode === "vxlan") return [];
  const out = new Set<string>();
  for (const p of peers) {
    const ip = p.addrs[p.family];
    if (ip !== undefined) out.add(ip);
  }
  return [...out];
}

/** Whether a peer address is on-link, the device the kernel would use, and in words why. */
export interface PathLookup {
  readonly onLink: boolean;
  readonly oif?: number;
  /** "on-link", "via 192.0.2.254", "no route (Network is unreachable)". */
  readonly detail: string;
}

/**
 * The contract's test for host-gw: exactly one route, a plain unicast one, no gateway (a
 * blackhole or unreachable route has no gateway either, and is no path). `answer` is the
 * kernel's error text when the lookup failed.
 *
 * @example
 * judgePath({ routes: 1, type: 1, oif: 2, multipath: false }); // { onLink: true, oif: 2, detail: "on-link" }
 */
export function judgePath(answer: RouteAnswer | string): PathLookup {
  if (typeof answer === "string") return { onLink: false, detail: `no route (${answer})` };
  const { routes, type, via, oif, multipath } = answer;
  if (routes !== 1) return { onLink: false, detail: `${routes} routes` };
  if (type === RTN_LOCAL) return { onLink: false, detail: "a local address of this node" };
  if (type !== RTN_UNICAST) return { onLink: false, detail: `a route of type ${type}` };
  if (multipath) return { onLink: false, detail: "a multipath route" };
  if (via !== undefined) return { onLink: false, detail: `via ${via}`, ...(oif ? { oif } : {}) };
  if (oif === undefined) return { onLink: false, detail: "a route without a device" };
  return { onLink: true, oif, detail: "on-link" };
}

/** This node's VXLAN device, or why there is none to use. */
export type VxlanState =
  | { readonly dev: number; readonly local: string; readonly family: Family }
  | { readonly unavailable: string };

/** What {@linkcode planDatapath} decides from. */
export interface DatapathInput {
  readonly mode: BackendMode;
  readonly peers: readonly PeerCidr[];
  /** `judgePath` of each address in `pathTargets(mode, peers)`. */
  readonly paths: ReadonlyMap<string, PathLookup>;
  /** Undefined with `--backend host-gw`. */
  readonly vxlan?: VxlanState;
}

/** A route to a peer podCIDR. */
export interface PeerRoute {
  readonly family: Family;
  readonly dst: string;
  readonly via: string;
  /** The device: the lookup's for host-gw, the VXLAN device's for VXLAN. */
  readonly oif?: number;
  readonly onlink: boolean;
  readonly node: string;
  readonly backend: Backend;
}

/** A peer's VTEP address and MAC on the VXLAN device. */
export interface VtepNeighbour {
  readonly family: Family;
  readonly ip: string;
  readonly mac: string;
  readonly node: string;
}

/** Where the VXLAN device sends a peer's VTEP MAC: its underlay address. */
export interface VtepFdb {
  readonly mac: string;
  readonly dst: string;
  readonly node: string;
}

/** The decision for one peer podCIDR; `backend` undefined means it gets nothing. */
export interface PeerChoice {
  readonly node: string;
  readonly dst: string;
  readonly family: Family;
  readonly backend?: Backend;
  // Why, in parts that repeat from one resync to the next (so a choice is compared without
  // building text for every peer every time); {@linkcode choiceReason} puts them in words.
  /** The peer's address host-gw would route via; absent when it has none of this family. */
  readonly gateway?: string;
  /** What the kernel said about `gateway` (with `--backend vxlan`, that nobody asked). */
  readonly path?: PathLookup;
  /** What kept it from any backend. */
  readonly blocked?: Blocked;
}

/** Why a peer podCIDR gets nothing. */
export type Blocked =
  | { readonly by: "host-gw" }
  | { readonly by: "no-vxlan"; readonly detail: string }
  | { readonly by: "no-underlay-address"; readonly underlay: Family }
  | { readonly by: "mac-collision"; readonly mac: string; readonly owner: string };

/**
 * A choice in words, for logs and /healthz.
 *
 * @example
 * choiceReason(plan.choices[0]); // "198.51.100.13 is not on-link: via 192.0.2.254"
 */
export function choiceReason(c: PeerChoice): string {
  const why = c.path === FORCED_VXLAN
    ? "--backend vxlan"
    : c.gateway === undefined
    ? `no IPv${c.family} address`
    : c.path?.onLink
    ? `${c.gateway} is on-link`
    : `${c.gateway} is not on-link: ${c.path?.detail ?? "not looked up"}`;
  const b = c.blocked;
  if (b === undefined) return why;
  switch (b.by) {
    case "host-gw":
      return `--backend host-gw cannot reach it: ${why}`;
    case "no-vxlan":
      return `${why}, and VXLAN is unavailable: ${b.detail}`;
    case "no-underlay-address":
      return c.gateway === undefined && c.family === b.underlay
        ? `no IPv${c.family} address (for host-gw or the VXLAN underlay)`
        : `${why}, and no IPv${b.underlay} address for the VXLAN underlay`;
    case "mac-collision":
      return `${why}, and its VTEP MAC ${b.mac} is also ${b.owner}'s`;
  }
}

/** Whether two choices for one podCIDR say the same (parts compared as they are). */
export function sameChoice(a: PeerChoice, b: PeerChoice): boolean {
  const x = a.blocked, y = b.blocked;
  return a.backend === b.backend && a.gateway === b.gateway && a.path === b.path &&
    (x === y || (x !== undefined && y !== undefined && JSON.stringify(x) === JSON.stringify(y)));
}

/** Everything this node should have towards its peers. */
export interface DatapathPlan {
  readonly routes: PeerRoute[];
  readonly neighbours: VtepNeighbour[];
  readonly fdb: VtepFdb[];
  readonly choices: PeerChoice[];
}

/**
 * Decides each peer podCIDR's backend and derives the routes, neighbours and FDB entries. A
 * podCIDR that cannot be reached as `mode` allows gets nothing at all (never a route the kernel
 * would refuse or blackhole) and a choice without a backend saying why.
 *
 * @example
 * planDatapath({ mode: "auto", peers, paths, vxlan: { dev: 7, local: "192.0.2.11", family: 4 } });
 */
export function planDatapath(input: DatapathInput): DatapathPlan {
  const routes: PeerRoute[] = [];
  const neighbours: VtepNeighbour[] = [];
  const fdb = new Map<string, VtepFdb>();
  const choices: PeerChoice[] = [];
  const macOwner = new Map<string, string>();
  const vx = input.vxlan && "dev" in input.vxlan ? input.vxlan : undefined;
  if (vx) macOwner.set(vtepMac(vx.local), "this node");
  const noVxlan: Blocked | undefined = vx ? undefined : {
    by: "no-vxlan",
    detail: input.vxlan && "unavailable" in input.vxlan ? input.vxlan.unavailable : "no device",
  };
  for (const p of input.peers) {
    const gateway = input.mode === "vxlan" ? undefined : p.addrs[p.family];
    const path = gateway === undefined ? undefined : input.paths.get(gateway);
    const choice: { -readonly [K in keyof PeerChoice]: PeerChoice[K] } = {
      node: p.node,
      dst: p.dst,
      family: p.family,
    };
    choices.push(choice);
    if (input.mode === "vxlan") choice.path = FORCED_VXLAN;
    else if (gateway !== undefined) {
      choice.gateway = gateway;
      choice.path = path ?? NOT_LOOKED_UP;
    }
    if (input.mode !== "vxlan" && gateway !== undefined && path?.onLink) {
      const route: { -readonly [K in keyof PeerRoute]: PeerRoute[K] } = {
        family: p.family,
        dst: p.dst,
        via: gateway,
        onlink: false,
        node: p.node,
        backend: "host-gw",
      };
      if (path.oif !== undefined) route.oif = path.oif;
      routes.push(route);
      choice.backend = "host-gw";
      continue;
    }
    if (input.mode === "host-gw") {
      choice.blocked = HOST_GW_ONLY;
      continue;
    }
    if (!vx) {
      choice.blocked = noVxlan;
      continue;
    }
    const remote = p.addrs[vx.family];
    if (remote === undefined) {
      choice.blocked = { by: "no-underlay-address", underlay: vx.family };
      continue;
    }
    const mac = vtepMac(remote);
    const owner = macOwner.get(mac);
    if (owner !== undefined && owner !== p.node) {
      choice.blocked = { by: "mac-collision", mac, owner };
      continue;
    }
    macOwner.set(mac, p.node);
    fdb.set(mac, { mac, dst: remote, node: p.node });
    neighbours.push({ family: p.family, ip: p.vtep, mac, node: p.node });
    routes.push({
      family: p.family,
      dst: p.dst,
      via: p.vtep,
      oif: vx.dev,
      onlink: true,
      node: p.node,
      backend: "vxlan",
    });
    choice.backend = "vxlan";
  }
  return { routes, neighbours, fdb: [...fdb.values()], choices };
}

const HOST_GW_ONLY: Blocked = { by: "host-gw" };
const NOT_LOOKED_UP: PathLookup = { onLink: false, detail: "not looked up" };
const FORCED_VXLAN: PathLookup = { onLink: false, detail: "--backend vxlan" };
