// A packet tracer over the agent's table model (lib/nft/ruleset.ts NftTable): it walks one packet
// through the table's forward hook as the kernel would, rule by rule, set lookup by set lookup,
// so tests can ask what the rendered rules do rather than what the plan they came from says.
// The idea is kube-proxy's nftables tracer (kubernetes pkg/proxy/nftables/helpers_test.go); the
// code is our own. It reads exactly the grammar lib/policy/nft_rules.ts and
// lib/node/desired_table.ts emit and throws on anything else (a new match, a literal address, a
// negation, a set of the wrong type): a rule form it does not know is an error, never a guess.
// The flow log's statements (lib/policy/flow_log_rules.ts: `limit name`, `add @set`, `log`, a
// counter without a verdict) and strict mode's rules (lib/policy/strict_rules.ts: new TCP must
// be a SYN, the cut set) are read too: the dynamic sets they test are the kernel's, which the
// model holds none of, so a traced flow is never "seen" or "cut" (a traced packet is the first
// of its flow, or a later one of a connection conntrack knows).
// Addresses are parsed here, not with lib/ip/cidr.ts, so a formatting bug there cannot hide.
import type { NftSet, NftTable } from "../../lib/nft/ruleset.ts";

/** Transport protocols a traced packet can carry. */
export type L4Proto = "tcp" | "udp" | "sctp" | "icmpv6";

/** One packet at the forward hook. */
export interface TracePacket {
  readonly family: 4 | 6;
  readonly saddr: string;
  readonly daddr: string;
  readonly l4proto: L4Proto;
  /** TCP, UDP and SCTP only. */
  readonly dport?: number;
  /** ICMPv6 only: the type by its nft name, e.g. "nd-neighbor-solicit", "echo-request". */
  readonly icmpv6Type?: string;
  /** Conntrack's view: the first packet of a connection, or a later one (a reply included). */
  readonly ct: "new" | "established";
  /**
   * A new TCP packet that is not a SYN: what conntrack picks up mid-stream once an entry was
   * deleted (strict mode's rule drops it). A new TCP packet is a SYN unless this says so.
   */
  readonly midStream?: boolean;
}

/** What the table did with the packet. */
export interface TraceResult {
  readonly verdict: "accept" | "drop";
  /** The named counter the deciding rule counted into, if any. */
  readonly counter?: string;
  /** The rules that matched, in order (`chain[index] rule`), and the map lookups that missed. */
  readonly path: readonly string[];
  /** The prefixes of the `log` statements the packet met, in order (the flow log). */
  readonly logged: readonly string[];
}

/** Traces packets through one table's forward hook; built once per table. */
export type ForwardTracer = (packet: TracePacket) => TraceResult;

/**
 * A tracer for `table`'s forward hook. Parses the forward base chain and every regular chain up
 * front (base chains at other hooks, such as the masquerade chain, are not walked and not read),
 * and each set or map when a rule first refers to it; throws on anything it does not know.
 *
 * @example
 * const trace = forwardTracer(desiredTable({ clusterCidrs, podCIDRs, policy }));
 * trace({ family: 4, saddr: "10.244.2.3", daddr: "10.244.1.2", l4proto: "tcp", dport: 80,
 *   ct: "new" }).verdict; // "drop"
 */
export function forwardTracer(table: NftTable): ForwardTracer {
  const compiled = compileTable(table);
  return (packet) => {
    checkPacket(packet);
    const path: string[] = [];
    const logged: string[] = [];
    const out = runChain(compiled, compiled.forward, packet, { path, logged }, 0);
    if (out.kind === "final") return { verdict: out.verdict, counter: out.counter, path, logged };
    path.push(`forward: policy ${compiled.policy}`);
    return { verdict: compiled.policy, path, logged };
  };
}

// ---- the compiled table ----

type Dir = "saddr" | "daddr";

interface Field {
  readonly family: 4 | 6;
  readonly dir: Dir;
}

type Match = (p: TracePacket) => boolean;

type Action =
  | { readonly kind: "verdict"; readonly verdict: "accept" | "drop" | "return"; counter?: string }
  | { readonly kind: "vmap"; readonly field: Field; readonly map: string; readonly jumps: Jumps }
  | { readonly kind: "goto"; readonly chain: string }
  /** Statements only (the flow log's): the packet goes on to the next rule. */
  | { readonly kind: "continue" };

/** A verdict map's elements: address value -> the chain it jumps to. */
type Jumps = ReadonlyMap<bigint, string>;

interface Rule {
  readonly text: string;
  readonly matches: readonly Match[];
  readonly action: Action;
  /** The prefix of its `log` statement. */
  readonly log?: string;
}

interface Compiled {
  readonly forward: string;
  readonly policy: "accept" | "drop";
  readonly chains: ReadonlyMap<string, readonly Rule[]>;
}

/** What a chain walk ended with: a final verdict, or back to the caller. */
type Outcome =
  | { readonly kind: "final"; readonly verdict: "accept" | "drop"; readonly counter?: string }
  | { readonly kind: "continue" };

// The kernel refuses rulesets that jump deeper than this (NFT_JUMP_STACK_SIZE).
const MAX_DEPTH = 16;

/** What a walk records: the rules met, the prefixes logged. */
interface Walk {
  readonly path: string[];
  readonly logged: string[];
}

function runChain(t: Compiled, chain: string, p: TracePacket, w: Walk, depth: number): Outcome {
  if (depth > MAX_DEPTH) throw new Error(`Jumps nest deeper than ${MAX_DEPTH} at chain ${chain}`);
  const rules = t.chains.get(chain)!;
  for (const [i, rule] of rules.entries()) {
    if (!rule.matches.every((m) => m(p))) continue;
    const a = rule.action;
    if (a.kind === "vmap") {
      const target = a.jumps.get(addressOf(p, a.field));
      if (target === undefined) {
        w.path.push(`${chain}[${i}] ${rule.text}: no element for ${fieldText(p, a.field)}`);
        continue;
      }
      w.path.push(`${chain}[${i}] ${rule.text}: ${fieldText(p, a.field)} : jump ${target}`);
      const out = runChain(t, target, p, w, depth + 1);
      if (out.kind === "final") return out;
      continue;
    }
    w.path.push(`${chain}[${i}] ${rule.text}`);
    if (rule.log !== undefined) w.logged.push(rule.log);
    if (a.kind === "continue") continue;
    // `goto` leaves no return address: the target's return or end is this chain's.
    if (a.kind === "goto") return runChain(t, a.chain, p, w, depth + 1);
    if (a.verdict === "return") return { kind: "continue" };
    return { kind: "final", verdict: a.verdict, counter: a.counter };
  }
  return { kind: "continue" }; // the end of a regular chain returns; the base chain's policy
}

function compileTable(table: NftTable): Compiled {
  const forwardChains = [...table.chains].filter(([, c]) => c.decl && hookOf(c.decl) === "forward");
  if (forwardChains.length !== 1) {
    throw new Error(`Table ${table.name} has ${forwardChains.length} forward base chains, want 1`);
  }
  const [forward, base] = forwardChains[0];
  const policy = basePolicy(base.decl!);
  const sets = new SetReader(table);
  const chains = new Map<string, Rule[]>();
  for (const [name, chain] of table.chains) {
    if (chain.decl && name !== forward) continue; // another hook: not on a forwarded packet's way
    chains.set(name, chain.rules.map((r) => parseRule(r, { table, sets })));
  }
  return { forward, policy, chains };
}

function hookOf(decl: string): string {
  const m = decl.match(/^type (filter|nat|route) hook (\w+) priority (\S+); policy (\w+);$/);
  if (!m) throw new Error(`Cannot read base chain declaration "${decl}"`);
  return m[2];
}

function basePolicy(decl: string): "accept" | "drop" {
  const m = decl.match(/^type filter hook forward priority filter; policy (accept|drop);$/);
  if (!m) throw new Error(`Cannot read forward chain declaration "${decl}"`);
  return m[1] as "accept" | "drop";
}

// ---- rules ----

const CT_STATES = ["new", "established", "related", "invalid", "untracked"];
const ICMPV6_TYPES = [
  "destination-unreachable",
  "packet-too-big",
  "time-exceeded",
  "parameter-problem",
  "echo-request",
  "echo-reply",
  "nd-router-solicit",
  "nd-router-advert",
  "nd-neighbor-solicit",
  "nd-neighbor-advert",
  "nd-redirect",
];
const PORT_PROTOS = ["tcp", "udp", "sctp"];

interface RuleContext {
  readonly table: NftTable;
  readonly sets: SetReader;
}

/**
 * One rule: matches left to right, then one statement (`accept`, `drop`, `return`, a vmap, or
 * `counter name X` before a verdict), which must end the rule.
 */
function parseRule(text: string, ctx: RuleContext): Rule {
  // Quoted strings are one token (a log prefix may hold commas).
  const tokens = text.match(/"[^"]*"|[{},()]|[^\s{},()"]+/g) ?? [];
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`Cannot trace rule "${text}": ${why}`);
  };
  const next = (): string => (i < tokens.length ? tokens[i++] : fail("it ends too early"));
  const expect = (word: string) => {
    const got = next();
    if (got !== word) fail(`want "${word}" at token ${i}, got "${got}"`);
  };
  /** `a,b` or `{ a, b }`, each word in `allowed`. */
  const words = (allowed: readonly string[], braces: boolean): Set<string> => {
    const out = new Set<string>();
    const braced = braces && tokens[i] === "{";
    if (braced) i++;
    for (;;) {
      const w = next();
      if (!allowed.includes(w)) fail(`unknown value "${w}"`);
      out.add(w);
      if (tokens[i] !== ",") break;
      i++;
    }
    if (braced) expect("}");
    return out;
  };
  const field = (first: string): Field => {
    const family = first === "ip" ? 4 : first === "ip6" ? 6 : fail(`"${first}" is not ip or ip6`);
    const dir = next();
    if (dir !== "saddr" && dir !== "daddr") fail(`"${first} ${dir}" is not an address field`);
    return { family, dir: dir as Dir };
  };

  /** The rest of a flow key after its first `ip saddr`: `. ip daddr . meta l4proto . th ...`. */
  const flowKeyRest = (family: 4 | 6) => {
    for (const w of [".", family === 4 ? "ip" : "ip6", "daddr", ".", "meta", "l4proto"]) expect(w);
    for (const w of [".", "th", "sport", ".", "th", "dport"]) expect(w);
  };
  const quoted = (): string => {
    const w = next();
    if (!/^"[^"]*"$/.test(w)) fail(`"${w}" is not a quoted string`);
    return w.slice(1, -1);
  };
  const matches: Match[] = [];
  let proto: string | undefined; // the `meta l4proto` a `th dport` depends on
  let counter: string | undefined;
  let action: Action | undefined;
  let statements = false; // non-terminal statements (the flow log's) so far
  let log: string | undefined;
  while (i < tokens.length) {
    if (action) fail(`"${tokens.slice(i).join(" ")}" after the statement`);
    const t = next();
    if (counter !== undefined && !["accept", "drop", "return"].includes(t)) {
      fail("a counter must be followed by its verdict or end the rule");
    }
    switch (t) {
      case "tcp": {
        // Strict mode: a new TCP connection must start with a SYN.
        for (const w of ["flags", "&", "(", "fin", "|", "syn", "|", "rst", "|", "ack", ")"]) {
          expect(w);
        }
        expect("!=");
        expect("syn");
        matches.push((p) => p.l4proto === "tcp" && p.midStream === true);
        break;
      }
      case "limit": {
        expect("name");
        const name = quoted();
        if (!ctx.table.limits?.has(name)) fail(`limit "${name}" is not declared`);
        statements = true; // traced packets are under the rate
        break;
      }
      case "add":
      case "update": {
        const name = setName(next(), fail);
        expect("{");
        const first = next();
        const f = field(first);
        if (f.dir !== "saddr") fail(`a flow key starts with ${first} saddr`);
        flowKeyRest(f.family);
        expect("}");
        ctx.sets.dynamicFlowSet(name, f.family, fail);
        statements = true;
        break;
      }
      case "log": {
        expect("prefix");
        log = quoted();
        expect("group");
        if (!/^[0-9]+$/.test(next())) fail("a log group is a number");
        statements = true;
        break;
      }
      case "goto": {
        const chain = next();
        const target = ctx.table.chains.get(chain);
        if (!target) fail(`goto ${chain}: the table has no such chain`);
        if (target!.decl) fail(`goto ${chain}: a base chain`);
        action = { kind: "goto", chain };
        break;
      }
      case "ct": {
        expect("state");
        const states = words(CT_STATES, false);
        matches.push((p) => states.has(p.ct));
        break;
      }
      case "icmpv6": {
        expect("type");
        const types = words(ICMPV6_TYPES, true);
        matches.push((p) => p.l4proto === "icmpv6" && types.has(p.icmpv6Type!));
        break;
      }
      case "ip":
      case "ip6": {
        const fields = [field(t)];
        if (tokens[i] === "." && tokens[i + 3] === ".") {
          // A flow key (addresses, protocol, both ports) tested against a dynamic set.
          const family = fields[0].family;
          if (fields[0].dir !== "saddr") fail("a flow key starts with the source address");
          flowKeyRest(family);
          const negated = tokens[i] === "!=";
          if (negated) i++;
          ctx.sets.dynamicFlowSet(setName(next(), fail), family, fail);
          // The kernel's elements: the model holds none, so a traced packet is in no such set.
          matches.push((p) => p.family === family && negated);
          break;
        }
        if (tokens[i] === ".") {
          i++;
          fields.push(field(next()));
        }
        const word = next();
        if (word === "vmap") {
          if (fields.length !== 1) fail("a vmap on a concatenation");
          const map = setName(next(), fail);
          const jumps = ctx.sets.verdictMap(map, fields[0], fail);
          const family = fields[0].family; // `ip saddr` only looks at IPv4 packets
          matches.push((p) => p.family === family);
          action = { kind: "vmap", field: fields[0], map, jumps };
        } else {
          const lookup = ctx.sets.lookup(setName(word, fail), fields, fail);
          matches.push((p) => fields.every((f) => f.family === p.family) && lookup(p));
        }
        break;
      }
      case "meta": {
        expect("l4proto");
        const want = next();
        if (!PORT_PROTOS.includes(want)) fail(`unknown l4proto "${want}"`);
        proto = want;
        matches.push((p) => p.l4proto === want);
        break;
      }
      case "th": {
        expect("dport");
        // `th dport` reads the two bytes where TCP, UDP and SCTP keep the port, whatever the
        // packet carries: without a protocol match before it, it would match ICMPv6 bytes too.
        if (proto === undefined) fail("th dport without a meta l4proto before it");
        const [lo, hi] = portRange(next(), fail);
        matches.push((p) => p.dport! >= lo && p.dport! <= hi);
        break;
      }
      case "counter": {
        expect("name");
        const name = next().replace(/^"(.*)"$/, "$1");
        if (!ctx.table.counters.includes(name)) fail(`counter "${name}" is not declared`);
        counter = name;
        break;
      }
      case "accept":
      case "drop":
      case "return":
        action = { kind: "verdict", verdict: t, counter };
        break;
      default:
        fail(`unknown token "${t}"`);
    }
  }
  if (!action && (statements || counter !== undefined)) action = { kind: "continue" };
  if (!action) fail("it has no statement");
  return { text, matches, action: action!, ...(log !== undefined ? { log } : {}) };
}

function setName(word: string, fail: (why: string) => never): string {
  if (!/^@[A-Za-z0-9_]+$/.test(word)) fail(`"${word}" is not a named set (@name)`);
  return word.slice(1);
}

function portRange(word: string, fail: (why: string) => never): [number, number] {
  const m = word.match(/^([0-9]+)(?:-([0-9]+))?$/);
  if (!m) fail(`"${word}" is not a port or port range`);
  const lo = Number(m![1]), hi = Number(m![2] ?? m![1]);
  if (lo < 1 || hi > 65535 || lo > hi) fail(`"${word}" is not a port range within 1-65535`);
  return [lo, hi];
}

// ---- sets and maps ----

const ADDR_TYPE: Record<4 | 6, string> = { 4: "ipv4_addr", 6: "ipv6_addr" };

/** Reads each set once, checking its declaration against the rule that uses it. */
class SetReader {
  readonly #table: NftTable;
  readonly #lookups = new Map<string, (p: TracePacket) => boolean>();
  readonly #maps = new Map<string, Jumps>();

  constructor(table: NftTable) {
    this.#table = table;
  }

  /** A lookup of `fields` (concatenated when two) in set `name`. */
  lookup(name: string, fields: Field[], fail: (why: string) => never): (p: TracePacket) => boolean {
    const set = this.#get(name, "set", fail);
    const want = fields.map((f) => ADDR_TYPE[f.family]).join(" . ");
    if (set.type !== want) fail(`set ${name} holds ${set.type}, the rule looks up ${want}`);
    const key = `${name}\n${fields.map((f) => f.dir).join(".")}`;
    let fn = this.#lookups.get(key);
    if (fn !== undefined) return fn;
    if (fields.length === 1) {
      const ranges = readAddressSet(name, set, fields[0].family);
      const f = fields[0];
      if (set.interval) {
        fn = (p) => {
          const v = addressOf(p, f);
          return ranges.some(([lo, hi]) => v >= lo && v <= hi);
        };
      } else {
        const values = new Set(ranges.map(([v]) => v));
        fn = (p) => values.has(addressOf(p, f));
      }
    } else {
      if (set.interval) fail(`set ${name}: a concatenation with flags interval`);
      const keys = new Set<string>();
      for (const el of set.elements.values()) {
        const parts = el.split(" . ");
        if (parts.length !== fields.length) {
          fail(`set ${name}: element "${el}" has the wrong shape`);
        }
        keys.add(parts.map((a, j) => parseAddress(a, fields[j].family, name)).join("."));
      }
      fn = (p) => keys.has(fields.map((f) => addressOf(p, f)).join("."));
    }
    this.#lookups.set(key, fn);
    return fn;
  }

  /**
   * Checks that `name` is a dynamic set of flow keys of `family` (the flow log's seen sets,
   * strict mode's cut sets): its elements are the kernel's, not the model's.
   */
  dynamicFlowSet(name: string, family: 4 | 6, fail: (why: string) => never): void {
    const set = this.#get(name, "set", fail);
    const a = ADDR_TYPE[family];
    const want = `${a} . ${a} . inet_proto . inet_service . inet_service`;
    if (set.type !== want) fail(`set ${name} holds ${set.type}, the rule looks up ${want}`);
    if (!set.dynamic) fail(`set ${name} is not dynamic: the rule's flows would be the model's`);
  }

  /** The elements of verdict map `name`, keyed by `field`'s address. */
  verdictMap(name: string, field: Field, fail: (why: string) => never): Jumps {
    const map = this.#get(name, "map", fail);
    const want = `${ADDR_TYPE[field.family]} : verdict`;
    if (map.type !== want) fail(`map ${name} is ${map.type}, the rule wants ${want}`);
    if (map.interval) fail(`map ${name}: flags interval`);
    let jumps = this.#maps.get(name);
    if (jumps !== undefined) return jumps;
    const out = new Map<bigint, string>();
    for (const el of map.elements.values()) {
      const m = el.match(/^(\S+) : jump ([A-Za-z0-9_]+)$/);
      if (!m) fail(`map ${name}: cannot read element "${el}"`);
      const key = parseAddress(m![1], field.family, name);
      if (out.has(key)) fail(`map ${name}: two elements for ${m![1]}`);
      const chain = this.#table.chains.get(m![2]);
      if (!chain) fail(`map ${name}: element "${el}" jumps to a chain the table does not have`);
      if (chain!.decl) fail(`map ${name}: element "${el}" jumps to a base chain`);
      out.set(key, m![2]);
    }
    this.#maps.set(name, jumps = out);
    return jumps;
  }

  #get(name: string, kind: "set" | "map", fail: (why: string) => never): NftSet {
    const set = this.#table.sets.get(name);
    if (!set) fail(`the table has no ${kind} ${name}`);
    if (set!.kind !== kind) fail(`${name} is a ${set!.kind}, the rule wants a ${kind}`);
    return set!;
  }
}

/**
 * A set of single addresses (plain) or of addresses, prefixes and ranges (interval), as sorted
 * inclusive ranges. Checks what nft would refuse: a range in a plain set, intervals that
 * overlap (nft wants them disjoint when the set does not merge), a prefix with host bits set.
 */
function readAddressSet(name: string, set: NftSet, family: 4 | 6): [bigint, bigint][] {
  const ranges: [bigint, bigint][] = [];
  for (const el of set.elements.values()) {
    if (!set.interval) {
      const v = parseAddress(el, family, name);
      ranges.push([v, v]);
      continue;
    }
    ranges.push(parseInterval(el, family, name));
  }
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] > ranges[i - 1][1]) continue;
    // A plain set may list an address twice (nft keeps one); an interval set may not overlap.
    if (!set.interval && ranges[i][0] === ranges[i - 1][0]) continue;
    throw new Error(`Set ${name}: elements overlap near ${set.interval ? "an interval" : "one"}`);
  }
  return ranges;
}

function parseInterval(el: string, family: 4 | 6, set: string): [bigint, bigint] {
  const bits = family === 4 ? 32 : 128;
  if (el.includes("/")) {
    const [addr, len] = el.split("/");
    if (!/^[0-9]+$/.test(len) || Number(len) > bits) {
      throw new Error(`Set ${set}: bad prefix in "${el}"`);
    }
    const start = parseAddress(addr, family, set);
    const host = (1n << BigInt(bits - Number(len))) - 1n;
    if ((start & host) !== 0n) throw new Error(`Set ${set}: "${el}" has host bits set`);
    return [start, start | host];
  }
  if (el.includes("-")) {
    const [a, b] = el.split("-");
    const lo = parseAddress(a, family, set), hi = parseAddress(b, family, set);
    if (lo > hi) throw new Error(`Set ${set}: range "${el}" runs backwards`);
    return [lo, hi];
  }
  const v = parseAddress(el, family, set);
  return [v, v];
}

// ---- addresses ----

const addressCache = new Map<string, bigint>();

/** The address `text` of `family` as a number; throws on any other text. */
function parseAddress(text: string, family: 4 | 6, where: string): bigint {
  const cacheKey = `${family}/${text}`;
  const hit = addressCache.get(cacheKey);
  if (hit !== undefined) return hit;
  const v = family === 4 ? parseV4(text) : parseV6(text);
  if (v === undefined) throw new Error(`${where}: "${text}" is not an IPv${family} address`);
  addressCache.set(cacheKey, v);
  return v;
}

function parseV4(text: string): bigint | undefined {
  const m = text.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (!m) return undefined;
  let v = 0n;
  for (const part of m.slice(1)) {
    if (Number(part) > 255 || (part.length > 1 && part[0] === "0")) return undefined;
    v = v * 256n + BigInt(part);
  }
  return v;
}

function parseV6(text: string): bigint | undefined {
  if (!/^[0-9a-f:]+$/.test(text)) return undefined; // lower case, no embedded IPv4: as we print
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0]), tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let v = 0n;
  for (const g of all) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

function addressOf(p: TracePacket, f: Field): bigint {
  return parseAddress(f.dir === "saddr" ? p.saddr : p.daddr, p.family, "packet");
}

function fieldText(p: TracePacket, f: Field): string {
  return f.dir === "saddr" ? p.saddr : p.daddr;
}

function checkPacket(p: TracePacket): void {
  parseAddress(p.saddr, p.family, "packet saddr");
  parseAddress(p.daddr, p.family, "packet daddr");
  if (p.l4proto === "icmpv6") {
    if (p.family !== 6 || !ICMPV6_TYPES.includes(p.icmpv6Type ?? "")) {
      throw new Error(`Packet: ICMPv6 needs IPv6 and a known type, got ${JSON.stringify(p)}`);
    }
  } else if (!Number.isInteger(p.dport) || p.dport! < 1 || p.dport! > 65535) {
    throw new Error(`Packet: ${p.l4proto} needs a dport 1-65535, got ${JSON.stringify(p)}`);
  }
}
