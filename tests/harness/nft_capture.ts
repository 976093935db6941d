// What `nft` sends the kernel for a change, as bytes: the batch's sendmsg, read with strace's
// hex dump of the data written (`-e write=all`). `nft --debug=mnl` prints the same messages, but
// shows a header's flags only as R/M/A/E, so NLM_F_CREATE would go unchecked; strace shows every
// byte. And the normalisation that makes nft's batch and ours comparable.
import { inNetns, run } from "../../lib/process/run.ts";

/** The batch nft sent for `change` (nft -f text) in the namespace at `netns`, one entry per message. */
export async function captureNftBatch(netns: string, change: string): Promise<Uint8Array[]> {
  const dir = await Deno.makeTempDir({ prefix: "mycni-nftcap-" });
  try {
    await Deno.writeTextFile(`${dir}/change.nft`, change);
    const trace = `${dir}/trace`;
    await run(inNetns(netns, [
      "strace",
      "-o",
      trace,
      "-e",
      "trace=sendmsg",
      "-e",
      "write=all",
      "nft",
      "-f",
      `${dir}/change.nft`,
    ]));
    return batchOf(await Deno.readTextFile(trace));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The messages of the one sendmsg whose first message is BATCH_BEGIN, in strace's hex dump. */
function batchOf(trace: string): Uint8Array[] {
  const dumps: number[][] = [];
  for (const line of trace.split("\n")) {
    if (/^ \* \d+ bytes in buffer 0/.test(line)) dumps.push([]);
    // " | 00010  00 00 00 0a 68 00 00 00  0c 0a 01 04 01 00 00 00  ....h........... |"
    if (/^ \| [0-9a-f]{5} {2}/.test(line) && dumps.length) {
      const hex = line.slice(10, 59).trim().split(/ +/);
      dumps[dumps.length - 1].push(...hex.map((h) => parseInt(h, 16)));
    }
  }
  const batch = dumps.find((d) => d[4] === 0x10 && d[5] === 0);
  if (!batch) throw new Error(`no batch in nft's trace:\n${trace}`);
  return splitMessages(Uint8Array.from(batch));
}

/** A datagram's netlink messages. */
export function splitMessages(buf: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let off = 0; off + 16 <= buf.length;) {
    const len = v.getUint32(off, true);
    out.push(buf.slice(off, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

const NLM_F_ACK = 0x4;
const NFTA_SET_ELEM_LIST_SET_ID = 4;
const ELEMENT_TYPES = [0x0a0c, 0x0a0e];

/**
 * A message with what legitimately differs between nft's batch and ours taken out: the
 * sequence number and port id (zeroed), NLM_F_ACK (we ask an ack for every message, nft for
 * none), NFTA_SET_ELEM_LIST_SET_ID (nft's own number for a set it has in its cache; the kernel
 * finds an existing set by name, and we send none), and the padding after each attribute
 * (zeroed: nft leaves whatever its buffer held there in the second message of a split list,
 * and the kernel never reads it). As hex.
 */
export function normalised(msg: Uint8Array): string {
  const type = new DataView(msg.buffer, msg.byteOffset).getUint16(4, true);
  const body = ELEMENT_TYPES.includes(type)
    ? attrsWithoutPadding(msg.subarray(20), NFTA_SET_ELEM_LIST_SET_ID)
    : msg.slice(20);
  const out = new Uint8Array(20 + body.length);
  out.set(msg.subarray(0, 20));
  out.set(body, 20);
  const o = new DataView(out.buffer);
  o.setUint32(0, out.length, true);
  o.setUint16(6, o.getUint16(6, true) & ~NLM_F_ACK, true);
  o.setUint32(8, 0, true);
  o.setUint32(12, 0, true);
  return [...out].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Attributes with zeroed padding, nested ones (NLA_F_NESTED) too, leaving out type `drop`. */
function attrsWithoutPadding(b: Uint8Array, drop?: number): Uint8Array {
  const parts: Uint8Array[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 0; off + 4 <= b.length;) {
    const len = v.getUint16(off, true);
    const type = v.getUint16(off + 2, true);
    const padded = (len + 3) & ~3;
    if ((type & 0x3fff) !== drop) {
      const payload = b.subarray(off + 4, off + len);
      const inner = type & 0x8000 ? attrsWithoutPadding(payload) : payload;
      const a = new Uint8Array(padded);
      a.set(b.subarray(off, off + 4));
      a.set(inner, 4);
      parts.push(a);
    }
    off += padded;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), off += p.length;
  return out;
}
