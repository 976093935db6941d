// rtnetlink, the kernel interface `ip` itself speaks: a socket in one network namespace, a
// request with an ack, and the attribute encoding. The plugin talks to it directly on its hot
// path (ADD, DEL), as the reference plugins do through vishvananda/netlink, instead of
// spawning `nsenter` + `ip` per pod. lib/net/rtnl.ts builds the messages `ip` would send.
import {
  AT_FDCWD,
  bytes,
  closeFd,
  cString,
  Errno,
  errnoText,
  O_CLOEXEC,
  sys,
  SyscallError,
  sysOrErrno,
} from "../sys/syscall.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
/** nfnetlink: nftables set elements and conntrack (lib/nft/elements.ts, lib/net/conntrack.ts). */
export const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const CLONE_NEWNET = 0x40000000;

const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

/** Request flags (linux/netlink.h). */
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** A GET for every object of the kind (NLM_F_ROOT | NLM_F_MATCH). */
export const NLM_F_DUMP = 0x300;

/**
 * errno values the callers tell apart: a delete of a neighbour (ENOENT) or a route (ESRCH) that
 * is already gone, a link that is not there (ENODEV), an object that already is (EEXIST).
 */
export const { ENOENT, ESRCH, ENODEV, EEXIST } = Errno;

/** A request the kernel refused: what we asked (as the `ip` command), where, and why. */
export class NetlinkError extends Error {
  constructor(
    readonly what: string,
    readonly netns: string,
    readonly errno: number,
    readonly extack = "",
  ) {
    super(`${what} (netlink, in ${netns}): ${errnoText(errno)}${extack ? ` (${extack})` : ""}`);
    this.name = "NetlinkError";
  }
}

/** One reply message: its type and its payload after the netlink header. */
export interface NlReply {
  readonly type: number;
  readonly body: Uint8Array;
}

/** An rtnetlink socket bound to the network namespace it was opened in. */
export class Rtnl implements Disposable {
  #seq = 0;
  #buf = bytes(65536);

  private constructor(private fd: number, readonly netns: string) {}

  /**
   * Opens a socket in the netns at `netns` (a netns file path), or in ours when omitted. The
   * thread enters the netns only for the socket() call: a socket stays in the netns it was made
   * in, whatever the thread does next. `protocol` is NETLINK_ROUTE unless said otherwise
   * ({@linkcode NETLINK_NETFILTER}).
   */
  static open(netns?: string, protocol = NETLINK_ROUTE): Rtnl {
    if (stranded) throw new Error(stranded);
    if (netns === undefined) return new Rtnl(netlinkSocket(protocol), "the node netns");
    const here = openNetns("/proc/thread-self/ns/net");
    try {
      enterNetns(netns);
      let fd = -1, failure: unknown;
      try {
        fd = netlinkSocket(protocol);
      } catch (err) {
        failure = err;
      }
      // Never leave the JS thread in the pod: every later spawn and socket would land there.
      try {
        sys("setns", "setns back to our netns", here, CLONE_NEWNET);
      } catch (err) {
        stranded = `cannot return to our netns after entering ${netns}: ${(err as Error).message}`;
        throw new Error(stranded);
      }
      if (failure) throw failure;
      return new Rtnl(fd, netns);
    } finally {
      closeFd(here);
    }
  }

  /**
   * Sends one request and waits for its ack; returns the replies before the ack (a GET's answer).
   * `what` names the request as the equivalent `ip` command, for errors.
   */
  request(type: number, flags: number, body: Uint8Array, what: string): NlReply[] {
    const seq = this.#send(type, flags | NLM_F_ACK, body, what);
    const replies: NlReply[] = [];
    this.#answer(seq, what, (type, body) => replies.push({ type, body: body.slice() }));
    return replies;
  }

  /**
   * Sends one GET per body, without acks, up to {@linkcode PIPELINE} in one sendto, and returns
   * `read` of each one's (single) reply, or the kernel's refusal, in order. What `ip route get`
   * does per address, at a third of the system calls of {@linkcode request} per lookup (one
   * recvfrom each instead of send + reply + ack), which is what thousands of lookups cost.
   * `read` sees the reply in place: the view is only valid during the call. `flags` adds to
   * the requests' (NLM_F_ACK: requests that answer nothing else, such as deletes, then answer
   * with an ack, which `read` gets as an NLMSG_ERROR of errno 0).
   */
  requestEach<T>(
    type: number,
    bodies: readonly Uint8Array[],
    what: (i: number) => string,
    read: (type: number, body: Uint8Array) => T,
    flags = 0,
  ): (T | NetlinkError)[] {
    const out: (T | NetlinkError)[] = new Array(bodies.length);
    for (let start = 0; start < bodies.length; start += PIPELINE) {
      const end = Math.min(start + PIPELINE, bodies.length);
      const first = this.#seq + 1;
      let size = 0;
      for (let i = start; i < end; i++) size += align4(NLMSG_HDRLEN + bodies[i].length);
      const msg = bytes(size);
      for (let i = start, off = 0; i < end; i++) {
        off = putMessage(msg, off, {
          type,
          flags: NLM_F_REQUEST | flags,
          seq: ++this.#seq,
        }, bodies[i]);
      }
      const doing = `netlink (${what(start)} and ${end - start - 1} more)`;
      sys("sendto", doing, this.fd, msg, msg.length, 0);
      let pending = end - start;
      this.#receive(doing, (v, off, len) => {
        const i = start + v.getUint32(off + 8, true) - first;
        if (i >= start && i < end && out[i] === undefined) {
          const mtype = v.getUint16(off + 4, true);
          const refused = mtype === NLMSG_ERROR && v.getInt32(off + NLMSG_HDRLEN, true) !== 0;
          out[i] = refused
            ? new NetlinkError(
              what(i),
              this.netns,
              -v.getInt32(off + NLMSG_HDRLEN, true),
              extackMessage(this.#buf, off, len, v.getUint16(off + 6, true)),
            )
            : read(mtype, this.#buf.subarray(off + NLMSG_HDRLEN, off + len));
          pending--;
        }
        return pending === 0;
      });
    }
    return out;
  }

  /**
   * A dump (`ip route show`, `ip neigh show`...) read in place: `visit` sees each reply's type
   * and body as a view into the receive buffer, valid only during the call. No copy per
   * message, which is what dumps of thousands of entries on every resync cost an agent that
   * lives as long as the node.
   */
  dumpEach(
    type: number,
    body: Uint8Array,
    what: string,
    visit: (type: number, body: Uint8Array) => void,
  ): void {
    // No ack: a dump ends with NLMSG_DONE (the kernel sends no ack after a dump anyway).
    const seq = this.#send(type, NLM_F_DUMP, body, what);
    this.#answer(seq, what, visit);
  }

  /** Sends one request message; returns its sequence number. */
  #send(type: number, flags: number, body: Uint8Array, what: string): number {
    const seq = ++this.#seq;
    const msg = bytes(NLMSG_HDRLEN + body.length);
    putMessage(msg, 0, { type, flags: flags | NLM_F_REQUEST, seq }, body);
    sys("sendto", `netlink send (${what})`, this.fd, msg, msg.length, 0);
    return seq;
  }

  /**
   * Reads the answer to request `seq` up to its ack (an ERROR of 0) or a dump's DONE, handing
   * each reply before it to `visit` in place; throws the kernel's refusal. Messages of other
   * requests (a reply that came after its caller gave up) are skipped.
   */
  #answer(seq: number, what: string, visit: (type: number, body: Uint8Array) => void): void {
    this.#receive(`netlink recv (${what})`, (v, off, len) => {
      if (v.getUint32(off + 8, true) !== seq) return false;
      const mtype = v.getUint16(off + 4, true);
      if (mtype !== NLMSG_DONE && mtype !== NLMSG_ERROR) {
        visit(mtype, this.#buf.subarray(off + NLMSG_HDRLEN, off + len));
        return false;
      }
      // ERROR is an ack or a refusal; DONE carries the error of a dump that failed part-way.
      const err = len >= NLMSG_HDRLEN + 4 ? -v.getInt32(off + NLMSG_HDRLEN, true) : 0;
      if (err > 0) {
        const extack = mtype === NLMSG_ERROR
          ? extackMessage(this.#buf, off, len, v.getUint16(off + 6, true))
          : "";
        throw new NetlinkError(what, this.netns, err, extack);
      }
      return true;
    });
  }

  /**
   * The one receive loop: reads datagrams into the receive buffer and hands `visit` each whole
   * message in it (the buffer's view, the message's offset and length) until `visit` says done.
   */
  #receive(what: string, visit: (v: DataView, off: number, len: number) => boolean): void {
    for (;;) {
      const n = sys("recvfrom", what, this.fd, this.#buf, this.#buf.length, 0);
      const v = new DataView(this.#buf.buffer, 0, n);
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = v.getUint32(off, true);
        if (len < NLMSG_HDRLEN || off + len > n) break;
        if (visit(v, off, len)) return;
        off += align4(len);
      }
    }
  }

  /** A sequence number of this socket's, for messages the caller frames itself (a batch). */
  nextSeq(): number {
    return ++this.#seq;
  }

  /**
   * Sends messages the caller framed, whole, in one sendto: an nfnetlink batch is one transaction
   * only when it reaches the kernel in one piece. The kernel answers before sendto returns.
   */
  sendRaw(msg: Uint8Array<ArrayBuffer>, what: string): void {
    sys("sendto", `netlink send (${what})`, this.fd, msg, msg.length, 0);
  }

  /**
   * The next datagram of answers already queued, as a view into the receive buffer valid until
   * the next read; undefined when nothing is queued (it never waits).
   */
  receiveQueued(what: string): Uint8Array | undefined {
    const args = [this.fd, this.#buf, this.#buf.length, MSG_DONTWAIT];
    const n = sysOrErrno("recvfrom", `netlink recv (${what})`, args);
    if (n === -EAGAIN) return undefined;
    if (n < 0) throw new SyscallError(`netlink recv (${what})`, -n);
    return this.#buf.subarray(0, n);
  }

  /**
   * Sets the socket's send and receive buffers (bytes; the kernel doubles them), past the
   * system's limits (CAP_NET_ADMIN), to grow them beyond the ~208 KiB default: a batch must fit
   * the send buffer whole, and its answers the receive buffer. Without the capability the
   * defaults stay.
   */
  reserveBuffers(send: number, receive: number): void {
    for (const [opt, size] of [[SO_SNDBUFFORCE, send], [SO_RCVBUFFORCE, receive]]) {
      const value = bytes(4);
      new DataView(value.buffer).setInt32(0, size, true);
      sysOrErrno("setsockopt", "setsockopt", [this.fd, SOL_SOCKET, opt, value, 4]);
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
 * Requests {@linkcode Rtnl.requestEach} puts in one sendto: their answers wait in the socket's
 * receive queue until read, and a full queue (about 200 KiB by default, ~1 KiB of it per small
 * answer) drops answers.
 */
const PIPELINE = 64;

// Set when this thread could not get back from a pod's netns: nothing more may be done here.
let stranded = "";

function enterNetns(netns: string): void {
  const fd = openNetns(netns);
  try {
    sys("setns", `setns ${netns}`, fd, CLONE_NEWNET);
  } finally {
    closeFd(fd);
  }
}

/** The netns file, read-only (O_RDONLY is 0): setns needs no more. */
function openNetns(path: string): number {
  return sys("openat", `open netns ${path}`, AT_FDCWD, cString(path), O_CLOEXEC);
}

function netlinkSocket(protocol: number): number {
  const fd = sys("socket", "netlink socket", AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  const one = bytes(4);
  one[0] = 1;
  // Errors carry the kernel's own explanation ("Invalid MTU"), and acks not the whole request.
  for (const opt of [NETLINK_EXT_ACK, NETLINK_CAP_ACK]) {
    try {
      sys("setsockopt", "setsockopt", fd, SOL_NETLINK, opt, one, 4);
    } catch { /* older kernel: plain errors */ }
  }
  return fd;
}

/** The kernel's extended-ack text, when it sent one (NETLINK_EXT_ACK with CAP_ACK). */
function extackMessage(buf: Uint8Array, off: number, len: number, flags: number): string {
  if (!(flags & NLM_F_ACK_TLVS)) return "";
  // nlmsghdr, then nlmsgerr: error (4) + the request's header (16, capped), then TLVs.
  const tlvs = buf.subarray(off + NLMSG_HDRLEN + 4 + NLMSG_HDRLEN, off + len);
  const msg = parseAttrs(tlvs).get(NLMSGERR_ATTR_MSG);
  return msg ? decodeCString(msg) : "";
}

/** Writes a netlink header and `body` at `off` in `msg`; returns the offset after it, aligned. */
function putMessage(
  msg: Uint8Array,
  off: number,
  h: { type: number; flags: number; seq: number },
  body: Uint8Array,
): number {
  const v = new DataView(msg.buffer, msg.byteOffset);
  v.setUint32(off, NLMSG_HDRLEN + body.length, true);
  v.setUint16(off + 4, h.type, true);
  v.setUint16(off + 6, h.flags, true);
  v.setUint32(off + 8, h.seq, true);
  msg.set(body, off + NLMSG_HDRLEN);
  return off + align4(NLMSG_HDRLEN + body.length);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** One rtattr: length, type, payload, padded to 4 bytes. */
export function attr(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(align4(4 + payload.length));
  const v = new DataView(out.buffer);
  v.setUint16(0, 4 + payload.length, true);
  v.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

/** An attribute holding other attributes (IFLA_LINKINFO, IFLA_AF_SPEC, ...). */
export function nested(type: number, ...attrs: Uint8Array[]): Uint8Array {
  return attr(type, concat(attrs));
}

export function u8Attr(type: number, value: number): Uint8Array {
  return attr(type, Uint8Array.of(value));
}

export function u32Attr(type: number, value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return attr(type, b);
}

/** A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND). */
export function strAttr(type: number, value: string): Uint8Array {
  return attr(type, new TextEncoder().encode(value + "\0"));
}

/** Byte strings one after the other. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = bytes(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Attributes by type (the last one wins); nested payloads can be parsed again. */
export function parseAttrs(bytes: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off + 4 <= bytes.length;) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > bytes.length) break;
    out.set(v.getUint16(off + 2, true) & 0x3fff, bytes.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

/** A C string payload without its NUL. */
export function decodeCString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}
