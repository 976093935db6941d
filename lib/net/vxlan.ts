// The agent's VXLAN device (DESIGN.md "Backends"): one `mycni.vxlan` per node, created, checked
// and removed over rtnetlink, and the VTEP addresses it holds. The device is ours by its name:
// everything on it (addresses, neighbours, FDB entries) is the agent's.
import {
  attr,
  concat,
  ENODEV,
  nested,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
  type Rtnl,
  strAttr,
  u32Attr,
  u8Attr,
} from "./netlink.ts";
import {
  addrAdd,
  addrList,
  AF_INET,
  AF_INET6,
  type Dev,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_UP,
  ifinfomsg,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  ipBytes,
  ipText,
  linkDel,
  linkSet,
  macBytes,
  parseLink,
  RTEXT_FILTER_SKIP_STATS,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "./rtnl.ts";

/** The device's name: fixed, so every agent run (and `--uninstall`) finds the same one. */
export const VXLAN_DEVICE = "mycni.vxlan";

const RTM_DELADDR = 21;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;

/** What the device must be. */
export interface VxlanSpec {
  readonly vni: number;
  /** UDP destination port (the kernel's `dstport`). */
  readonly port: number;
  /** This node's underlay address: the outer source, and the family of the tunnel socket. */
  readonly local: string;
  readonly mac: string;
  readonly mtu: number;
}

/** A link named {@linkcode VXLAN_DEVICE} as the kernel describes it. */
export interface VxlanLink {
  readonly index: number;
  readonly mac: string;
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** "vxlan", or whatever else holds the name. */
  readonly kind?: string;
  readonly vni?: number;
  readonly port?: number;
  readonly local?: string;
  readonly learning?: boolean;
}

/** `ip -d link show dev mycni.vxlan`; undefined when there is none. */
export function vxlanGet(nl: Rtnl): VxlanLink | undefined {
  let replies;
  try {
    replies = nl.request(
      RTM_GETLINK,
      0,
      concat([
        ifinfomsg(0),
        strAttr(IFLA_IFNAME, VXLAN_DEVICE),
        u32Attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
      ]),
      `ip -d link show dev ${VXLAN_DEVICE}`,
    );
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
    throw err;
  }
  const body = replies.find((r) => r.type === RTM_NEWLINK)?.body;
  return body && parseVxlanLink(body);
}

/** Parses an RTM_NEWLINK body into what {@linkcode ensureVxlan} compares. */
export function parseVxlanLink(body: Uint8Array): VxlanLink {
  const link = parseLink(body);
  const flags = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(8, true);
  const info = parseAttrs(body.subarray(16)).get(IFLA_LINKINFO);
  const data = info && parseAttrs(info).get(IFLA_INFO_DATA);
  const out = {
    index: link.index,
    mac: link.mac,
    mtu: link.mtu,
    up: (flags & IFF_UP) !== 0,
    ...(link.kind ? { kind: link.kind } : {}),
  };
  if (link.kind !== "vxlan" || !data) return out;
  const a = parseAttrs(data);
  const id = a.get(IFLA_VXLAN_ID), port = a.get(IFLA_VXLAN_PORT);
  const local = a.get(IFLA_VXLAN_LOCAL) ?? a.get(IFLA_VXLAN_LOCAL6);
  return {
    ...out,
    ...(id ? { vni: new DataView(id.buffer, id.byteOffset).getUint32(0, true) } : {}),
    // The port is the one attribute in network byte order.
    ...(port ? { port: new DataView(port.buffer, port.byteOffset).getUint16(0, false) } : {}),
    ...(local ? { local: ipText(local) } : {}),
    learning: (a.get(IFLA_VXLAN_LEARNING)?.[0] ?? 1) !== 0,
  };
}

/**
 * The RTM_NEWLINK body of `ip link add mycni.vxlan address MAC mtu N type vxlan id VNI local IP
 * dstport PORT nolearning`, attributes in `ip`'s order.
 */
export function vxlanAddMessage(spec: VxlanSpec): Uint8Array {
  const local = ipBytes(spec.local);
  const port = new Uint8Array(2);
  new DataView(port.buffer).setUint16(0, spec.port, false);
  return concat([
    ifinfomsg(0),
    attr(IFLA_ADDRESS, macBytes(spec.mac)),
    u32Attr(IFLA_MTU, spec.mtu),
    strAttr(IFLA_IFNAME, VXLAN_DEVICE),
    nested(
      IFLA_LINKINFO,
      // Without a NUL, as `ip` sends it (the kernel compares with nla_strcmp either way).
      attr(IFLA_INFO_KIND, new TextEncoder().encode("vxlan")),
      nested(
        IFLA_INFO_DATA,
        u32Attr(IFLA_VXLAN_ID, spec.vni),
        attr(local.length === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, local),
        u8Attr(IFLA_VXLAN_LEARNING, 0),
        attr(IFLA_VXLAN_PORT, port),
      ),
    ),
  ]);
}

/** What {@linkcode ensureVxlan} found and did. */
export interface VxlanEnsured {
  readonly dev: Dev;
  /** One entry per change made ("created", "mtu 1500 -> 1450", ...); empty when none. */
  readonly changes: string[];
}

/**
 * Makes {@linkcode VXLAN_DEVICE} what `spec` says: created when missing; MAC and MTU set in
 * place; VNI, port, local address or learning wrong means the device is made anew (the kernel
 * cannot change them on a live device), which also drops every entry on it. Up, with no IPv6
 * link-local of the kernel's making (nothing on this link answers router or neighbour
 * discovery). A link of that name that is not a VXLAN device is refused, not replaced.
 *
 * @example
 * ensureVxlan(nl, { vni: 1, port: 8472, local: "192.0.2.11", mac: "0e:4d:c0:00:02:0b", mtu: 1450 });
 */
export function ensureVxlan(nl: Rtnl, spec: VxlanSpec): VxlanEnsured {
  const changes: string[] = [];
  let link = vxlanGet(nl);
  if (link && link.kind !== "vxlan") {
    throw new Error(
      `${VXLAN_DEVICE} exists and is a ${link.kind ?? "plain"} link, not a VXLAN device: ` +
        `not touching it (remove it by hand if it is not in use)`,
    );
  }
  const mismatch = link && incompatibility(link, spec);
  if (link && mismatch) {
    linkDel(nl, VXLAN_DEVICE);
    changes.push(`recreated (${mismatch})`);
    link = undefined;
  }
  if (!link) {
    nl.request(
      RTM_NEWLINK,
      NLM_F_CREATE | NLM_F_EXCL,
      vxlanAddMessage(spec),
      `ip link add ${VXLAN_DEVICE} type vxlan id ${spec.vni} local ${spec.local} ` +
        `dstport ${spec.port} nolearning`,
    );
    if (changes.length === 0) changes.push("created");
    linkSet(nl, VXLAN_DEVICE, { noAddrGen: true });
    link = vxlanGet(nl);
    if (!link) throw new Error(`${VXLAN_DEVICE} vanished right after it was created`);
  }
  const set = [];
  if (link.mac !== spec.mac) {
    set.push(attr(IFLA_ADDRESS, macBytes(spec.mac)));
    changes.push(`address ${link.mac} -> ${spec.mac}`);
  }
  if (link.mtu !== spec.mtu) {
    set.push(u32Attr(IFLA_MTU, spec.mtu));
    changes.push(`mtu ${link.mtu} -> ${spec.mtu}`);
  }
  if (set.length > 0) {
    nl.request(
      RTM_NEWLINK,
      0,
      concat([ifinfomsg(link.index), ...set]),
      `ip link set dev ${VXLAN_DEVICE} address ${spec.mac} mtu ${spec.mtu}`,
    );
  }
  if (!link.up) {
    linkSet(nl, VXLAN_DEVICE, { up: true });
    if (changes.length === 0) changes.push("set up");
  }
  return { dev: { index: link.index, name: VXLAN_DEVICE }, changes };
}

/** What makes an existing device unusable for `spec`, or "" when it can be kept. */
function incompatibility(link: VxlanLink, spec: VxlanSpec): string {
  const diffs = [];
  if (link.vni !== spec.vni) diffs.push(`vni ${link.vni} -> ${spec.vni}`);
  if (link.port !== spec.port) diffs.push(`dstport ${link.port} -> ${spec.port}`);
  if (link.local !== spec.local) diffs.push(`local ${link.local ?? "any"} -> ${spec.local}`);
  if (link.learning) diffs.push("learning on -> off");
  return diffs.join(", ");
}

/** `ip link del mycni.vxlan` (its addresses, neighbours, FDB entries and routes go with it). */
export function deleteVxlan(nl: Rtnl): boolean {
  return linkDel(nl, VXLAN_DEVICE);
}

/**
 * Makes the addresses on `dev` exactly `cidrs` ("10.244.1.0/32", "fd00:10:244:1::/128"), IPv6
 * without DAD (nothing on the tunnel could answer it). Returns what it added and removed.
 */
export function ensureDeviceAddresses(
  nl: Rtnl,
  dev: Dev,
  cidrs: readonly string[],
): { added: string[]; removed: string[] } {
  const have = addrList(nl).filter((a) => a.index === dev.index).map((a) => a.address);
  const added = cidrs.filter((c) => !have.includes(c));
  const removed = have.filter((a) => !cidrs.includes(a));
  for (const cidr of added) addrAdd(nl, dev, cidr, { nodad: cidr.includes(":"), replace: true });
  for (const cidr of removed) deleteAddress(nl, dev, cidr);
  return { added, removed };
}

/** `ip addr del CIDR dev DEV`. */
function deleteAddress(nl: Rtnl, dev: Dev, cidr: string): void {
  const [text, prefix] = cidr.split("/");
  const ip = ipBytes(text);
  const msg = new Uint8Array(8);
  msg[0] = ip.length === 4 ? AF_INET : AF_INET6;
  msg[1] = Number(prefix);
  new DataView(msg.buffer).setUint32(4, dev.index, true);
  nl.request(
    RTM_DELADDR,
    0,
    concat([msg, attr(IFA_LOCAL, ip), attr(IFA_ADDRESS, ip)]),
    `ip addr del ${cidr} dev ${dev.name}`,
  );
}
