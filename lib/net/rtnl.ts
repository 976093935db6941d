// The `ip link` and `ip addr` commands, as the rtnetlink messages `ip` sends for them, and the
// codecs (addresses, MACs) every rtnetlink module shares; routes are route.ts's. Each function
// names its command; it runs on an Rtnl socket, so the netns is the socket's.
import { familyBits, formatIp, parseIp } from "../ip/cidr.ts";
import {
  attr,
  concat,
  decodeCString,
  ENODEV,
  nested,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  type Rtnl,
  strAttr,
  u32Attr,
  u8Attr,
} from "./netlink.ts";

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_OPERSTATE = 16;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_PID = 19;
const IFLA_AF_SPEC = 26;
const IFLA_EXT_MASK = 29;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;
const VETH_INFO_PEER = 1;
const IFLA_BRPORT_MODE = 4;
const IFLA_INET6_ADDR_GEN_MODE = 8;
const IN6_ADDR_GEN_MODE_NONE = 1;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const IF_OPER_UP = 6;
const IFF_UP = 1;
const AF_INET = 2;
const AF_INET6 = 10;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;
const RT_SCOPE_LINK = 253;

/** What `ip link show` tells us about a link. */
export interface LinkState {
  readonly index: number;
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly operUp: boolean;
  /** "bridge", "veth", ... (undefined for a link without a kind, such as a physical NIC). */
  readonly kind?: string;
  /** The ifindex of the bridge (or bond) this link is a port of. */
  readonly master?: number;
}

/** An address on a link, as `ip addr show` lists it. */
export interface AddrState {
  readonly index: number;
  /** "10.244.1.5/24" */
  readonly address: string;
}

/** A link to create: one end of a veth pair, or a bridge. */
export interface NewLink {
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
}

/** Settings for `ip link set dev NAME ...`; absent ones are left alone. */
export interface LinkSettings {
  readonly master?: number;
  /** `addrgenmode none`: no IPv6 link-local of the kernel's making. */
  readonly noAddrGen?: boolean;
  readonly up?: boolean;
}

/** `ip link show dev NAME`; undefined when there is no such link. */
export function linkGet(nl: Rtnl, name: string): LinkState | undefined {
  let replies;
  try {
    replies = nl.request(
      RTM_GETLINK,
      0,
      concat([
        ifinfomsg(0),
        strAttr(IFLA_IFNAME, name),
        u32Attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
      ]),
      `ip link show dev ${name}`,
    );
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
    throw err;
  }
  const body = replies.find((r) => r.type === RTM_NEWLINK)?.body;
  return body && parseLink(body);
}

/** `ip link show`: every link in the socket's netns. */
export function linkList(nl: Rtnl): LinkState[] {
  const replies = nl.request(
    RTM_GETLINK,
    NLM_F_DUMP,
    concat([ifinfomsg(0), u32Attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)]),
    "ip link show",
  );
  return replies.filter((r) => r.type === RTM_NEWLINK).map((r) => parseLink(r.body));
}

/** `ip addr show`: every address in the socket's netns. */
export function addrList(nl: Rtnl): AddrState[] {
  const replies = nl.request(RTM_GETADDR, NLM_F_DUMP, new Uint8Array(8), "ip addr show");
  return replies.filter((r) => r.type === RTM_NEWADDR).map(({ body }) => {
    const v = new DataView(body.buffer, body.byteOffset);
    const attrs = parseAttrs(body.subarray(8));
    const ip = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
    return { index: v.getUint32(4, true), address: `${ipText(ip)}/${body[1]}` };
  });
}

function parseLink(body: Uint8Array): LinkState {
  const attrs = parseAttrs(body.subarray(16));
  const u32 = (type: number) => {
    const a = attrs.get(type);
    return a && new DataView(a.buffer, a.byteOffset).getUint32(0, true);
  };
  const kind = attrs.get(IFLA_LINKINFO) &&
    parseAttrs(attrs.get(IFLA_LINKINFO)!).get(IFLA_INFO_KIND);
  const master = u32(IFLA_MASTER);
  return {
    index: new DataView(body.buffer, body.byteOffset).getInt32(4, true),
    name: decodeCString(attrs.get(IFLA_IFNAME) ?? new Uint8Array()),
    mac: formatMac(attrs.get(IFLA_ADDRESS)),
    mtu: u32(IFLA_MTU) ?? 0,
    operUp: attrs.get(IFLA_OPERSTATE)?.[0] === IF_OPER_UP,
    ...(kind ? { kind: decodeCString(kind) } : {}),
    ...(master ? { master } : {}),
  };
}

/** `ip link add name A address M mtu N type veth peer name B address M mtu N netns PID`. */
export function linkAddVeth(nl: Rtnl, end: NewLink, peer: NewLink & { netnsPid: number }): void {
  const peerInfo = concat([
    ifinfomsg(0),
    ...endAttrs(peer),
    u32Attr(IFLA_NET_NS_PID, peer.netnsPid),
  ]);
  const body = concat([
    ifinfomsg(0),
    ...endAttrs(end),
    nested(
      IFLA_LINKINFO,
      strAttr(IFLA_INFO_KIND, "veth"),
      nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peerInfo)),
    ),
  ]);
  nl.request(
    RTM_NEWLINK,
    NLM_F_CREATE | NLM_F_EXCL,
    body,
    `ip link add name ${end.name} type veth peer name ${peer.name} netns ${peer.netnsPid}`,
  );
}

/** `ip link set dev NAME [master IDX] [addrgenmode none] [up]`, in that order. */
export function linkSet(nl: Rtnl, name: string, s: LinkSettings): void {
  const what = `ip link set dev ${name}`;
  const attrs = [strAttr(IFLA_IFNAME, name)];
  if (s.master !== undefined) attrs.push(u32Attr(IFLA_MASTER, s.master));
  if (s.noAddrGen) {
    attrs.push(
      nested(
        IFLA_AF_SPEC,
        nested(AF_INET6, u8Attr(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)),
      ),
    );
  }
  if (attrs.length > 1) {
    nl.request(RTM_NEWLINK, 0, concat([ifinfomsg(0), ...attrs]), `${what} (master, addrgenmode)`);
  }
  // Up in its own message: the kernel applies flags before IFLA_AF_SPEC, and a link that came
  // up with addrgenmode eui64 already has its link-local.
  if (s.up) {
    nl.request(RTM_NEWLINK, 0, concat([ifinfomsg(0, IFF_UP, IFF_UP), attrs[0]]), `${what} up`);
  }
}

/** `ip link set dev NAME type bridge_slave hairpin on`. */
export function linkSetHairpin(nl: Rtnl, name: string): void {
  const body = concat([
    ifinfomsg(0),
    strAttr(IFLA_IFNAME, name),
    nested(
      IFLA_LINKINFO,
      strAttr(IFLA_INFO_SLAVE_KIND, "bridge"),
      nested(IFLA_INFO_SLAVE_DATA, u8Attr(IFLA_BRPORT_MODE, 1)),
    ),
  ]);
  nl.request(RTM_NEWLINK, 0, body, `ip link set dev ${name} type bridge_slave hairpin on`);
}

/** `ip link del dev NAME`; false when there was no such link. */
export function linkDel(nl: Rtnl, name: string): boolean {
  try {
    nl.request(
      RTM_DELLINK,
      0,
      concat([ifinfomsg(0), strAttr(IFLA_IFNAME, name)]),
      `ip link del dev ${name}`,
    );
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENODEV) return false;
    throw err;
  }
}

/** A link to address or route through: its index, and its name for messages. */
export interface Dev {
  readonly index: number;
  readonly name: string;
}

/** `ip addr add|replace ADDRESS/PREFIX dev DEV [nodad]`. */
export function addrAdd(
  nl: Rtnl,
  dev: Dev,
  cidr: string,
  opts: { nodad?: boolean; replace?: boolean } = {},
): void {
  const [text, prefix] = cidr.split("/");
  const ip = ipBytes(text);
  const msg = new Uint8Array(8);
  const v = new DataView(msg.buffer);
  v.setUint8(0, ip.length === 4 ? AF_INET : AF_INET6);
  v.setUint8(1, Number(prefix));
  v.setUint8(2, opts.nodad ? IFA_F_NODAD : 0);
  v.setUint8(3, /^fe80:/i.test(text) ? RT_SCOPE_LINK : 0);
  v.setUint32(4, dev.index, true);
  nl.request(
    RTM_NEWADDR,
    NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    concat([msg, attr(IFA_LOCAL, ip), attr(IFA_ADDRESS, ip)]),
    `ip addr ${opts.replace ? "replace" : "add"} ${cidr} dev ${dev.name}${
      opts.nodad ? " nodad" : ""
    }`,
  );
}

function ifinfomsg(index: number, flags = 0, change = 0): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setInt32(4, index, true);
  v.setUint32(8, flags, true);
  v.setUint32(12, change, true);
  return b;
}

function endAttrs(end: NewLink): Uint8Array[] {
  return [
    strAttr(IFLA_IFNAME, end.name),
    attr(IFLA_ADDRESS, macBytes(end.mac)),
    u32Attr(IFLA_MTU, end.mtu),
  ];
}

/** An address in network byte order (4 or 16 bytes). */
export function ipBytes(text: string): Uint8Array {
  const ip = parseIp(text);
  const out = new Uint8Array(familyBits(ip.family) / 8);
  let v = ip.value;
  for (let i = out.length - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** Text of an address in network byte order (4 or 16 bytes). */
function ipText(bytes: Uint8Array | undefined): string {
  if (!bytes) return "";
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return formatIp({ family: bytes.length === 4 ? 4 : 6, value });
}

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":"), (h) => parseInt(h, 16));
}

function formatMac(bytes: Uint8Array | undefined): string {
  return bytes ? [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":") : "";
}

/** `ip link add name NAME address MAC mtu N type bridge`. */
export function linkAddBridge(nl: Rtnl, bridge: NewLink): void {
  nl.request(
    RTM_NEWLINK,
    NLM_F_CREATE | NLM_F_EXCL,
    concat([
      ifinfomsg(0),
      ...endAttrs(bridge),
      nested(IFLA_LINKINFO, strAttr(IFLA_INFO_KIND, "bridge")),
    ]),
    `ip link add name ${bridge.name} type bridge`,
  );
}

// The other rtnetlink modules (route.ts, vxlan.ts, neigh.ts) build on the same definitions:
// one place for each constant and codec.
export {
  AF_INET,
  AF_INET6,
  formatMac,
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
  ipText,
  macBytes,
  parseLink,
  RTEXT_FILTER_SKIP_STATS,
  RTM_GETLINK,
  RTM_NEWLINK,
};
