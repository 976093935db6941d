// The conntrack table over ctnetlink (`conntrack -L`, `conntrack -D`, without the process): a
// pod that goes away takes its connections' entries with it (a UDP entry would otherwise keep
// sending a flow to the address's next owner), and a policy that now denies a flow can cut its
// established connections. Formats: linux/netfilter/nfnetlink_conntrack.h.
import { formatIp, parseIp } from "../ip/cidr.ts";
import {
  attr,
  NETLINK_NETFILTER,
  NetlinkError,
  NLM_F_ACK,
  parseAttrs,
  Rtnl,
  u8Attr,
} from "./netlink.ts";
import { be16Attr, be32Attr, nest, nfgenmsg, NFNL_SUBSYS_CTNETLINK } from "./nfnetlink.ts";
import { ipBytes, ipText } from "./rtnl.ts";

const IPCTNL_MSG_CT_NEW = 0;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
const CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_ID = 12;
const CTA_ZONE = 18;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_PROTO_ICMP_ID = 4;
const CTA_PROTO_ICMP_TYPE = 5;
const CTA_PROTO_ICMP_CODE = 6;
const CTA_PROTO_ICMPV6_ID = 7;
const CTA_PROTO_ICMPV6_TYPE = 8;
const CTA_PROTO_ICMPV6_CODE = 9;
const AF_UNSPEC = 0, AF_INET = 2, AF_INET6 = 10;
const ENOENT = 2;
const ICMP = 1, ICMPV6 = 58;

/** Protocol numbers by name, for filters. */
export const IPPROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const;

/** One direction of a connection: addresses, protocol and its ports (or ICMP id, type, code). */
export interface ConntrackTuple {
  readonly src: string;
  readonly dst: string;
  /** IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6). */
  readonly proto: number;
  readonly sport?: number;
  readonly dport?: number;
  readonly icmp?: { readonly id: number; readonly type: number; readonly code: number };
}

/** A conntrack entry, as `conntrack -L` lists it. */
export interface ConntrackEntry {
  readonly family: 4 | 6;
  /** The direction of the packet that made the entry (the connection's initiator). */
  readonly orig: ConntrackTuple;
  /** The direction of the answers (differs from the reversed `orig` under NAT). */
  readonly reply: ConntrackTuple;
  /** The conntrack zone (0 unless a rule sets one). */
  readonly zone: number;
  /** The kernel's id of the entry: a delete names it, so a new entry of the same tuple stays. */
  readonly id?: number;
}

/** Which entries: every field given must match. */
export interface ConntrackFilter {
  /** Entries with one of these as source or destination of either tuple (a pod's addresses). */
  readonly addresses?: readonly string[];
  /** The original tuple's source, destination, protocol and destination port (a flow). */
  readonly src?: string;
  readonly dst?: string;
  readonly proto?: number | keyof typeof IPPROTO;
  readonly dport?: number;
}

/** Where: a netns path, else ours. */
export interface ConntrackOptions {
  readonly netns?: string;
}

/**
 * `conntrack -L [-f ipv4|ipv6]`, both families, filtered here: the entries matching `filter`
 * (every entry without one).
 *
 * @example
 * listConntrack({ dst: "10.244.2.7", proto: "tcp", dport: 80 }, { netns: nodeNetns });
 */
export function listConntrack(
  filter: ConntrackFilter = {},
  opts: ConntrackOptions = {},
): ConntrackEntry[] {
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  return dump(nl, filter);
}

/**
 * `conntrack -D` of one entry, named by its original tuple, zone and id; false when it is
 * already gone (timed out, or deleted by someone else).
 *
 * @example
 * for (const e of listConntrack({ src: "10.244.1.5" })) deleteConntrackEntry(e);
 */
export function deleteConntrackEntry(entry: ConntrackEntry, opts: ConntrackOptions = {}): boolean {
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  return deleteOne(nl, entry);
}

/**
 * `conntrack -D` of each of `entries` (as {@linkcode listConntrack} listed them) on one
 * socket; returns how many it deleted (the others were already gone).
 *
 * @example
 * deleteConntrackList(listConntrack({ addresses }).filter(denied)); // strict mode's cut
 */
export function deleteConntrackList(
  entries: readonly ConntrackEntry[],
  opts: ConntrackOptions = {},
): number {
  if (entries.length === 0) return 0;
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  // Pipelined, each with its ack: a cut of thousands costs a few system calls per batch, not
  // a round trip per entry.
  const answers = nl.requestEach(
    CT_DELETE,
    entries.map(encodeDelete),
    (i) => deleteWhat(entries[i]),
    () => undefined,
    NLM_F_ACK,
  );
  let n = 0;
  for (const a of answers) {
    if (!(a instanceof NetlinkError)) n++;
    else if (a.errno !== ENOENT) throw a;
  }
  return n;
}

/**
 * Deletes every entry matching `filter`; returns how many it deleted. One dump, then one
 * delete per entry, on one socket.
 *
 * @example
 * deleteConntrack({ dst: "10.244.2.7", proto: "tcp", dport: 80 }); // strict mode: cut a flow
 */
export function deleteConntrack(filter: ConntrackFilter, opts: ConntrackOptions = {}): number {
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  let n = 0;
  for (const e of dump(nl, filter)) if (deleteOne(nl, e)) n++;
  return n;
}

/**
 * Deletes the entries of connections from or to any of `addresses` (either direction, both
 * families), as `conntrack -D -s A` and `-d A` and their reply-side twins do; returns how many.
 *
 * @example
 * deleteConntrackEntries(["10.244.1.5", "fd00:10:244:1::5"]); // a pod's DEL
 */
export function deleteConntrackEntries(
  addresses: readonly string[],
  opts: ConntrackOptions = {},
): number {
  if (addresses.length === 0) return 0;
  return deleteConntrack({ addresses }, opts);
}

function dump(nl: Rtnl, filter: ConntrackFilter): ConntrackEntry[] {
  const match = matcher(filter);
  const out: ConntrackEntry[] = [];
  nl.dumpEach(CT_GET, nfgenmsg(AF_UNSPEC), "conntrack -L", (type, body) => {
    if (type !== CT_NEW) return;
    const e = parseEntry(body);
    if (e && match(e)) out.push(e);
  });
  return out;
}

function deleteWhat(e: ConntrackEntry): string {
  const o = e.orig;
  return `conntrack -D -p ${o.proto} -s ${o.src} -d ${o.dst}${
    o.sport !== undefined ? ` --sport ${o.sport} --dport ${o.dport}` : ""
  }${e.zone ? ` -w ${e.zone}` : ""}`;
}

function deleteOne(nl: Rtnl, e: ConntrackEntry): boolean {
  const what = deleteWhat(e);
  try {
    nl.request(CT_DELETE, 0, encodeDelete(e), what);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENOENT) return false;
    throw err;
  }
}

/**
 * The body of IPCTNL_MSG_CT_DELETE for `e`: its original tuple, its id (the kernel refuses to
 * delete an entry of that tuple with another id) and its zone. Pure.
 */
export function encodeDelete(e: ConntrackEntry): Uint8Array {
  const attrs = [nfgenmsg(e.family === 4 ? AF_INET : AF_INET6), tupleAttr(CTA_TUPLE_ORIG, e.orig)];
  if (e.id !== undefined) attrs.push(be32Attr(CTA_ID, e.id));
  if (e.zone) attrs.push(be16Attr(CTA_ZONE, e.zone));
  const out = new Uint8Array(attrs.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of attrs) out.set(a, off), off += a.length;
  return out;
}

function tupleAttr(type: number, t: ConntrackTuple): Uint8Array {
  const v6 = t.src.includes(":");
  const proto = [u8Attr(CTA_PROTO_NUM, t.proto)];
  if (t.icmp) {
    const [id, ty, code] = t.proto === ICMPV6
      ? [CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE]
      : [CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE];
    proto.push(be16Attr(id, t.icmp.id), u8Attr(ty, t.icmp.type), u8Attr(code, t.icmp.code));
  } else if (t.sport !== undefined && t.dport !== undefined) {
    proto.push(be16Attr(CTA_PROTO_SRC_PORT, t.sport), be16Attr(CTA_PROTO_DST_PORT, t.dport));
  }
  return nest(
    type,
    nest(
      CTA_TUPLE_IP,
      attr(v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, ipBytes(t.src)),
      attr(v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, ipBytes(t.dst)),
    ),
    nest(CTA_TUPLE_PROTO, ...proto),
  );
}

/** One entry of a dump (an IPCTNL_MSG_CT_NEW body); undefined for a family other than IP. Pure. */
export function parseEntry(body: Uint8Array): ConntrackEntry | undefined {
  const family = body[0] === AF_INET ? 4 : body[0] === AF_INET6 ? 6 : undefined;
  if (!family) return undefined;
  const a = parseAttrs(body.subarray(4));
  const orig = a.get(CTA_TUPLE_ORIG), reply = a.get(CTA_TUPLE_REPLY);
  if (!orig || !reply) return undefined;
  const id = a.get(CTA_ID), zone = a.get(CTA_ZONE);
  return {
    family,
    orig: parseTuple(orig),
    reply: parseTuple(reply),
    zone: zone ? (zone[0] << 8) | zone[1] : 0,
    ...(id ? { id: new DataView(id.buffer, id.byteOffset).getUint32(0) } : {}),
  };
}

function parseTuple(b: Uint8Array): ConntrackTuple {
  const a = parseAttrs(b);
  const ip = parseAttrs(a.get(CTA_TUPLE_IP) ?? new Uint8Array());
  const p = parseAttrs(a.get(CTA_TUPLE_PROTO) ?? new Uint8Array());
  const be16 = (x: Uint8Array | undefined) => x && (x[0] << 8) | x[1];
  const proto = p.get(CTA_PROTO_NUM)?.[0] ?? 0;
  const v6 = ip.has(CTA_IP_V6_SRC);
  const t = {
    src: ipText(ip.get(v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC)),
    dst: ipText(ip.get(v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST)),
    proto,
  };
  if (proto === ICMP || proto === ICMPV6) {
    const [id, ty, code] = proto === ICMPV6
      ? [CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE]
      : [CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE];
    return {
      ...t,
      icmp: { id: be16(p.get(id)) ?? 0, type: p.get(ty)?.[0] ?? 0, code: p.get(code)?.[0] ?? 0 },
    };
  }
  const sport = be16(p.get(CTA_PROTO_SRC_PORT)), dport = be16(p.get(CTA_PROTO_DST_PORT));
  return sport === undefined || dport === undefined ? t : { ...t, sport, dport };
}

/**
 * The filter as a predicate. Addresses are compared as text in canonical form (`fd00:0::1` is
 * `fd00::1`): the filter's are made canonical, an entry's are parsed that way. Pure.
 */
export function matcher(f: ConntrackFilter): (e: ConntrackEntry) => boolean {
  const canon = (ip: string) => formatIp(parseIp(ip));
  const addresses = f.addresses && new Set(f.addresses.map(canon));
  const src = f.src && canon(f.src), dst = f.dst && canon(f.dst);
  const proto = typeof f.proto === "string" ? IPPROTO[f.proto] : f.proto;
  return (e) => {
    if (addresses) {
      const { orig: o, reply: r } = e;
      if (![o.src, o.dst, r.src, r.dst].some((ip) => addresses.has(ip))) return false;
    }
    if (src && e.orig.src !== src) return false;
    if (dst && e.orig.dst !== dst) return false;
    if (proto !== undefined && e.orig.proto !== proto) return false;
    return f.dport === undefined || e.orig.dport === f.dport;
  };
}
