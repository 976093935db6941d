// Set and map elements of the agent's table straight over nfnetlink: a pod that starts or stops
// changes elements only, in one batch (one transaction), without an `nft` process (which would
// start, and read the table's sets before every change). And the elements read back, for the
// periodic check. Structure (chains, rules, set declarations, interval sets) stays with `nft -f`.
import { NETLINK_NETFILTER, NetlinkError, Rtnl } from "../net/netlink.ts";
import { NFNL_SUBSYS_NFTABLES, sendBatch } from "../net/nfnetlink.ts";
import {
  decodeElements,
  ELEMENT_MSG,
  type ElementChange,
  type ElementMessage,
  encodeElementDump,
  encodeElementMessages,
} from "./element_codec.ts";
import { NFT_TABLE } from "./ruleset.ts";

export type { ElementChange } from "./element_codec.ts";

const ENOENT = 2;
const DEFAULT_TABLE = `${NFT_TABLE.family} ${NFT_TABLE.name}`;

/** Where: a netns path (else ours), and the table (else `inet mycni`). */
export interface ElementOptions {
  readonly netns?: string;
  readonly table?: string;
}

/**
 * Writes `changes` to the kernel as one nfnetlink batch (BATCH_BEGIN, NEWSETELEM / DELSETELEM
 * messages, BATCH_END) in one sendto, with an ack asked for and read for every message. All or
 * nothing: when the kernel refuses one message it applies none of them (it aborts the
 * transaction), and this throws a NetlinkError naming the refused change (op, set, element),
 * errno's text and the kernel's reason. See {@linkcode ElementChange} for what add and delete
 * do with elements that are there or not.
 *
 * @example
 * applyElementChanges([
 *   { op: "add", set: "ingress4", type: "ipv4_addr : verdict", element: "10.244.1.7 : jump ing_1f" },
 *   { op: "add", set: "self4", type: "ipv4_addr . ipv4_addr", element: "10.244.1.7 . 10.244.1.7" },
 * ]);
 */
export function applyElementChanges(
  changes: readonly ElementChange[],
  opts: ElementOptions = {},
): void {
  const table = opts.table ?? DEFAULT_TABLE;
  const messages = encodeElementMessages(table, changes);
  if (messages.length === 0) return;
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  const what = `element batch of ${changes.length} changes to table ${table}`;
  const refused = sendBatch(nl, NFNL_SUBSYS_NFTABLES, messages, what);
  if (refused.length === 0) return;
  // The first refusal names what was wrong; the kernel reports every refused message.
  const first = refused.find((r) => r.index >= 0) ?? refused[0];
  const more = refused.length > 1 ? `; ${refused.length - 1} more refused` : "";
  const none = `none of the batch's ${changes.length} changes applied${more}`;
  if (first.index < 0) {
    throw new NetlinkError(`commit ${what} (${none})`, nl.netns, first.errno, first.message);
  }
  const msg = messages[first.index];
  throw new NetlinkError(
    `${describe(table, msg, first.offset)} (message ${
      first.index + 1
    } of ${messages.length}, ${none})`,
    nl.netns,
    first.errno,
    first.message,
  );
}

/** The refused change as the nft command it is; the whole message when no element is at fault. */
function describe(table: string, msg: ElementMessage, offset: number | undefined): string {
  const c = msg.changes[0];
  let i = offset === undefined ? -1 : msg.offsets.findLastIndex((o) => o <= offset);
  // An offset before the first element points at the table or set name.
  if (i >= 0 && offset! < msg.offsets[0]) i = -1;
  if (i >= 0) return `${c.op} element ${table} ${c.set} { ${msg.changes[i].element} }`;
  const n = msg.changes.length;
  return `${c.op} element ${table} ${c.set} { ${c.element}${n > 1 ? `, ... (${n})` : ""} }`;
}

/**
 * The elements the kernel holds in one set or map, by key, each in the text lib/nft/ruleset.ts
 * writes (`10.0.0.1`, `10.0.0.1 . 10.0.0.1`, `10.0.0.1 : jump ing_x`): comparable with an
 * NftSet's `elements`. One GETSETELEM dump, no process. Undefined when the table or set does
 * not exist. The caller names the set's type (the kernel's listing has bytes, not types); a key
 * of another length than the type's throws. Interval sets are refused (their elements are
 * start and end keys; `nft` lists them).
 *
 * @example
 * listSetElements({ name: "ingress4", type: "ipv4_addr : verdict" });
 * // Map { "10.244.1.7" => "10.244.1.7 : jump ing_1f" }
 */
export function listSetElements(
  set: { readonly name: string; readonly type: string; readonly interval?: boolean },
  opts: ElementOptions = {},
): Map<string, string> | undefined {
  const table = opts.table ?? DEFAULT_TABLE;
  const what = `nft list set ${table} ${set.name}`;
  if (set.interval) {
    throw new Error(`Cannot ${what} over nfnetlink: it is an interval set; nft lists those`);
  }
  using nl = Rtnl.open(opts.netns, NETLINK_NETFILTER);
  const out = new Map<string, string>();
  try {
    nl.dumpEach(ELEMENT_MSG.get, encodeElementDump(table, set.name), what, (type, body) => {
      if (type === ELEMENT_MSG.new) decodeElements(set.type, body, out);
    });
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENOENT) return undefined;
    if (err instanceof NetlinkError) throw err;
    throw new Error(`${what} (nfnetlink, in ${nl.netns}): ${(err as Error).message}`);
  }
  return out;
}
