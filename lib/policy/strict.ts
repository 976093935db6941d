// Strict mode (DESIGN.md "contract — strictness"), pure: which established connections a
// policy change now denies. Two steps: the addresses whose allowed set may have shrunk between
// two compiled plans (what the conntrack dump is filtered by), then, of the entries touching
// them, the ones whose connection the new state denies (what is deleted, so the connection's
// next packet meets the rules). An entry is one connection in both directions: it is judged
// by its original direction only, so the replies of an allowed connection are never cut.
import { type Family, formatIp, parseIp } from "../ip/cidr.ts";
import { type IpRange, subtractRanges } from "../ip/range.ts";
import type {
  AddressSet,
  AllowRule,
  ClusterRule,
  DirectionPlan,
  PolicyPlan,
  PortMatch,
  TargetPlan,
  TierRules,
} from "./plan.ts";

/** One direction of a conntrack entry (lib/net/conntrack.ts ConntrackTuple has this shape). */
export interface ConnTuple {
  readonly src: string;
  readonly dst: string;
  /** IP protocol number. */
  readonly proto: number;
  readonly sport?: number;
  readonly dport?: number;
}

/** A conntrack entry as strict mode reads it: the initiator's tuple and the answers'. */
export interface Connection {
  readonly orig: ConnTuple;
  readonly reply: ConnTuple;
}

/** The flow a connection is judged as. */
export interface JudgedFlow {
  readonly src: string;
  readonly dst: string;
  /** IP protocol number. */
  readonly proto: number;
  readonly dport?: number;
}

/**
 * The flow the policy rules saw when the connection began: from the initiator to the address
 * and port the packet reached in the forward hook, i.e. after a DNAT in prerouting (a
 * Service, a hostPort), which is where the reply comes from (the reply tuple's source). A
 * masquerade happens after the forward hook, so the initiator's own address is the source.
 *
 * @example
 * connectionFlow({ orig: { src: "10.244.1.2", dst: "10.96.0.10", proto: 6, dport: 80 },
 *   reply: { src: "10.244.2.3", dst: "10.244.1.2", proto: 6, sport: 8080 } });
 * // { src: "10.244.1.2", dst: "10.244.2.3", proto: 6, dport: 8080 }
 */
export function connectionFlow(c: Connection): JudgedFlow {
  const dport = c.reply.sport ?? c.orig.dport;
  return {
    src: c.orig.src,
    dst: c.reply.src,
    proto: c.orig.proto,
    ...(dport !== undefined ? { dport } : {}),
  };
}

/**
 * The entries to delete: those whose connection `allowed` (the new state's verdict, e.g.
 * explain over it) denies, of those touching `opts.addresses` when given. Each distinct flow
 * is judged once (a client's many connections to one port share a verdict).
 *
 * @example
 * for (const e of connectionsToCut(listConntrack({ addresses }), judge, { addresses })) {
 *   deleteConntrackEntry(e);
 * }
 */
export function connectionsToCut<C extends Connection>(
  entries: readonly C[],
  allowed: (flow: JudgedFlow) => boolean,
  opts: { readonly addresses?: readonly string[] } = {},
): C[] {
  const touch = opts.addresses && new Set(opts.addresses);
  const verdicts = new Map<string, boolean>();
  return entries.filter((e) => {
    if (
      touch && !touch.has(e.orig.src) && !touch.has(e.orig.dst) && !touch.has(e.reply.src) &&
      !touch.has(e.reply.dst)
    ) return false;
    const flow = connectionFlow(e);
    const key = `${flow.src} ${flow.dst} ${flow.proto} ${flow.dport ?? ""}`;
    let ok = verdicts.get(key);
    if (ok === undefined) verdicts.set(key, ok = allowed(flow));
    return !ok;
  });
}

/**
 * Removed peers of one target are listed address by address up to this many; past it (an
 * ipBlock narrowed) the target's own address stands for them all.
 */
const LIST_LIMIT = 256n;

/**
 * The addresses whose allowed connections may have shrunk from `prev` to `next` (both this
 * node's plans): a target that became isolated in a direction, or whose rules lost ports or
 * changed; and, where a rule only lost peers (a pod gone or relabeled, a namespace's label
 * changed), those peers' addresses rather than the target's, so a busy server is not dumped
 * whole for one client. A target whose ClusterNetworkPolicy rules changed in any way (a Deny
 * added, an Accept or Pass gone, a priority or peers changed) stands for itself: tiers decide in
 * order, so a change anywhere can deny anything. A superset is safe (every entry is judged
 * again); a missed address would leave a denied connection open. Canonical addresses, sorted.
 *
 * @example
 * const addresses = affectedAddresses(previousPlan, plan);
 * const cut = connectionsToCut(listConntrack({ addresses }), judge, { addresses });
 */
export function affectedAddresses(prev: PolicyPlan | undefined, next: PolicyPlan): string[] {
  const before = byAddress(prev);
  const out = new Set<string>();
  for (const t of next.targets) {
    for (const ip of t.ips) {
      const f: Family = ip.includes(":") ? 6 : 4;
      for (const dir of ["ingress", "egress"] as const) {
        const now = t[dir];
        if (!now) continue; // not isolated: everything is allowed
        const was = before.get(ip)?.[dir];
        const shrunk = was ? shrinkage(was, now, f) : "target";
        if (shrunk === "target") out.add(ip);
        else for (const peer of shrunk) out.add(peer);
      }
      if (t.cluster && tiersKey(t.cluster) !== tiersKey(before.get(ip)?.cluster)) out.add(ip);
    }
  }
  return [...out].sort();
}

type Directions = {
  ingress?: DirectionPlan;
  egress?: DirectionPlan;
  cluster?: TargetPlan["cluster"];
};

function byAddress(plan: PolicyPlan | undefined): Map<string, Directions> {
  const out = new Map<string, Directions>();
  for (const t of plan?.targets ?? []) {
    for (const ip of t.ips) {
      out.set(ip, { ingress: t.ingress, egress: t.egress, cluster: t.cluster });
    }
  }
  return out;
}

// Subjects of one ClusterNetworkPolicy share its tier objects: each is written out once.
const tierKeys = new WeakMap<object, string>();

/** A target's ClusterNetworkPolicy rules as text, equal exactly when they decide the same. */
function tiersKey(c: TargetPlan["cluster"]): string {
  if (c === undefined) return "";
  let key = tierKeys.get(c);
  if (key === undefined) {
    const dir = (t: TierRules | undefined) =>
      t === undefined
        ? "-"
        : `${t.admin.map(clusterRuleKey).join(";")}|${t.baseline.map(clusterRuleKey).join(";")}`;
    tierKeys.set(c, key = `${dir(c.ingress)}/${dir(c.egress)}`);
  }
  return key;
}

function clusterRuleKey(r: ClusterRule): string {
  const peers = r.peers === "any"
    ? "any"
    : [...r.peers.v4, ...r.peers.v6].map((p) => `${p.start}-${p.end}`).join(",");
  const ports = r.ports === "any"
    ? "any"
    : r.ports.map((p) =>
      p.kind === "named"
        ? `${portKey(p)}=${p.endpoints.map((e) => `${e.ip}:${e.port}`).join(",")}`
        : portKey(p)
    ).join(",");
  return `${r.tier}:${r.priority}:${r.action}:${r.policy}#${r.rule}:${peers}:${ports}`;
}

/**
 * What one direction of a target lost: nothing ([]), the addresses of family `f` no longer
 * allowed by some rule, or "target" when the loss is not a list of peers (ports, rules gone).
 */
function shrinkage(was: DirectionPlan, now: DirectionPlan, f: Family): string[] | "target" {
  const nowRules = new Map(now.allow.map((r) => [ruleKey(r), r]));
  const removed: IpRange[] = [];
  for (const old of was.allow) {
    const cur = nowRules.get(ruleKey(old));
    if (!cur) return "target"; // a rule gone, or its ports changed
    if (old.peers !== "any") {
      if (cur.peers === "any") continue;
      removed.push(...subtractRanges(family(old.peers, f), family(cur.peers, f)));
    } else if (cur.peers !== "any") return "target";
    if (old.ports === "any" || cur.ports === "any") continue;
    for (const [i, p] of old.ports.entries()) {
      const q = cur.ports[i];
      if (p.kind !== "named" || q.kind !== "named") continue;
      // An egress named port: destinations that no longer resolve to that port number.
      const kept = new Set(q.endpoints.map((e) => `${e.ip} ${e.port}`));
      for (const e of p.endpoints) {
        if (!kept.has(`${e.ip} ${e.port}`) && e.ip.includes(":") === (f === 6)) {
          removed.push(addressRange(e.ip));
        }
      }
    }
  }
  let size = 0n;
  for (const r of removed) size += r.end - r.start + 1n;
  if (size > LIST_LIMIT) return "target";
  const out: string[] = [];
  for (const r of removed) {
    for (let v = r.start; v <= r.end; v++) out.push(formatIp({ family: f, value: v }));
  }
  return out;
}

/** A rule's identity apart from its peers: the policy, the rule, what ports it matches. */
function ruleKey(r: AllowRule): string {
  const ports = r.ports === "any" ? "any" : r.ports.map(portKey).join(",");
  return `${r.policy}#${r.rule}#${ports}`;
}

function portKey(p: PortMatch): string {
  return p.kind === "range"
    ? `${p.protocol}:${p.port}-${p.endPort}`
    : `${p.protocol}:named:${p.name}`;
}

function family(s: AddressSet, f: Family): readonly IpRange[] {
  return f === 4 ? s.v4 : s.v6;
}

function addressRange(ip: string): IpRange {
  const { value } = parseIp(ip);
  return { start: value, end: value };
}
