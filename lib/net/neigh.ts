// Neighbour and FDB entries over rtnetlink (`ip neigh`, `bridge fdb`): what a VXLAN device needs
// to reach a peer without learning or multicast. A neighbour entry maps a peer's VTEP address to
// its VTEP MAC; an FDB entry on the VXLAN device maps that MAC to the peer's underlay address.
import type { Family } from "../ip/cidr.ts";
import {
  attr,
  concat,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  parseAttrs,
  type Rtnl,
  u32Attr,
} from "./netlink.ts";
import {
  AF_INET,
  AF_INET6,
  type Dev,
  formatMac,
  ifinfomsg,
  ipBytes,
  ipText,
  macBytes,
} from "./rtnl.ts";

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_IFINDEX = 8;
/** Never expires, never re-resolved: what we write. */
const NUD_PERMANENT = 0x80;
/** Set with PERMANENT by `bridge fdb ... permanent`, as `bridge` itself sends it. */
const NUD_NOARP = 0x40;
/** An FDB entry of the device itself (a VXLAN device), not of the bridge it may be a port of. */
const NTF_SELF = 0x02;
const AF_BRIDGE = 7;
/** errno of a delete whose entry is already gone. */
const ENOENT = 2;

/** A neighbour (ARP / NDP) entry on one device. */
export interface Neighbour {
  readonly family: Family;
  readonly ip: string;
  /** "" for an entry without a link-layer address (INCOMPLETE, FAILED). */
  readonly mac: string;
  /** NUD_PERMANENT: one somebody wrote, not one the kernel resolved. */
  readonly permanent: boolean;
}

/** An FDB entry of a VXLAN device: where frames for `mac` are sent. */
export interface FdbEntry {
  readonly mac: string;
  /** The remote's underlay address; undefined for an entry without one. */
  readonly dst?: string;
  readonly permanent: boolean;
}

/** `ip neigh show dev DEV`, both families. */
export function listNeighbours(nl: Rtnl, dev: Dev): Neighbour[] {
  const replies = nl.request(
    RTM_GETNEIGH,
    NLM_F_DUMP,
    concat([ndmsg(0, 0, 0, 0), u32Attr(NDA_IFINDEX, dev.index)]),
    `ip neigh show dev ${dev.name}`,
  );
  const out: Neighbour[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWNEIGH) continue;
    const v = new DataView(r.body.buffer, r.body.byteOffset, r.body.byteLength);
    const family = r.body[0];
    // Older kernels ignore the NDA_IFINDEX filter: filter here too.
    if (v.getInt32(4, true) !== dev.index || (family !== AF_INET && family !== AF_INET6)) continue;
    const attrs = parseAttrs(r.body.subarray(12));
    const dst = attrs.get(NDA_DST);
    if (!dst) continue;
    out.push({
      family: family === AF_INET ? 4 : 6,
      ip: ipText(dst),
      mac: attrs.has(NDA_LLADDR) ? formatMac(attrs.get(NDA_LLADDR)) : "",
      permanent: (v.getUint16(8, true) & NUD_PERMANENT) !== 0,
    });
  }
  return out;
}

/** `ip neigh replace IP lladdr MAC dev DEV nud permanent`. */
export function setNeighbour(nl: Rtnl, dev: Dev, n: { ip: string; mac: string }): void {
  nl.request(
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    neighbourMessage(dev, n),
    `ip neigh replace ${n.ip} lladdr ${n.mac} dev ${dev.name} nud permanent`,
  );
}

/** The RTM_NEWNEIGH body {@linkcode setNeighbour} sends. */
export function neighbourMessage(dev: Dev, n: { ip: string; mac: string }): Uint8Array {
  const ip = ipBytes(n.ip);
  return concat([
    ndmsg(ip.length === 4 ? AF_INET : AF_INET6, dev.index, NUD_PERMANENT, 0),
    attr(NDA_DST, ip),
    attr(NDA_LLADDR, macBytes(n.mac)),
  ]);
}

/** `ip neigh del IP dev DEV`; false when it was already gone. */
export function deleteNeighbour(nl: Rtnl, dev: Dev, ip: string): boolean {
  const bytes = ipBytes(ip);
  return ignoreGone(() =>
    nl.request(
      RTM_DELNEIGH,
      0,
      concat([
        ndmsg(bytes.length === 4 ? AF_INET : AF_INET6, dev.index, 0, 0),
        attr(NDA_DST, bytes),
      ]),
      `ip neigh del ${ip} dev ${dev.name}`,
    )
  );
}

/** `bridge fdb show dev DEV`: the device's own (self) entries. */
export function listFdb(nl: Rtnl, dev: Dev): FdbEntry[] {
  // An ifinfomsg, not an ndmsg: its ifi_index is how the kernel filters a dump by device
  // (rtnl_fdb_dump, as `bridge fdb show dev` asks).
  const msg = ifinfomsg(dev.index);
  msg[0] = AF_BRIDGE;
  const replies = nl.request(RTM_GETNEIGH, NLM_F_DUMP, msg, `bridge fdb show dev ${dev.name}`);
  const out: FdbEntry[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWNEIGH || r.body[0] !== AF_BRIDGE) continue;
    const v = new DataView(r.body.buffer, r.body.byteOffset, r.body.byteLength);
    if (v.getInt32(4, true) !== dev.index || !(r.body[10] & NTF_SELF)) continue;
    const attrs = parseAttrs(r.body.subarray(12));
    const lladdr = attrs.get(NDA_LLADDR);
    if (!lladdr) continue;
    const dst = attrs.get(NDA_DST);
    out.push({
      mac: formatMac(lladdr),
      ...(dst ? { dst: ipText(dst) } : {}),
      permanent: (v.getUint16(8, true) & NUD_PERMANENT) !== 0,
    });
  }
  return out;
}

/** `bridge fdb replace MAC dev DEV dst IP self permanent`. */
export function setFdb(nl: Rtnl, dev: Dev, e: { mac: string; dst: string }): void {
  nl.request(
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    fdbMessage(dev, e, NUD_NOARP | NUD_PERMANENT),
    `bridge fdb replace ${e.mac} dev ${dev.name} dst ${e.dst} self permanent`,
  );
}

/** `bridge fdb del MAC dev DEV dst IP self`; false when it was already gone. */
export function deleteFdb(nl: Rtnl, dev: Dev, e: { mac: string; dst?: string }): boolean {
  return ignoreGone(() =>
    nl.request(
      RTM_DELNEIGH,
      0,
      fdbMessage(dev, e, 0),
      `bridge fdb del ${e.mac} dev ${dev.name}${e.dst ? ` dst ${e.dst}` : ""} self`,
    )
  );
}

/** The body of an FDB change, attributes in `bridge`'s order (LLADDR, then DST). */
export function fdbMessage(dev: Dev, e: { mac: string; dst?: string }, state: number): Uint8Array {
  return concat([
    ndmsg(AF_BRIDGE, dev.index, state, NTF_SELF),
    attr(NDA_LLADDR, macBytes(e.mac)),
    ...(e.dst ? [attr(NDA_DST, ipBytes(e.dst))] : []),
  ]);
}

/** struct ndmsg: family, pad, ifindex, state, flags, type (left RTN_UNSPEC, as `ip` sends it). */
function ndmsg(family: number, index: number, state: number, flags: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  b[0] = family;
  v.setInt32(4, index, true);
  v.setUint16(8, state, true);
  b[10] = flags;
  return b;
}

function ignoreGone(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENOENT) return false;
    throw err;
  }
}
