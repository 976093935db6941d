// Set and map elements of the agent's table as nfnetlink messages, and back: the NEWSETELEM /
// DELSETELEM messages `nft add|delete element` sends (byte for byte, tests/unit/nft/
// element_codec_test.ts), and the text of each element as lib/nft/ruleset.ts writes it
// (`10.0.0.1`, `10.0.0.1 . 10.0.0.1`, `10.0.0.1 : jump ing_x`). Pure. Formats:
// linux/netfilter/nf_tables.h (enum nft_set_elem_list_attributes, nft_set_elem_attributes,
// nft_data_attributes, nft_verdict_attributes) and libnftnl's set_elem.c for the layout.
import { type Family, parseIp } from "../ip/cidr.ts";
import { attr, concat, decodeCString, parseAttrs, strAttr } from "../net/netlink.ts";
import {
  be32Attr,
  nest,
  nfgenmsg,
  type NfMessage,
  NFNL_SUBSYS_NFTABLES,
} from "../net/nfnetlink.ts";

const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_DELSETELEM = 14;
const NLM_F_CREATE = 0x400;

const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
const NFT_SET_ELEM_CATCHALL = 0x2;

/** The nfnetlink message types of element changes and of an element dump. */
export const ELEMENT_MSG = {
  new: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM,
  get: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
  del: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM,
} as const;

/** nft table families (NFPROTO_*). */
const FAMILY: Record<string, number> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };

/** Verdict codes (linux/netfilter.h NF_DROP/NF_ACCEPT, nf_tables.h enum nft_verdicts). */
const VERDICT: Record<string, number> = { drop: 0, accept: 1, continue: -1, return: -5 };
const JUMP = -3, GOTO = -4;

/** The elements of one NEWSETELEM must fit one attribute: its length is 16 bits (libnftnl). */
const MAX_NEST = 0xffff;

/** One element of a set or map to add or delete. */
export interface ElementChange {
  /**
   * `add`: NEWSETELEM with NLM_F_CREATE, as `nft add element`: adding an element that is there
   * with the same data succeeds; a map key holding another verdict is refused (EEXIST), so a
   * changed verdict is a delete and an add. `delete`: DELSETELEM, as `nft delete element`: an
   * absent element refuses the batch (ENOENT), which says the kernel's table is not the one the
   * caller believes it applied.
   */
  readonly op: "add" | "delete";
  /** The set or map's name in the table. */
  readonly set: string;
  /** Its type as declared: `ipv4_addr`, `ipv4_addr . ipv4_addr`, `ipv4_addr : verdict`. */
  readonly type: string;
  /** Interval sets are not changed element by element (see {@linkcode encodeElementMessages}). */
  readonly interval?: boolean;
  /** The element as lib/nft/ruleset.ts writes it; a map's data is ignored on delete. */
  readonly element: string;
}

/** One element message as sent, and which changes it carries (for naming a refusal). */
export interface ElementMessage extends NfMessage {
  readonly changes: readonly ElementChange[];
  /** Where each change's element starts in the message, counted from its nlmsghdr. */
  readonly offsets: readonly number[];
}

/** A key component: its size on the wire before padding to 4 bytes, and its codec. */
interface Component {
  readonly size: number;
  encode(text: string, out: Uint8Array): void;
  /** The component at `off` in `b`. */
  decode(b: Uint8Array, off: number): string;
}

const PROTO_NAMES: Record<number, string> = {
  1: "icmp",
  6: "tcp",
  17: "udp",
  58: "ipv6-icmp",
  132: "sctp",
  136: "udplite",
};
const PROTO_NUMBERS: Record<string, number> = Object.fromEntries(
  Object.entries(PROTO_NAMES).map(([n, name]) => [name, Number(n)]),
);

function ipComponent(family: Family): Component {
  const size = family === 4 ? 4 : 16;
  return {
    size,
    encode(text, out) {
      const ip = parseIp(text);
      if (ip.family !== family) throw new Error(`${text} is not an IPv${family} address`);
      let v = ip.value;
      for (let i = size - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
    },
    decode: (b, o) => family === 4 ? `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}` : formatV6(b, o),
  };
}

/** An IPv6 address's 16 bytes as formatIp writes it (RFC 5952), without a BigInt per address. */
function formatV6(b: Uint8Array, off: number): string {
  const groups: number[] = [];
  for (let i = off; i < off + 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // The longest run of two or more zero groups becomes "::" (the first of equal runs).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

const COMPONENTS: Record<string, Component> = {
  ipv4_addr: ipComponent(4),
  ipv6_addr: ipComponent(6),
  inet_proto: {
    size: 1,
    encode(text, out) {
      out[0] = PROTO_NUMBERS[text] ?? wireNumber(text, 0xff);
    },
    decode: (b, o) => PROTO_NAMES[b[o]] ?? String(b[o]),
  },
  inet_service: {
    size: 2,
    encode(text, out) {
      const port = wireNumber(text, 0xffff);
      out[0] = port >> 8;
      out[1] = port & 0xff;
    },
    decode: (b, o) => String((b[o] << 8) | b[o + 1]),
  },
};

function wireNumber(text: string, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n <= max)) throw new Error(`${text} is not a number from 0 to ${max}`);
  return n;
}

/** A declared type, parsed: the key's components and whether elements map to a verdict. */
interface ElementType {
  readonly key: readonly Component[];
  /** Each component padded to 4 bytes: the kernel's register layout for concatenations. */
  readonly keyLength: number;
  readonly verdict: boolean;
}

const TYPES = new Map<string, ElementType>();

/**
 * Whether elements of a set of `type` can go through nfnetlink here: the key types the agent's
 * table uses (addresses, and protocol and port for concatenations) and verdict maps.
 */
export function elementTypeSupported(type: string): boolean {
  try {
    elementType(type);
    return true;
  } catch {
    return false;
  }
}

function elementType(type: string): ElementType {
  const known = TYPES.get(type);
  if (known) return known;
  const [keyText, dataText, ...rest] = type.split(" : ");
  if (rest.length || (dataText !== undefined && dataText !== "verdict")) {
    throw new Error(`Set type "${type}": only sets and verdict maps are supported`);
  }
  const key = keyText.split(" . ").map((name) => {
    const c = COMPONENTS[name];
    if (!c) throw new Error(`Set type "${type}": key type ${name} is not supported`);
    return c;
  });
  const t = { key, keyLength: key.reduce((n, c) => n + pad4(c.size), 0), verdict: !!dataText };
  TYPES.set(type, t);
  return t;
}

/** The table's family and name from "inet mycni". */
export function tableParts(table: string): { family: number; name: string } {
  const [familyName, name, ...rest] = table.split(" ");
  const family = FAMILY[familyName];
  if (family === undefined || !name || rest.length) {
    throw new Error(`Table "${table}" is not "<family> <name>" of an nft family`);
  }
  return { family, name };
}

/**
 * The element messages for `changes`, in order: consecutive changes of one set and op share a
 * message (as one `nft add element` line does), split where the element list would outgrow its
 * 16-bit length. Throws, naming the change, on an interval set or an element that does not
 * parse as its set's type. Interval sets stay with `nft -f`: their elements are ranges that the
 * kernel stores as start and end elements, split and joined as they overlap.
 *
 * @example
 * encodeElementMessages("inet mycni", [
 *   { op: "add", set: "ingress4", type: "ipv4_addr : verdict", element: "10.0.0.1 : jump ing_a" },
 * ]); // one NEWSETELEM
 */
export function encodeElementMessages(
  table: string,
  changes: readonly ElementChange[],
): ElementMessage[] {
  const t = tableParts(table);
  const out: ElementMessage[] = [];
  // Elements are numbered across the messages a split list takes, as libnftnl does (which also
  // spends a number on the element that did not fit, before it starts the next message).
  let index = 0;
  for (let i = 0; i < changes.length;) {
    const first = changes[i];
    const prev = changes[i - 1];
    if (!prev || prev.set !== first.set || prev.op !== first.op) index = 0;
    const head = concat([
      nfgenmsg(t.family),
      strAttr(NFTA_SET_ELEM_LIST_TABLE, t.name),
      strAttr(NFTA_SET_ELEM_LIST_SET, first.set),
    ]);
    const elems: Uint8Array[] = [], offsets: number[] = [], group: ElementChange[] = [];
    // nlmsghdr, head, the list's attribute header: where the first element starts.
    let at = 16 + head.length + 4;
    for (; i < changes.length; i++) {
      const c = changes[i];
      if (c.set !== first.set || c.op !== first.op) break;
      const el = encodeElement(c, index + 1, table);
      if (at + el.length - (16 + head.length) > MAX_NEST && group.length > 0) {
        index++;
        break;
      }
      elems.push(el), offsets.push(at), group.push(c), index++;
      at += el.length;
    }
    out.push({
      type: first.op === "add" ? ELEMENT_MSG.new : ELEMENT_MSG.del,
      flags: first.op === "add" ? NLM_F_CREATE : 0,
      body: concat([head, nest(NFTA_SET_ELEM_LIST_ELEMENTS, ...elems)]),
      changes: group,
      offsets,
    });
  }
  return out;
}

/**
 * One element: its key and, for an add to a map, its verdict. `index` is the list attribute's
 * type: libnftnl numbers the elements of a command from 1 (the kernel reads them in order and
 * ignores the number).
 */
function encodeElement(c: ElementChange, index: number, table: string): Uint8Array {
  const where = `${c.op} element ${table} ${c.set} { ${c.element} }`;
  if (c.interval) {
    throw new Error(
      `Cannot ${where} over nfnetlink: ${c.set} is an interval set, whose elements the kernel ` +
        "splits and joins as ranges; change it with nft -f",
    );
  }
  try {
    const t = elementType(c.type);
    const [keyText, dataText] = c.element.split(" : ");
    const parts = keyText.split(" . ");
    if (parts.length !== t.key.length) throw new Error(`the key has ${parts.length} components`);
    const key = new Uint8Array(t.keyLength);
    let off = 0;
    parts.forEach((p, j) => {
      const comp = t.key[j];
      comp.encode(p.trim(), key.subarray(off, off + comp.size));
      off += pad4(comp.size);
    });
    const attrs = [nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key))];
    if (t.verdict && c.op === "add") {
      if (dataText === undefined) throw new Error("a map element needs a verdict");
      attrs.push(nest(NFTA_SET_ELEM_DATA, verdictAttr(dataText.trim())));
    } else if (!t.verdict && dataText !== undefined) {
      throw new Error("a set element has no data");
    }
    return nest(index, ...attrs);
  } catch (err) {
    throw new Error(`Cannot ${where} (type ${c.type}): ${(err as Error).message}`);
  }
}

function verdictAttr(text: string): Uint8Array {
  const [word, chain, ...rest] = text.split(/\s+/);
  if ((word === "jump" || word === "goto") && chain && !rest.length) {
    return nest(
      NFTA_DATA_VERDICT,
      be32Attr(NFTA_VERDICT_CODE, word === "jump" ? JUMP : GOTO),
      strAttr(NFTA_VERDICT_CHAIN, chain),
    );
  }
  if (VERDICT[word] === undefined || chain !== undefined) {
    throw new Error(`"${text}" is not a verdict`);
  }
  return nest(NFTA_DATA_VERDICT, be32Attr(NFTA_VERDICT_CODE, VERDICT[word]));
}

/** The body of a GETSETELEM dump of one set: `nft list set <table> <set>`, elements only. */
export function encodeElementDump(table: string, set: string): Uint8Array {
  const t = tableParts(table);
  return concat([
    nfgenmsg(t.family),
    strAttr(NFTA_SET_ELEM_LIST_TABLE, t.name),
    strAttr(NFTA_SET_ELEM_LIST_SET, set),
  ]);
}

/**
 * The elements of one NEWSETELEM message of a dump, by key, each as ruleset.ts writes it (a
 * catch-all element's key is `*`). Throws when a key's length is not its type's: the set in
 * the kernel has another type than the one the caller named. Read in place, without a Map per
 * attribute: a dump of 10,000 elements is decoded on every periodic check.
 */
export function decodeElements(
  type: string,
  body: Uint8Array,
  into: Map<string, string>,
): void {
  const t = elementType(type);
  const list = parseAttrs(body.subarray(4)).get(NFTA_SET_ELEM_LIST_ELEMENTS);
  if (!list) return;
  const v = new DataView(list.buffer, list.byteOffset, list.byteLength);
  // Offsets, not views: a view per attribute made the garbage collector half the work.
  const next = (off: number) => off + ((v.getUint16(off, true) + 3) & ~3);
  const end = (off: number) => off + v.getUint16(off, true);
  const typeAt = (off: number) => v.getUint16(off + 2, true) & 0x3fff;
  for (let el = 0; el + 4 <= list.length && end(el) <= list.length; el = next(el)) {
    let keyAt = -1, keyLength = 0, verdict: string | undefined, catchAll = false;
    for (let a = el + 4; a + 4 <= end(el); a = next(a)) {
      const at = typeAt(a);
      if (at === NFTA_SET_ELEM_KEY && typeAt(a + 4) === NFTA_DATA_VALUE) {
        keyAt = a + 8, keyLength = v.getUint16(a + 4, true) - 4;
      } else if (at === NFTA_SET_ELEM_DATA && typeAt(a + 4) === NFTA_DATA_VERDICT) {
        verdict = verdictAt(list, v, a + 8, end(a + 4));
      } else if (at === NFTA_SET_ELEM_FLAGS) {
        catchAll = (v.getUint32(a + 4) & NFT_SET_ELEM_CATCHALL) !== 0;
      }
    }
    // No key reads as a key of 0 bytes: refused as not of the type.
    const keyText = catchAll ? "*" : keyAtText(t, type, list, keyAt, keyLength);
    into.set(keyText, verdict !== undefined && t.verdict ? `${keyText} : ${verdict}` : keyText);
  }
}

function keyAtText(t: ElementType, type: string, b: Uint8Array, off: number, len: number): string {
  if (len !== t.keyLength) {
    throw new Error(
      `An element key of ${len} bytes is not of type ${type} (${t.keyLength} bytes)`,
    );
  }
  if (t.key.length === 1) return t.key[0].decode(b, off);
  const parts: string[] = [];
  for (const c of t.key) {
    parts.push(c.decode(b, off));
    off += pad4(c.size);
  }
  return parts.join(" . ");
}

// Chain names repeat across thousands of elements: decoded once each, found by their bytes.
const chainNames = new Map<string, string>();

/** The verdict in NFTA_DATA_VERDICT's attributes, from `off` to `stop`. */
function verdictAt(b: Uint8Array, v: DataView, off: number, stop: number): string {
  let code = NaN, chainAt = -1, chainLength = 0;
  for (let a = off; a + 4 <= stop; a += (v.getUint16(a, true) + 3) & ~3) {
    const type = v.getUint16(a + 2, true) & 0x3fff;
    if (type === NFTA_VERDICT_CODE) code = v.getInt32(a + 4);
    else if (type === NFTA_VERDICT_CHAIN) chainAt = a + 4, chainLength = v.getUint16(a, true) - 4;
  }
  if (code !== JUMP && code !== GOTO) {
    return Object.keys(VERDICT).find((k) => VERDICT[k] === code) ?? `verdict ${code}`;
  }
  let name = "?";
  if (chainAt >= 0) {
    let raw = "";
    for (let i = chainAt; i < chainAt + chainLength && b[i] !== 0; i++) {
      raw += String.fromCharCode(b[i]);
    }
    name = chainNames.get(raw) ?? decodeCString(b.subarray(chainAt, chainAt + chainLength));
    if (chainNames.size < 10000) chainNames.set(raw, name);
  }
  return `${code === JUMP ? "jump" : "goto"} ${name}`;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}
