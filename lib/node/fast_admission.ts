// The admission's fast path (DESIGN.md "Pod lifecycle", "Performance targets": an admission
// answered in under 5 ms at 10,000 pods, where a full compile costs 25-100 ms): before the
// agent answers an ADD, one element batch puts the new pod's addresses in a fail-closed state,
// and the full reconcile that follows at once gives them their real policy. Pure: the table
// last applied and the policy state in, the element changes out.
//
// The batch, per address A of the new pod: A leaves every set and map element it is in (an
// address a pod deleted a moment ago held must give its next owner nothing: no peer set of the
// old pod's labels, no map entry to the old pod's chain); `A . A` joins the self set (a pod may
// always reach itself); and in each direction the pod is isolated in (a NetworkPolicy of its
// namespace selects it with that policy type, or its Pod object is unknown: isolated until
// known), A maps to ISOLATED_CHAINS, which only drops (counted).
//
// Why that is never more open than the pod's real policy (the table the reconcile computes
// from the same state), packet by packet, for NetworkPolicy:
// - Everything both tables share is the same: the forward chain before the maps (replies of
//   established connections, IPv6 neighbour discovery, a pod to itself) and every address but A.
// - A's own side: in a direction A is isolated in, the real table jumps to A's chain, which
//   accepts some packets and drops the rest; the fast path drops them all. In a direction A is
//   not isolated in, neither table has a map entry for A (isolation is the same function of the
//   pod's labels and its namespace's policies in both; the compiler makes a pod a target of
//   exactly the directions of the policies selecting it).
// - A as a peer of other pods' rules: every set our NetworkPolicy rules test is an allow (peer
//   sets, named-port endpoints: `accept` or `return`, then the chain's drop). Without A in any
//   of them, a packet from or to A matches fewer allow rules than in the real table, never more.
// - Interval sets (ipBlocks, and runs of >= 256 pod addresses merged into ranges) cannot lose
//   one address as an element: when one covers A, the fast path declines and the admission
//   waits for the full reconcile.
// - ClusterNetworkPolicy tiers have Deny and Pass rules whose peer sets, without A, would let a
//   packet through to a later Accept: with any ClusterNetworkPolicy the fast path declines, and
//   it checks the table too: any rule that tests a set and ends in anything but accept or return
//   makes it decline.
// So until the reconcile lands, the pod may be denied something it will be allowed, never
// allowed something it will be denied. And that reconcile must not be one computed before the
// binding (it would put the old owner's A back): lib/node/admission.ts marks such a table
// stale, and lib/nft/sync.ts checks that under the same lock as this batch's write.
import type { Family } from "../ip/cidr.ts";
import { type Direction, objectKey } from "../kube/policy_objects.ts";
import type { ElementChange } from "../nft/elements.ts";
import type { NftSet, NftTable } from "../nft/ruleset.ts";
import { elementRange } from "../nft/sync.ts";
import type { PolicyState } from "../policy/compile.ts";
import { selectorMatches } from "../policy/selector.ts";
import { ISOLATED_CHAINS } from "./desired_table.ts";
import { isMasqueradeSet } from "./masq.ts";
import { isPodKnown, type PodBinding } from "./pod_bindings.ts";

/** In which directions a pod is isolated. */
export type Isolation = Readonly<Record<Direction, boolean>>;

/**
 * The directions the binding's pod is isolated in, as the compiler will see it: both when its
 * Pod object is not known (isolated until known), else those of the NetworkPolicies of its
 * namespace that select it. Undefined when the fast path cannot decide (ClusterNetworkPolicies).
 *
 * @example
 * fastIsolation(live, binding, "n1"); // { ingress: true, egress: false }
 */
export function fastIsolation(
  state: Omit<PolicyState, "nodes">,
  binding: PodBinding,
  node: string,
): Isolation | undefined {
  if ((state.clusterPolicies?.size ?? 0) > 0) return undefined;
  if (!isPodKnown(binding, state.pods, node)) return { ingress: true, egress: true };
  const pod = state.pods.get(objectKey(binding.pod!.namespace, binding.pod!.name))!;
  let ingress = false, egress = false;
  for (const { policy } of state.policies.values()) {
    if (policy.namespace !== pod.namespace) continue;
    const more = (policy.types.ingress && !ingress) || (policy.types.egress && !egress);
    if (!more || !selectorMatches(policy.podSelector, pod.labels)) continue;
    ingress ||= policy.types.ingress;
    egress ||= policy.types.egress;
  }
  return { ingress, egress };
}

/**
 * The element batch closing `ips` in `table` (the one the kernel holds) as the top of this file
 * says, or undefined when the table cannot be closed with elements alone: a policy interval set
 * covers one of the addresses, or the table has no policy maps or ISOLATED_CHAINS.
 *
 * @example
 * closingChanges(applied, ["10.244.1.9"], { ingress: true, egress: false });
 * // [{ op: "delete", set: "i_3f_0_4", ..., element: "10.244.1.9" },
 * //  { op: "add", set: "self4", ..., element: "10.244.1.9 . 10.244.1.9" },
 * //  { op: "add", set: "ingress4", ..., element: "10.244.1.9 : jump ing_isolated" }]
 */
export function closingChanges(
  table: NftTable,
  ips: readonly string[],
  isolation: Isolation,
): ElementChange[] | undefined {
  for (const chain of Object.values(ISOLATED_CHAINS)) if (!table.chains.has(chain)) return;
  if (!setsOnlyAllow(table)) return undefined;
  const deletes: ElementChange[] = [], adds: ElementChange[] = [];
  const want = new Map<string, Map<string, string>>(); // set -> key -> element to add
  for (const ip of ips) {
    const f: Family = ip.includes(":") ? 6 : 4;
    const wanted = (set: string, key: string, element: string) => {
      if (!want.has(set)) want.set(set, new Map());
      want.get(set)!.set(key, element);
    };
    wanted(`self${f}`, `${ip} . ${ip}`, `${ip} . ${ip}`);
    for (const dir of ["ingress", "egress"] as const) {
      if (isolation[dir]) wanted(`${dir}${f}`, ip, `${ip} : jump ${ISOLATED_CHAINS[dir]}`);
    }
  }
  for (const name of want.keys()) if (!table.sets.has(name)) return;
  for (const [name, set] of table.sets) {
    if (isMasqueradeSet(name)) continue;
    // A dynamic set's elements are the kernel's (the flow log's, strict mode's), not the table's.
    if ((set as { readonly dynamic?: unknown }).dynamic) continue;
    const f: Family = set.type.startsWith("ipv6") ? 6 : 4;
    const mine = ips.filter((ip) => ip.includes(":") === (f === 6));
    if (mine.length === 0) continue;
    if (set.interval) {
      if (mine.some((ip) => intervalCovers(set, ip))) return undefined;
      continue;
    }
    const adding = want.get(name);
    for (const [key, element] of elementsHolding(set, mine)) {
      if (adding?.get(key) === element) {
        adding.delete(key); // already so: neither delete nor add
        continue;
      }
      deletes.push({ op: "delete", set: name, type: set.type, element });
    }
  }
  for (const [name, elements] of want) {
    const type = table.sets.get(name)!.type;
    for (const element of elements.values()) adds.push({ op: "add", set: name, type, element });
  }
  return [...deletes, ...adds];
}

const allowOnly = new WeakMap<NftTable["chains"], boolean>();

/**
 * Whether every rule of `table` that tests one of its sets ends in `accept` or `return` (checked,
 * not assumed: a ClusterNetworkPolicy's Deny or Pass tests sets too), so that an address taken out
 * of every set only ever matches fewer allows. Verdict map lookups (`vmap @m`), the masquerade
 * sets and dynamic sets do not count. Once per chains object.
 */
function setsOnlyAllow(table: NftTable): boolean {
  const known = allowOnly.get(table.chains);
  if (known !== undefined) return known;
  let ok = true;
  for (const chain of table.chains.values()) {
    for (const rule of chain.rules) {
      const tested = [...rule.matchAll(/(?<!vmap )@([A-Za-z0-9_]+)/g)].map((m) => m[1])
        .filter((name) => {
          const set = table.sets.get(name);
          return set !== undefined && !isMasqueradeSet(name) &&
            !(set as { readonly dynamic?: unknown }).dynamic;
        });
      if (tested.length === 0) continue;
      const verdict = rule.replace(/ comment "[^"]*"$/, "").trim().split(" ").at(-1);
      if (verdict !== "accept" && verdict !== "return") ok = false;
    }
  }
  allowOnly.set(table.chains, ok);
  return ok;
}

/** The elements of a plain set or map that hold one of `ips` (as key, or part of one). */
function elementsHolding(set: NftSet, ips: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  if (!set.type.split(" : ")[0].includes(" . ")) {
    for (const ip of ips) {
      const el = set.elements.get(ip);
      if (el !== undefined) out.push([ip, el]);
    }
    return out;
  }
  // A concatenation (the self sets: `a . a`, one per local pod): its keys name A in any part.
  const wanted = new Set(ips);
  for (const [key, el] of set.elements) {
    if (key.split(" . ").some((part) => wanted.has(part))) out.push([key, el]);
  }
  return out;
}

const ranges = new WeakMap<NftSet, { start: bigint; end: bigint }[]>();

/** Whether an interval set's elements cover `ip` (its ranges parsed once per set object). */
function intervalCovers(set: NftSet, ip: string): boolean {
  let list = ranges.get(set);
  if (list === undefined) {
    list = [...set.elements.values()].map((e) => elementRange(e)[1]);
    ranges.set(set, list);
  }
  const [, at] = elementRange(ip);
  return list.some((r) => r.start <= at.start && at.start <= r.end);
}
