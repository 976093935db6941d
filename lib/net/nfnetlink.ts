// nfnetlink, the netlink protocol of netfilter (nftables, conntrack): the nfgenmsg header every
// message starts with, nested attributes flagged as such, and the batch (BATCH_BEGIN, messages,
// BATCH_END in one datagram) that the kernel applies as one transaction or not at all. What the
// kernel does with a batch: net/netfilter/nfnetlink.c nfnetlink_rcv_batch().
import { bytes, errnoText, SyscallError } from "../sys/syscall.ts";
import { attr, concat, decodeCString, parseAttrs, type Rtnl } from "./netlink.ts";

/** Subsystems (linux/netfilter/nfnetlink.h): the high byte of a message type. */
export const NFNL_SUBSYS_CTNETLINK = 1;
export const NFNL_SUBSYS_NFTABLES = 10;
/** The batch markers (NLMSG_MIN_TYPE and the one after). */
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;
/** Set on an attribute holding attributes; nft sets it, and newer kernels check it. */
export const NLA_F_NESTED = 0x8000;

const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;
const NLMSGERR_ATTR_OFFS = 2;
const NFNETLINK_V0 = 0;

/**
 * The header after nlmsghdr: family (NFPROTO_* or AF_*), version, and the resource id, big
 * endian (a batch's names the subsystem).
 */
export function nfgenmsg(family: number, resId = 0): Uint8Array {
  return Uint8Array.of(family, NFNETLINK_V0, resId >> 8, resId & 0xff);
}

/** An attribute holding other attributes, flagged NLA_F_NESTED as libmnl's nests are. */
export function nest(type: number, ...attrs: Uint8Array[]): Uint8Array {
  return attr(type | NLA_F_NESTED, concat(attrs));
}

/** A 32-bit attribute in network byte order (nftables and conntrack numbers are). */
export function be32Attr(type: number, value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0);
  return attr(type, b);
}

/** A 16-bit attribute in network byte order (ports, conntrack zones). */
export function be16Attr(type: number, value: number): Uint8Array {
  return attr(type, Uint8Array.of(value >> 8, value & 0xff));
}

/**
 * Every attribute in order, repeated types included (parseAttrs keeps the last of each type; a
 * list of set elements repeats one type). `visit` sees views, valid during the call.
 */
export function eachAttr(b: Uint8Array, visit: (type: number, payload: Uint8Array) => void): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 0; off + 4 <= b.length;) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > b.length) break;
    visit(v.getUint16(off + 2, true) & 0x3fff, b.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
}

/** One message of a batch: its type (subsystem << 8 | message), flags and body after nlmsghdr. */
export interface NfMessage {
  readonly type: number;
  readonly flags: number;
  /** nfgenmsg and attributes. */
  readonly body: Uint8Array;
}

/** A message of a batch the kernel refused, or the whole batch (`index` -1). */
export interface Refusal {
  /** Index into the batch's messages; -1 for the batch itself (a failed commit). */
  readonly index: number;
  readonly errno: number;
  /** The kernel's extended-ack text ("" when it gave none). */
  readonly message: string;
  /** Where in the refused message (from its nlmsghdr) the attribute at fault starts. */
  readonly offset?: number;
}

/**
 * The batch as bytes: BATCH_BEGIN, each message with NLM_F_REQUEST | NLM_F_ACK and its own
 * sequence number (`seq + 1 + index`), BATCH_END (`seq + 1 + count`). Pure.
 *
 * @example
 * encodeBatch(NFNL_SUBSYS_NFTABLES, [{ type: 0x0a0c, flags: 0x400, body }], 100);
 */
export function encodeBatch(
  subsys: number,
  messages: readonly NfMessage[],
  seq: number,
): Uint8Array<ArrayBuffer> {
  const marker = nfgenmsg(0, subsys);
  const all: NfMessage[] = [
    { type: NFNL_MSG_BATCH_BEGIN, flags: 0, body: marker },
    ...messages.map((m) => ({ ...m, flags: m.flags | NLM_F_ACK })),
    { type: NFNL_MSG_BATCH_END, flags: 0, body: marker },
  ];
  let size = 0;
  for (const m of all) size += align4(NLMSG_HDRLEN + m.body.length);
  const out = bytes(size);
  const v = new DataView(out.buffer);
  let off = 0;
  all.forEach((m, i) => {
    v.setUint32(off, NLMSG_HDRLEN + m.body.length, true);
    v.setUint16(off + 4, m.type, true);
    v.setUint16(off + 6, m.flags | NLM_F_REQUEST, true);
    v.setUint32(off + 8, seq + i, true);
    out.set(m.body, off + NLMSG_HDRLEN);
    off += align4(NLMSG_HDRLEN + m.body.length);
  });
  return out;
}

/**
 * Sends `messages` as one batch (one transaction) in one datagram and reads the kernel's answer
 * to each: an empty list when the kernel committed them all, else what it refused (it then
 * applied none: nfnetlink aborts the whole transaction). The kernel handles a batch inside
 * sendto and queues every answer before returning, so the answers are read without waiting.
 * Buffers grow to fit a large batch and its answers.
 */
export function sendBatch(
  nl: Rtnl,
  subsys: number,
  messages: readonly NfMessage[],
  what: string,
): Refusal[] {
  if (messages.length === 0) return [];
  const begin = nl.nextSeq();
  for (let i = 0; i <= messages.length; i++) nl.nextSeq();
  const batch = encodeBatch(subsys, messages, begin);
  // An answer takes ~1 KiB of the receive buffer (what the kernel counts against it is the
  // buffer it allocates), and a full one drops answers; the default holds ~200.
  if (batch.length > DEFAULT_BUFFER / 2 || messages.length > 100) {
    nl.reserveBuffers(
      Math.max(DEFAULT_BUFFER, batch.length + 65536),
      Math.max(DEFAULT_BUFFER, messages.length * 1024 + 65536),
    );
  }
  nl.sendRaw(batch, what);
  const pending = new Set(messages.map((_, i) => begin + 1 + i));
  const refused: Refusal[] = [];
  while (pending.size > 0) {
    const buf = receive(nl, what);
    if (!buf) {
      if (refused.some((r) => r.index === -1)) break;
      throw new Error(
        `${what} (nfnetlink, in ${nl.netns}): the kernel answered ${
          messages.length - pending.size
        } of the batch's ${messages.length} messages and no more: it dropped the batch`,
      );
    }
    eachMessage(buf, (type, flags, seqNo, body) => {
      if (type !== NLMSG_ERROR) return;
      const errno = -new DataView(body.buffer, body.byteOffset).getInt32(0, true);
      if (seqNo === begin) {
        refused.push({ index: -1, errno, ...extack(body, flags) });
      } else if (pending.delete(seqNo) && errno !== 0) {
        refused.push({ index: seqNo - begin - 1, errno, ...extack(body, flags) });
      }
    });
  }
  return refused;
}

/** A refusal as text: errno's text and the kernel's own reason. */
export function refusalText(r: Refusal): string {
  return `${errnoText(r.errno)}${r.message ? ` (${r.message})` : ""}`;
}

const DEFAULT_BUFFER = 212992;
const ENOBUFS = 105;

function receive(nl: Rtnl, what: string): Uint8Array | undefined {
  try {
    return nl.receiveQueued(what);
  } catch (err) {
    // The kernel dropped answers it could not queue: what it did with the batch is not known.
    if (err instanceof SyscallError && err.errno === ENOBUFS) {
      throw new Error(
        `${what} (nfnetlink, in ${nl.netns}): the kernel's answers overflowed the receive ` +
          "buffer, so whether it applied the batch is not known: read the table back",
        { cause: err },
      );
    }
    throw err;
  }
}

function eachMessage(
  buf: Uint8Array,
  visit: (type: number, flags: number, seq: number, body: Uint8Array) => void,
): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length;) {
    const len = v.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    visit(
      v.getUint16(off + 4, true),
      v.getUint16(off + 6, true),
      v.getUint32(off + 8, true),
      buf.subarray(off + NLMSG_HDRLEN, off + len),
    );
    off += align4(len);
  }
}

/** nlmsgerr's TLVs: after the error (4) and the request's header (16, NETLINK_CAP_ACK). */
function extack(body: Uint8Array, flags: number): { message: string; offset?: number } {
  if (!(flags & NLM_F_ACK_TLVS)) return { message: "" };
  const tlvs = parseAttrs(body.subarray(4 + NLMSG_HDRLEN));
  const msg = tlvs.get(NLMSGERR_ATTR_MSG);
  const offs = tlvs.get(NLMSGERR_ATTR_OFFS);
  return {
    message: msg ? decodeCString(msg) : "",
    ...(offs ? { offset: new DataView(offs.buffer, offs.byteOffset).getUint32(0, true) } : {}),
  };
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
