// Neighbour and FDB entries over rtnetlink (`ip neigh`, `bridge fdb`): what a VXLAN device needs
// to reach a peer without learning or multicast. A neighbour entry maps a peer's VTEP address to
// its VTEP MAC; an FDB entry on the VXLAN device maps that MAC to the peer's underlay address.
import type { Family } from "../ip/cidr.ts";
import {
  attr,
  concat,
  ENOENT,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_REPLACE,
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
  const out: Neighbour[] = [];
  nl.dumpEach(
    RTM_GETNEIGH,
    concat([ndmsg(0, 0, 0, 0), u32Attr(NDA_IFINDEX, dev.index)]),
    `ip neigh show dev ${dev.name}`,
    (type, body) => {
      const family = body[0];
      // Older kernels ignore the NDA_IFINDEX filter: filter here too.
      if (type !== RTM_NEWNEIGH || ifindexOf(body) !== dev.index) return;
      if (family !== AF_INET && family !== AF_INET6) return;
      const { dst, lladdr } = neighAttrs(body);
      if (!dst) return;
      out.push({
        family: family === AF_INET ? 4 : 6,
        ip: ipText(dst),
        mac: lladdr ? formatMac(lladdr) : "",
        permanent: (stateOf(body) & NUD_PERMANENT) !== 0,
      });
    },
  );
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
  const out: FdbEntry[] = [];
  nl.dumpEach(RTM_GETNEIGH, msg, `bridge fdb show dev ${dev.name}`, (type, body) => {
    if (type !== RTM_NEWNEIGH || body[0] !== AF_BRIDGE) return;
    if (ifindexOf(body) !== dev.index || !(body[10] & NTF_SELF)) return;
    const { dst, lladdr } = neighAttrs(body);
    if (!lladdr) return;
    const entry: { mac: string; dst?: string; permanent: boolean } = {
      mac: formatMac(lladdr),
      permanent: (stateOf(body) & NUD_PERMANENT) !== 0,
    };
    if (dst) entry.dst = ipText(dst);
    out.push(entry);
  });
  return out;
}

/** NDA_DST and NDA_LLADDR of an RTM_NEWNEIGH body, in one pass (dumps parse thousands). */
function neighAttrs(body: Uint8Array): { dst?: Uint8Array; lladdr?: Uint8Array } {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let dst: Uint8Array | undefined, lladdr: Uint8Array | undefined;
  for (let off = 12; off + 4 <= body.length;) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > body.length) break;
    const type = v.getUint16(off + 2, true) & 0x3fff;
    if (type === NDA_DST) dst = body.subarray(off + 4, off + len);
    else if (type === NDA_LLADDR) lladdr = body.subarray(off + 4, off + len);
    off += (len + 3) & ~3;
  }
  return { dst, lladdr };
}

function ifindexOf(ndmsg: Uint8Array): number {
  return new DataView(ndmsg.buffer, ndmsg.byteOffset, 12).getInt32(4, true);
}

function stateOf(ndmsg: Uint8Array): number {
  return ndmsg[8] | (ndmsg[9] << 8);
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
