// nfnetlink_log (NFNL_SUBSYS_ULOG): the kernel end of nft's `log group N`. A subscriber binds
// one group in one network namespace, asks for the first bytes of each logged packet (IP and
// transport headers), and hands each logged packet on with its prefix and addresses. What the
// flow log (lib/node/flow_log.ts) is read from. The messages: the kernel's
// include/uapi/linux/netfilter/nfnetlink_log.h; nfnetlink_log.c's nfulnl_recv_config for the
// config order.
//
// The socket is read without blocking the event loop: the wait is a poll(2) on a thread of
// Deno's blocking pool (lib/sys/poll.ts), the reads are MSG_DONTWAIT recvfroms on the JS thread
// until the queue is empty, a bounded batch at a time so a flood never starves the loop.
import type { Family } from "../ip/cidr.ts";
import { formatIp } from "../ip/cidr.ts";
import { waitReadable } from "../sys/poll.ts";
import {
  AT_FDCWD,
  bytes,
  closeFd,
  cString,
  O_CLOEXEC,
  sys,
  SyscallError,
  sysOrErrno,
} from "../sys/syscall.ts";
import { attr, concat, decodeCString, NetlinkError, parseAttrs } from "./netlink.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_NETFILTER = 12;
const CLONE_NEWNET = 0x40000000;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const ENOBUFS = 105;

const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;

// linux/netfilter/nfnetlink.h, nfnetlink_log.h
const NFNL_SUBSYS_ULOG = 4;
const NFULNL_MSG_PACKET = 0;
const NFULNL_MSG_CONFIG = 1;
const NFULA_PACKET_HDR = 1;
const NFULA_TIMESTAMP = 3;
const NFULA_IFINDEX_INDEV = 4;
const NFULA_IFINDEX_OUTDEV = 5;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const NFULA_SEQ = 12;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULA_CFG_NLBUFSIZ = 3;
const NFULA_CFG_TIMEOUT = 4;
const NFULA_CFG_FLAGS = 6;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 2;
const NFULNL_CFG_F_SEQ = 0x1;

/** IP protocol numbers the flow log names. */
export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** One logged packet: the rule's prefix and what its first bytes say. */
export interface NflogPacket {
  /** The `log prefix` of the rule that logged it. */
  readonly prefix: string;
  /** Unix milliseconds: the kernel's packet timestamp when it sent one, else when read. */
  readonly time: number;
  /** Undefined when the payload is not an IP header we could read (counted in `unparsed`). */
  readonly family?: Family;
  readonly src: string;
  readonly dst: string;
  /** IP protocol number (the transport header's, past IPv6 extension headers). */
  readonly proto: number;
  /** TCP, UDP and SCTP ports, when the copied bytes hold them (not a later fragment). */
  readonly sport?: number;
  readonly dport?: number;
  /** The netfilter hook that logged it (NF_INET_FORWARD is 2). */
  readonly hook?: number;
  /** ifindex the packet came in on and would have left by (forward hook: both). */
  readonly indev?: number;
  readonly outdev?: number;
}

/** What a subscriber saw besides packets: losses the flow log must count, never hide. */
export interface NflogStats {
  /** Packet messages received. */
  packets: number;
  /** Receive-queue overruns (recvfrom said ENOBUFS): the kernel dropped messages for us. */
  overruns: number;
  /** Messages the kernel numbered but we never got (gaps in NFULA_SEQ): the overruns' size. */
  lost: number;
  /** Packet messages whose payload was no IP header we could read (delivered without it). */
  unparsed: number;
}

/** How a subscriber asks the kernel to log. */
export interface NflogOptions {
  /** Network namespace file to subscribe in; ours when omitted. */
  readonly netns?: string;
  /** Bytes of each packet to copy: IP + transport headers (IPv6 extension headers too). */
  readonly copyRange?: number;
  /** Socket receive buffer: what a burst can queue before the kernel drops (counted). */
  readonly rcvbuf?: number;
  /** How long the kernel may hold messages to batch them, ms (its granularity is 10 ms). */
  readonly flushMs?: number;
}

/** Copy range: 40 bytes of IPv6, a few extension headers, the transport ports. */
const COPY_RANGE = 128;
const RCVBUF = 1 << 20;
const FLUSH_MS = 100;
/** The kernel's batch size: well under our receive buffer, so a batch is never truncated. */
const NLBUFSIZ = 32768;
/** Datagrams read per wake-up before the event loop gets a turn. */
const DRAIN_BATCH = 64;
/** A wait's bound: how soon a wait notices the subscriber was closed. */
const POLL_MS = 250;

/** A bound nfnetlink_log group: owns the socket, closed with `using` or {@linkcode close}. */
export class NflogSubscriber implements Disposable {
  readonly stats: NflogStats = { packets: 0, overruns: 0, lost: 0, unparsed: 0 };
  #buf = bytes(65536);
  // A new instance numbers its messages from 0 (NFULNL_CFG_F_SEQ): a loss at the start counts.
  #nextSeq = 0;
  #pending: NflogPacket[] = [];

  private constructor(private fd: number, readonly group: number, readonly netns: string) {}

  /**
   * Binds `group` (0..65535) in `opts.netns`: the kernel delivers every packet a `log group`
   * rule logs there to this socket. Throws a NetlinkError naming the group when the kernel
   * refuses (EBUSY: another socket holds the group; EPERM: not CAP_NET_ADMIN).
   *
   * @example
   * using sub = NflogSubscriber.open(9749, { netns: "/run/netns/n1" });
   * await sub.run((p) => console.log(p.prefix, p.src, p.dst), signal);
   */
  static open(group: number, opts: NflogOptions = {}): NflogSubscriber {
    if (!Number.isInteger(group) || group < 0 || group > 0xffff) {
      throw new RangeError(`nflog group ${group} is not in 0..65535`);
    }
    const where = opts.netns ?? "the node netns";
    const fd = netfilterSocket(opts.netns);
    const sub = new NflogSubscriber(fd, group, where);
    try {
      sub.#setRcvbuf(opts.rcvbuf ?? RCVBUF);
      sub.#configure(opts);
    } catch (err) {
      sub.close();
      throw err;
    }
    return sub;
  }

  /**
   * Calls `onPacket` for every logged packet until `signal` aborts or the subscriber is closed.
   * Never blocks the event loop. Overruns and gaps are counted in {@linkcode stats}.
   */
  async run(onPacket: (p: NflogPacket) => void, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && this.fd >= 0) {
      const more = this.drain(onPacket);
      if (signal.aborted || this.fd < 0) return;
      if (!more) await waitReadable(this.fd, POLL_MS);
      else await Promise.resolve(); // a full batch: let the loop run, then read on
    }
  }

  /**
   * Reads what is queued, up to a batch of datagrams, handing each packet to `onPacket`;
   * returns whether more may be waiting. Never blocks.
   */
  drain(onPacket: (p: NflogPacket) => void): boolean {
    for (const p of this.#pending.splice(0)) onPacket(p);
    for (let i = 0; i < DRAIN_BATCH; i++) {
      if (this.fd < 0) return false;
      const n = sysOrErrno("recvfrom", "nflog recv", [
        this.fd,
        this.#buf,
        this.#buf.length,
        MSG_DONTWAIT,
      ]);
      if (n === -EAGAIN) return false;
      // The kernel could not queue a batch for us: count it and read on (the socket stays good).
      if (n === -ENOBUFS) {
        this.stats.overruns++;
        continue;
      }
      if (n < 0) throw new SyscallError(`nflog recv (group ${this.group}, ${this.netns})`, -n);
      this.#messages(n, (type, body) => {
        if (type === ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) onPacket(this.#packet(body));
      });
    }
    return true;
  }

  /** Packet messages in `n` bytes of the buffer, each as its type and body (after nlmsghdr). */
  #messages(n: number, visit: (type: number, body: Uint8Array) => void): void {
    const v = new DataView(this.#buf.buffer, 0, n);
    for (let off = 0; off + NLMSG_HDRLEN <= n;) {
      const len = v.getUint32(off, true);
      if (len < NLMSG_HDRLEN || off + len > n) break;
      visit(v.getUint16(off + 4, true), this.#buf.subarray(off + NLMSG_HDRLEN, off + len));
      off += (len + 3) & ~3;
    }
  }

  #packet(body: Uint8Array): NflogPacket {
    this.stats.packets++;
    const { packet, seq } = parseNflogPacket(body, Date.now());
    if (seq !== undefined) {
      // uint32 arithmetic: the kernel's counter wraps.
      this.stats.lost += (seq - this.#nextSeq) >>> 0;
      this.#nextSeq = (seq + 1) >>> 0;
    }
    if (packet.family === undefined) this.stats.unparsed++;
    return packet;
  }

  #setRcvbuf(size: number): void {
    const v = bytes(4);
    new DataView(v.buffer).setInt32(0, size, true);
    // FORCE passes net.core.rmem_max (CAP_NET_ADMIN, which binding needs anyway); else capped.
    if (
      sysOrErrno("setsockopt", "SO_RCVBUFFORCE", [this.fd, SOL_SOCKET, SO_RCVBUFFORCE, v, 4]) < 0
    ) {
      sysOrErrno("setsockopt", "SO_RCVBUF", [this.fd, SOL_SOCKET, SO_RCVBUF, v, 4]);
    }
  }

  /**
   * One config request: bind the group, copy `copyRange` bytes of each packet, number the
   * messages (so losses show as gaps), flush batches after `flushMs`. No PF_BIND: that only
   * picks the default logger of a family for rules that name no group; `log group N` reaches
   * nfnetlink_log in every family without it, and unbinding would take it from others.
   */
  #configure(opts: NflogOptions): void {
    const be32 = (n: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n);
      return b;
    };
    const mode = new Uint8Array(6); // struct nfulnl_msg_config_mode, packed
    new DataView(mode.buffer).setUint32(0, opts.copyRange ?? COPY_RANGE);
    mode[4] = NFULNL_COPY_PACKET;
    const flags = new Uint8Array(2);
    new DataView(flags.buffer).setUint16(0, NFULNL_CFG_F_SEQ);
    const body = concat([
      nfgenmsg(0, this.group),
      attr(NFULA_CFG_CMD, Uint8Array.of(NFULNL_CFG_CMD_BIND)),
      attr(NFULA_CFG_MODE, mode),
      attr(NFULA_CFG_NLBUFSIZ, be32(NLBUFSIZ)),
      attr(NFULA_CFG_TIMEOUT, be32(Math.max(1, Math.round((opts.flushMs ?? FLUSH_MS) / 10)))),
      attr(NFULA_CFG_FLAGS, flags),
    ]);
    const what = `nflog bind group ${this.group}`;
    const msg = bytes(NLMSG_HDRLEN + body.length);
    const v = new DataView(msg.buffer);
    v.setUint32(0, msg.length, true);
    v.setUint16(4, (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, true);
    v.setUint16(6, NLM_F_REQUEST | NLM_F_ACK, true);
    v.setUint32(8, 1, true);
    msg.set(body, NLMSG_HDRLEN);
    sys("sendto", what, this.fd, msg, msg.length, 0);
    // The ack comes before anything can be logged to us, bar a batch flushed in between: kept.
    for (;;) {
      const n = sys("recvfrom", what, this.fd, this.#buf, this.#buf.length, 0);
      let acked = false;
      this.#messages(n, (type, b) => {
        if (type === NLMSG_ERROR) {
          const err = -new DataView(b.buffer, b.byteOffset).getInt32(0, true);
          if (err > 0) throw new NetlinkError(what, this.netns, err);
          acked = true;
        } else if (type === ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) {
          this.#pending.push(this.#packet(b));
        }
      });
      if (acked) return;
    }
  }

  close(): void {
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * An NFULNL_MSG_PACKET body (after the netlink header) as a packet, and its NFULA_SEQ when
 * numbered. `now` stands in for a missing kernel timestamp. Pure.
 *
 * @example
 * parseNflogPacket(body, Date.now()).packet.prefix; // "mycni:i:0123456789ab"
 */
export function parseNflogPacket(
  body: Uint8Array,
  now: number,
): { packet: NflogPacket; seq?: number } {
  const attrs = parseAttrs(body.subarray(4)); // after struct nfgenmsg
  const be = (b: Uint8Array | undefined) =>
    b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset).getUint32(0) : undefined;
  const prefix = attrs.has(NFULA_PREFIX) ? decodeCString(attrs.get(NFULA_PREFIX)!) : "";
  let time = now;
  const ts = attrs.get(NFULA_TIMESTAMP);
  if (ts && ts.length >= 16) {
    const tv = new DataView(ts.buffer, ts.byteOffset);
    time = Number(tv.getBigUint64(0)) * 1000 + Math.floor(Number(tv.getBigUint64(8)) / 1000);
  }
  // struct nfulnl_msg_packet_hdr: hw_protocol (the ethertype, network order), hook.
  const hdr = attrs.get(NFULA_PACKET_HDR);
  const hw = hdr && hdr.length >= 3 ? (hdr[0] << 8) | hdr[1] : undefined;
  const payload = attrs.get(NFULA_PAYLOAD);
  // The ethertype says what the payload is where it says anything (0 from some paths).
  const ip = payload && (!hw || hw === ETH_P_IP || hw === ETH_P_IPV6)
    ? parseIpHeaders(payload)
    : undefined;
  const packet: NflogPacket = {
    prefix,
    time,
    ...(hdr && hdr.length >= 3 ? { hook: hdr[2] } : {}),
    ...(ip ?? { src: "", dst: "", proto: 0 }),
    indev: be(attrs.get(NFULA_IFINDEX_INDEV)),
    outdev: be(attrs.get(NFULA_IFINDEX_OUTDEV)),
  };
  return { packet, seq: be(attrs.get(NFULA_SEQ)) };
}

/** The IP header at the start of `p`: addresses, protocol, and ports when present. Pure. */
export function parseIpHeaders(
  p: Uint8Array,
):
  | { family: Family; src: string; dst: string; proto: number; sport?: number; dport?: number }
  | undefined {
  if (p.length < 1) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const version = p[0] >> 4;
  if (version === 4 && p.length >= 20) {
    const ihl = (p[0] & 0xf) * 4;
    const proto = p[9];
    // A later fragment (offset > 0) starts mid-payload: its first bytes are no ports.
    const later = (v.getUint16(6) & 0x1fff) !== 0;
    return {
      family: 4,
      src: [...p.subarray(12, 16)].join("."),
      dst: [...p.subarray(16, 20)].join("."),
      proto,
      ...(later || ihl < 20 ? {} : ports(p, ihl, proto)),
    };
  }
  if (version === 6 && p.length >= 40) {
    let next = p[6], off = 40, later = false;
    // Hop-by-hop, routing, fragment, destination options, AH: skipped to the transport header.
    while (off + 8 <= p.length && [0, 43, 44, 51, 60].includes(next)) {
      if (next === 44) later = (v.getUint16(off + 2) & 0xfff8) !== 0;
      const len = next === 44 ? 8 : next === 51 ? (p[off + 1] + 2) * 4 : (p[off + 1] + 1) * 8;
      next = p[off];
      off += len;
    }
    return {
      family: 6,
      src: ip6(p.subarray(8, 24)),
      dst: ip6(p.subarray(24, 40)),
      proto: next,
      ...(later ? {} : ports(p, off, next)),
    };
  }
  return undefined;
}

/** TCP, UDP and SCTP put both ports first; other protocols have none. */
function ports(p: Uint8Array, off: number, proto: number): { sport?: number; dport?: number } {
  if (proto !== IPPROTO.TCP && proto !== IPPROTO.UDP && proto !== IPPROTO.SCTP) return {};
  if (off + 4 > p.length) return {};
  const v = new DataView(p.buffer, p.byteOffset + off, 4);
  return { sport: v.getUint16(0), dport: v.getUint16(2) };
}

function ip6(b: Uint8Array): string {
  let value = 0n;
  for (const byte of b) value = (value << 8n) | BigInt(byte);
  return formatIp({ family: 6, value });
}

/** struct nfgenmsg: family, version 0, the resource id (the group) in network order. */
function nfgenmsg(family: number, resId: number): Uint8Array {
  const b = new Uint8Array(4);
  b[0] = family;
  new DataView(b.buffer).setUint16(2, resId);
  return b;
}

// Set when this thread could not get back from a netns: nothing more may be done here.
let stranded = "";

/**
 * A NETLINK_NETFILTER socket in the netns at `netns` (ours when omitted). The same dance as
 * lib/net/netlink.ts's Rtnl.open, for another protocol: kept here until netlink.ts takes a
 * protocol (TODO(#20): one helper for both, with lib/net/conntrack.ts's).
 */
function netfilterSocket(netns?: string): number {
  if (stranded) throw new Error(stranded);
  const open = () =>
    sys(
      "socket",
      "netfilter netlink socket",
      AF_NETLINK,
      SOCK_RAW | SOCK_CLOEXEC,
      NETLINK_NETFILTER,
    );
  if (netns === undefined) return open();
  const here = sys(
    "openat",
    "open our netns",
    AT_FDCWD,
    cString("/proc/thread-self/ns/net"),
    O_CLOEXEC,
  );
  try {
    const target = sys("openat", `open netns ${netns}`, AT_FDCWD, cString(netns), O_CLOEXEC);
    try {
      sys("setns", `setns ${netns}`, target, CLONE_NEWNET);
    } finally {
      closeFd(target);
    }
    let fd = -1, failure: unknown;
    try {
      fd = open();
    } catch (err) {
      failure = err;
    }
    try {
      sys("setns", "setns back to our netns", here, CLONE_NEWNET);
    } catch (err) {
      stranded = `cannot return to our netns after entering ${netns}: ${(err as Error).message}`;
      throw new Error(stranded);
    }
    if (failure) throw failure;
    return fd;
  } finally {
    closeFd(here);
  }
}
