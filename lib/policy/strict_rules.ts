// Strict mode's nftables side (DESIGN.md "contract — strictness"), pure: the forward rules that
// keep a connection cut once its conntrack entry is deleted, and the elements the agent adds
// for a cut UDP connection. Without them a cut does not hold: conntrack picks a connection up
// again from whatever packet comes next, and when that is the server's, the new entry runs
// server -> client, which no rule of the client's policy judges, and the client's packets then
// pass as its replies (tests/integration/strict_cut_test.ts for TCP, strict_test.ts for UDP).
//
// TCP (nf_conntrack_tcp_loose=1, the default, picks up mid-stream): a new connection must
// start with a SYN. UDP has no handshake to ask for: the agent puts the answer direction of
// each UDP connection it cuts into a timeout set, and a new flow in that direction is dropped
// (and its element refreshed, so a server that keeps sending stays cut). The client's next
// datagram is a new flow of its own and meets the rules that deny it; once a change allows it
// again, the server's datagrams are its replies (established) and never reach the set.
import type { NftSet } from "../nft/ruleset.ts";
import { flowKey, flowKeyType } from "./flow_log_rules.ts";
import type { Connection } from "./strict.ts";

/** A new TCP connection must begin with a SYN (no mid-stream pickup of a cut connection). */
export const NOT_SYN_RULE = "ct state new tcp flags & (fin | syn | rst | ack) != syn drop";

/** The sets of cut UDP connections' answer directions, per family. */
export const STRICT_CUT_SET: Readonly<Record<4 | 6, string>> = {
  4: "strict_cut4",
  6: "strict_cut6",
};

/**
 * Seconds a cut UDP flow's answers stay refused after the last one (refreshed by each):
 * conntrack's own UDP stream timeout (nf_conntrack_udp_timeout_stream, 120 s).
 */
export const STRICT_CUT_TIMEOUT_S = 120;
/** At most this many cut UDP flows per family are held (a full set refuses more: logged). */
export const STRICT_CUT_SIZE = 65536;

const UDP = 17;

/**
 * The forward chain's rules right after "replies are allowed": new TCP must be a SYN, and a
 * new flow answering a cut UDP connection is dropped.
 *
 * @example
 * ["ct state established,related accept", ...strictForwardRules(), ...policyRules];
 */
export function strictForwardRules(): string[] {
  return [
    NOT_SYN_RULE,
    ...([4, 6] as const).map((f) =>
      `ct state new ${flowKey(f)} @${STRICT_CUT_SET[f]} ` +
      `update @${STRICT_CUT_SET[f]} { ${flowKey(f)} } drop`
    ),
  ];
}

/**
 * The cut sets, dynamic: the agent adds their elements as it cuts (never the table's sync),
 * the timeout expires them.
 *
 * @example
 * for (const [name, set] of strictObjects()) sets.set(name, set);
 */
export function strictObjects(): ReadonlyMap<string, NftSet> {
  const set = (f: 4 | 6): NftSet => ({
    kind: "set",
    type: flowKeyType(f),
    interval: false,
    elements: new Map(),
    dynamic: { timeout: STRICT_CUT_TIMEOUT_S, size: STRICT_CUT_SIZE },
  });
  return new Map([[STRICT_CUT_SET[4], set(4)], [STRICT_CUT_SET[6], set(6)]]);
}

/**
 * The cut-set element of a UDP connection: its answer direction as packets show it in the
 * forward hook (the reply tuple: after a DNAT the answers come from the real server), with the
 * set it goes in; undefined for anything else (TCP is held by {@linkcode NOT_SYN_RULE}).
 *
 * @example
 * cutElement({ orig: { src: "10.244.1.2", dst: "10.244.2.3", proto: 17, sport: 40000, dport: 53 },
 *   reply: { src: "10.244.2.3", dst: "10.244.1.2", proto: 17, sport: 53, dport: 40000 } });
 * // { set: "strict_cut4", element: "10.244.2.3 . 10.244.1.2 . udp . 53 . 40000" }
 */
export function cutElement(c: Connection): { set: string; element: string } | undefined {
  const r = c.reply;
  if (r.proto !== UDP || r.sport === undefined || r.dport === undefined) return undefined;
  const f = r.src.includes(":") ? 6 : 4;
  return {
    set: STRICT_CUT_SET[f],
    element: `${r.src} . ${r.dst} . udp . ${r.sport} . ${r.dport}`,
  };
}
