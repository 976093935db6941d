// A small walker over the policy part of the rendered table (lib/policy/nft_rules.ts): it runs a
// new connection's first packet through the forward hook's rules, the verdict maps and the
// target chains (jump, goto, return, accept, drop; the flow log's lines, which decide nothing),
// reading sets as the kernel would. It knows
// exactly the rule forms the renderer writes and throws on anything else, so a new form cannot
// pass unread. A stand-in for the general packet tracer (tests/harness/nft_tracer.ts) until that
// one covers these tables.
import { formatIp, type Ip, parseCidr, parseIp } from "../../../lib/ip/cidr.ts";
import { cidrRange } from "../../../lib/ip/range.ts";
import type { Protocol } from "../../../lib/kube/policy_objects.ts";
import type { PolicyObjects } from "../../../lib/policy/nft_rules.ts";

/** The first packet of a connection. */
export interface Packet {
  readonly src: Ip;
  readonly dst: Ip;
  readonly protocol: Protocol;
  readonly port: number;
}

type Outcome = "accept" | "drop" | "return" | "end";

/**
 * What the forward hook does with `packet` in a table holding `objs` (after "replies are
 * allowed", which a first packet never meets): "accept" (the chain's policy included) or "drop".
 *
 * @example
 * forwardVerdict(policyObjects(plan), { src, dst, protocol: "TCP", port: 80 }); // "drop"
 */
export function forwardVerdict(objs: PolicyObjects, packet: Packet): "accept" | "drop" {
  const out = walk(objs, objs.forwardRules, packet, 0);
  return out === "drop" ? "drop" : "accept";
}

function walk(objs: PolicyObjects, rules: readonly string[], p: Packet, depth: number): Outcome {
  if (depth > 16) throw new Error("table walk: chains nest deeper than 16");
  for (const rule of rules) {
    const out = evaluate(objs, rule, p, depth);
    if (out !== "end") return out;
  }
  return "end";
}

/**
 * The flow log's rules before a drop (lib/policy/flow_log_rules.ts): they log a flow or count
 * it, and never decide, so a first packet goes on past them.
 */
const FLOW_LOG_LINE = new RegExp(
  String
    .raw`^(ip6?) saddr \. \1 daddr \. meta l4proto \. th sport \. th dport != @flowlog_seen[46] ` +
    String
      .raw`(?:limit name "flowlog" add @flowlog_seen[46] \{ \1 saddr \. \1 daddr \. meta l4proto \. ` +
    String.raw`th sport \. th dport \} log prefix "mycni:[ie]:[0-9a-f]{16}[^"]*" group [0-9]+|` +
    String.raw`counter name "flowlog_dropped")$`,
);

/** One rule: "end" when it does not match or its verdict lets the chain go on. */
function evaluate(objs: PolicyObjects, rule: string, p: Packet, depth: number): Outcome {
  if (FLOW_LOG_LINE.test(rule)) return "end";
  const t = rule.split(" ");
  let i = 0;
  while (i < t.length) {
    const tok = t[i];
    if (tok === "icmpv6") return "end"; // neighbour discovery: never a TCP, UDP or SCTP packet
    if (tok === "ip" || tok === "ip6") {
      const family = tok === "ip" ? 4 : 6;
      if (t[i + 2] === ".") {
        // ip saddr . ip daddr @selfN
        if (p.src.family !== family) return "end";
        const set = setOf(objs, t[i + 5]);
        const key = `${formatIp(p.src)} . ${formatIp(p.dst)}`;
        if (![...set.elements.values()].some((e) => sameKey(e, key))) return "end";
        i += 6;
        continue;
      }
      const addr = t[i + 1] === "saddr" ? p.src : t[i + 1] === "daddr" ? p.dst : undefined;
      if (addr === undefined) throw new Error(`table walk: cannot read ${JSON.stringify(rule)}`);
      if (addr.family !== family) return "end";
      if (t[i + 2] === "vmap") {
        const map = setOf(objs, t[i + 3]);
        const element = [...map.elements.values()].find((e) => sameIp(e.split(" : ")[0], addr));
        if (element === undefined) return "end";
        const [verb, chain] = element.split(" : ")[1].split(" ");
        if (verb !== "jump") throw new Error(`table walk: map verdict ${element}`);
        return call(objs, chain, p, depth, "jump");
      }
      if (!inSet(setOf(objs, t[i + 2]), addr)) return "end";
      i += 3;
      continue;
    }
    if (tok === "meta" && t[i + 1] === "l4proto") {
      if (t[i + 2] !== p.protocol.toLowerCase()) return "end";
      i += 3;
      continue;
    }
    if (tok === "th" && t[i + 1] === "dport") {
      const [lo, hi] = t[i + 2].split("-").map(Number);
      if (p.port < lo || p.port > (hi ?? lo)) return "end";
      i += 3;
      continue;
    }
    if (tok === "counter" && t[i + 1] === "name") {
      i += 3;
      continue;
    }
    if (tok === "accept" || tok === "drop" || tok === "return") return tok;
    if (tok === "jump" || tok === "goto") return call(objs, t[i + 1], p, depth, tok);
    throw new Error(`table walk: cannot read ${JSON.stringify(tok)} in ${JSON.stringify(rule)}`);
  }
  throw new Error(`table walk: rule without verdict ${JSON.stringify(rule)}`);
}

/**
 * Runs a chain. `jump` comes back here when it returns or ends; `goto` does not: its return or
 * end is the caller's return.
 */
function call(
  objs: PolicyObjects,
  name: string,
  p: Packet,
  depth: number,
  how: "jump" | "goto",
): Outcome {
  const chain = objs.chains.get(name);
  if (chain === undefined) throw new Error(`table walk: no chain ${name}`);
  const out = walk(objs, chain.rules, p, depth + 1);
  if (out === "accept" || out === "drop") return out;
  return how === "jump" ? "end" : "return";
}

function setOf(objs: PolicyObjects, ref: string) {
  const set = objs.sets.get(ref.replace(/^@/, ""));
  if (set === undefined) throw new Error(`table walk: no set ${ref}`);
  return set;
}

function inSet(set: ReturnType<typeof setOf>, addr: Ip): boolean {
  for (const e of set.elements.values()) {
    if (e.includes("-")) {
      const [a, b] = e.split("-").map((x) => parseIp(x));
      if (a.family === addr.family && addr.value >= a.value && addr.value <= b.value) return true;
    } else if (e.includes("/")) {
      const r = cidrRange(parseCidr(e));
      const fam = e.includes(":") ? 6 : 4;
      if (fam === addr.family && addr.value >= r.start && addr.value <= r.end) return true;
    } else if (sameIp(e, addr)) return true;
  }
  return false;
}

function sameIp(textIp: string, addr: Ip): boolean {
  const ip = parseIp(textIp);
  return ip.family === addr.family && ip.value === addr.value;
}

function sameKey(element: string, key: string): boolean {
  const [a, b] = element.split(" . ");
  const [c, d] = key.split(" . ");
  return sameIp(a, parseIp(c)) && sameIp(b, parseIp(d));
}
