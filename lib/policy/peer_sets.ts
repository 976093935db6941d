// The address sets of policy peers and the destinations of egress named ports, for the policy
// compiler (lib/policy/compile.ts), kept from one compile to the next and changed only where pods
// changed. A peer set is a union of pod addresses and ipBlocks; a pod that comes, goes, changes
// or sees its namespace relabelled can only change it at that pod's addresses, so each compile
// asks, at those addresses alone, whether the peers hold them now and which named ports they
// serve. A set that changes is a new object (plans are immutable) made from the old one, and the
// change is recorded for the renderer (lib/policy/plan_changes.ts).
import { type Family, type Ip, parseCidr } from "../ip/cidr.ts";
import {
  cidrRange,
  type IpRange,
  mergeRanges,
  rangesContain,
  subtractRanges,
  withAddress,
  withoutAddress,
} from "../ip/range.ts";
import {
  type LabelSelector,
  type PolicyPeer,
  type Protocol,
  SELECT_ALL,
} from "../kube/policy_objects.ts";
import type { AddressSet } from "./plan.ts";
import {
  type NamedEndpoint,
  type NamedPort,
  recordPortChange,
  recordSetChange,
} from "./plan_changes.ts";
import type { IndexChanges, PodIndex, PodRecord } from "./pod_index.ts";
import { selectorKey, selectorMatches } from "./selector.ts";

/** A peer list's addresses, as they are now. */
export interface PeerSet {
  /** A new object whenever the addresses change; the same object for every user meanwhile. */
  readonly addresses: AddressSet;
}

/** An egress named port among some peers (or among every pod), as it is now. */
export interface NamedSet {
  /** A new object whenever its endpoints change. */
  readonly port: NamedPort;
}

/** The peer sets of a compiler, counted by their users. */
export interface PeerSets {
  /**
   * The set of `peers` of a policy in `namespace` (a podSelector alone selects there), shared by
   * every user with the same peers; counted until {@linkcode PeerSets.release}d.
   */
  acquire(namespace: string, peers: readonly PolicyPeer[]): PeerSet;
  release(set: PeerSet): void;
  /**
   * The destinations (address, port) among `peers` (undefined: every pod) that have a container
   * port named `name` of `protocol`, each pair once, sorted by family, address and port.
   */
  named(peers: PeerSet | undefined, protocol: Protocol, name: string): NamedSet;
  /** Brings every set up to the index after `changes` (a compile's first step). */
  update(changes: IndexChanges): void;
}

/** One pod term of a peer list: pods matching `pods` in namespaces matching `namespaces`. */
interface Term {
  /** Absent: the policy's own namespace. */
  readonly namespaces?: LabelSelector;
  readonly pods: LabelSelector;
}

interface PeerNode extends PeerSet {
  readonly key: string;
  /** The namespace a term without `namespaces` selects in ("" when no term needs one). */
  readonly namespace: string;
  readonly terms: readonly Term[];
  /** The ipBlocks (minus their except lists), merged. */
  readonly blocks: AddressSet;
  addresses: AddressSet;
  users: number;
  readonly named: Map<string, NamedNode>;
}

interface NamedNode extends NamedSet {
  readonly protocol: Protocol;
  readonly name: string;
  /** Parallel to `port.endpoints`, with the parsed addresses to search by. */
  entries: Entry[];
  port: NamedPort;
}

/** A destination of a named port: its address parsed, the plan's endpoint object. */
interface Entry {
  readonly addr: Ip;
  readonly port: number;
  readonly out: NamedEndpoint;
}

/** More changed addresses than this in one set: rebuilt in one pass rather than one by one. */
const ONE_BY_ONE = 64;

/**
 * The peer sets over `index`: built on first use from the index as it is, then kept up to date
 * by {@linkcode PeerSets.update}, address by address up to `oneByOne` changed addresses per set.
 *
 * @example
 * const sets = createPeerSets(index);
 * const peers = sets.acquire("x", [{ pods: { matchLabels: { app: "web" }, matchExpressions: [] } }]);
 * peers.addresses; // { v4: [{ start: 167772418n, end: 167772418n }], v6: [] }
 */
export function createPeerSets(index: PodIndex, oneByOne = ONE_BY_ONE): PeerSets {
  const nodes = new Map<string, PeerNode>();
  const anyNamed = new Map<string, NamedNode>();
  // `protocol/name` -> every visible pod's (address, port) pairs for it, sorted.
  const everyNamed = new Map<string, Entry[]>();
  let scratch = newScratch();

  function everyEndpoint(protocol: Protocol, name: string): Entry[] {
    const key = `${protocol}/${name}`;
    let list = everyNamed.get(key);
    if (list === undefined) everyNamed.set(key, list = allEndpoints(index, protocol, name));
    return list;
  }

  return {
    acquire(namespace, peers) {
      const key = peersKey(namespace, peers);
      let node = nodes.get(key);
      if (node === undefined) {
        nodes.set(key, node = buildNode(index, scratch, key, namespace, peers));
      }
      node.users++;
      return node;
    },
    release(set) {
      const node = set as PeerNode;
      if (--node.users === 0) nodes.delete(node.key);
    },
    named(peers, protocol, name) {
      const key = `${protocol}/${name}`;
      const into = peers === undefined ? anyNamed : (peers as PeerNode).named;
      let node = into.get(key);
      if (node === undefined) {
        const every = everyEndpoint(protocol, name);
        const entries = peers === undefined
          ? [...every]
          : every.filter((e) => inSet(peers.addresses, e.addr));
        node = {
          protocol,
          name,
          entries,
          port: { kind: "named", protocol, name, endpoints: entries.map((e) => e.out) },
        };
        into.set(key, node);
      }
      return node;
    },
    update(changes) {
      scratch = newScratch();
      if (changes.dirty.size === 0) return;
      for (const [key, list] of everyNamed) {
        const [protocol, name] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
        const patched = patchEvery(
          index,
          list,
          protocol as Protocol,
          name,
          changes.dirty,
          oneByOne,
        );
        everyNamed.set(key, patched);
      }
      const everyOf = (n: NamedNode) => everyNamed.get(`${n.protocol}/${n.name}`)!;
      for (const n of anyNamed.values()) patchNamed(n, everyOf(n), undefined, changes.dirty, false);
      for (const node of nodes.values()) {
        const before = node.addresses;
        patchNode(index, node, changes.dirty, oneByOne);
        for (const n of node.named.values()) {
          patchNamed(n, everyOf(n), node.addresses, changes.dirty, node.addresses !== before);
        }
      }
    },
  };
}

/** Selector results shared by the sets one compile builds (the index does not change within). */
interface Scratch {
  /** selectorKey -> the namespaces (with visible pods) it selects. */
  readonly namespaces: Map<string, readonly string[]>;
  /** namespace + selectorKey -> its visible pods the selector selects. */
  readonly pods: Map<string, readonly PodRecord[]>;
}

function newScratch(): Scratch {
  return { namespaces: new Map(), pods: new Map() };
}

/**
 * The key peer lists share a set by: the peers' own keys, with the policy's namespace when a
 * peer selects in it (a podSelector alone).
 */
function peersKey(namespace: string, peers: readonly PolicyPeer[]): string {
  const own = peers.some((p) => !("ipBlock" in p) && p.namespaces === undefined);
  return `${own ? namespace : ""}\n${peers.map(peerKey).join("\n")}`;
}

function peerKey(peer: PolicyPeer): string {
  if ("ipBlock" in peer) return JSON.stringify(["ipBlock", peer.ipBlock.cidr, peer.ipBlock.except]);
  return JSON.stringify([
    "pods",
    peer.pods === undefined ? null : selectorKey(peer.pods),
    peer.namespaces === undefined ? null : selectorKey(peer.namespaces),
  ]);
}

function buildNode(
  index: PodIndex,
  scratch: Scratch,
  key: string,
  namespace: string,
  peers: readonly PolicyPeer[],
): PeerNode {
  const blocks: Record<Family, IpRange[]> = { 4: [], 6: [] };
  const pods: Record<Family, IpRange[]> = { 4: [], 6: [] };
  const terms: Term[] = [];
  for (const peer of peers) {
    if ("ipBlock" in peer) {
      const block = parseCidr(peer.ipBlock.cidr);
      const except = peer.ipBlock.except.map((e) => cidrRange(parseCidr(e)));
      blocks[block.family].push(...subtractRanges([cidrRange(block)], except));
      continue;
    }
    const term: Term = { pods: peer.pods ?? SELECT_ALL, namespaces: peer.namespaces };
    terms.push(term);
    const namespaces = term.namespaces === undefined
      ? [namespace]
      : namespacesMatching(index, scratch, term.namespaces);
    for (const ns of namespaces) {
      for (const r of podsMatching(index, scratch, ns, term.pods)) {
        for (const a of r.addrs) pods[a.family].push({ start: a.value, end: a.value });
      }
    }
  }
  return {
    key,
    namespace: terms.some((t) => t.namespaces === undefined) ? namespace : "",
    terms,
    blocks: { v4: mergeRanges(blocks[4]), v6: mergeRanges(blocks[6]) },
    addresses: {
      v4: mergeRanges([...blocks[4], ...pods[4]]),
      v6: mergeRanges([...blocks[6], ...pods[6]]),
    },
    users: 0,
    named: new Map(),
  };
}

function namespacesMatching(
  index: PodIndex,
  scratch: Scratch,
  selector: LabelSelector,
): readonly string[] {
  const key = selectorKey(selector);
  let names = scratch.namespaces.get(key);
  if (names === undefined) {
    // Only namespaces with visible pods can add addresses; one without a Namespace object has
    // no labels (it still matches an empty selector, NotIn and DoesNotExist).
    names = [...index.byNamespace.keys()].filter((ns) =>
      selectorMatches(selector, index.labelsOf(ns))
    );
    scratch.namespaces.set(key, names);
  }
  return names;
}

function podsMatching(
  index: PodIndex,
  scratch: Scratch,
  namespace: string,
  selector: LabelSelector,
): readonly PodRecord[] {
  const key = `${namespace}\n${selectorKey(selector)}`;
  let pods = scratch.pods.get(key);
  if (pods === undefined) {
    pods = [...index.byNamespace.get(namespace)?.values() ?? []].filter((r) =>
      selectorMatches(selector, r.info.labels)
    );
    scratch.pods.set(key, pods);
  }
  return pods;
}

/** Whether pod `r` is among the node's pod terms. */
function member(index: PodIndex, node: PeerNode, r: PodRecord): boolean {
  for (const t of node.terms) {
    const inNamespace = t.namespaces === undefined
      ? r.info.namespace === node.namespace
      : selectorMatches(t.namespaces, index.labelsOf(r.info.namespace));
    if (inNamespace && selectorMatches(t.pods, r.info.labels)) return true;
  }
  return false;
}

function inSet(set: AddressSet, a: Ip): boolean {
  return rangesContain(a.family === 4 ? set.v4 : set.v6, a.value);
}

/** The node's addresses at the changed addresses: held when an ipBlock or a member pod has it. */
function patchNode(
  index: PodIndex,
  node: PeerNode,
  dirty: ReadonlyMap<string, Ip>,
  oneByOne: number,
): void {
  const added: Ip[] = [], removed: Ip[] = [];
  for (const [text, a] of dirty) {
    const want = inSet(node.blocks, a) || index.holders(text).some((r) => member(index, node, r));
    if (want !== inSet(node.addresses, a)) (want ? added : removed).push(a);
  }
  if (added.length + removed.length === 0) return;
  const prev = node.addresses;
  node.addresses = {
    v4: changedRanges(prev.v4, added, removed, 4, oneByOne),
    v6: changedRanges(prev.v6, added, removed, 6, oneByOne),
  };
  recordSetChange(node.addresses, { prev, added, removed });
}

/** `ranges` with the addresses of family `f` in `added` and without those in `removed`. */
function changedRanges(
  ranges: readonly IpRange[],
  added: readonly Ip[],
  removed: readonly Ip[],
  f: Family,
  oneByOne: number,
): readonly IpRange[] {
  const plus = added.filter((a) => a.family === f), minus = removed.filter((a) => a.family === f);
  if (plus.length + minus.length === 0) return ranges;
  if (plus.length + minus.length > oneByOne) {
    const single = (a: Ip) => ({ start: a.value, end: a.value });
    return mergeRanges([...subtractRanges(ranges, minus.map(single)), ...plus.map(single)]);
  }
  let out = ranges;
  for (const a of minus) out = withoutAddress(out, a.value);
  for (const a of plus) out = withAddress(out, a.value);
  return out;
}

function compareEntry(a: Entry, b: Entry): number {
  return a.addr.family - b.addr.family ||
    (a.addr.value < b.addr.value ? -1 : a.addr.value > b.addr.value ? 1 : a.port - b.port);
}

/** The first index in `entries` (sorted) whose address is `a` or after it. */
function firstAt(entries: readonly Entry[], a: Ip): number {
  let lo = 0, hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const e = entries[mid].addr;
    if (e.family < a.family || (e.family === a.family && e.value < a.value)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The entries in `entries` (sorted) at address `a`: [from, to). */
function entriesAt(entries: readonly Entry[], a: Ip): [number, number] {
  const from = firstAt(entries, a);
  let to = from;
  while (
    to < entries.length && entries[to].addr.value === a.value &&
    entries[to].addr.family === a.family
  ) to++;
  return [from, to];
}

/**
 * Every visible pod address with a container port of that name and protocol, each (address,
 * port) pair once (two containers may repeat a name with one number, and two pods may hold one
 * address: a terminating pod's object outlives its sandbox, whose address the kubelet reuses),
 * sorted by family, address and port: the renderer counts a rule's endpoints against its peers
 * (nft_rules.ts), so a pair listed twice would let a peer without the port through.
 */
function allEndpoints(index: PodIndex, protocol: Protocol, name: string): Entry[] {
  const all: Entry[] = [];
  for (const r of index.records.values()) {
    for (const c of r.info.ports) {
      if (c.name !== name || c.protocol !== protocol) continue;
      r.addrs.forEach((addr, i) => {
        all.push({ addr, port: c.port, out: { ip: r.info.ips[i], port: c.port } });
      });
    }
  }
  all.sort(compareEntry);
  return all.filter((e, i) => i === 0 || compareEntry(all[i - 1], e) !== 0);
}

/** The entries at one address now: the ports its holders name so, each once, sorted. */
function entriesNow(
  index: PodIndex,
  text: string,
  a: Ip,
  protocol: Protocol,
  name: string,
): Entry[] {
  const ports = new Set<number>();
  for (const r of index.holders(text)) {
    for (const c of r.info.ports) if (c.name === name && c.protocol === protocol) ports.add(c.port);
  }
  return [...ports].sort((x, y) => x - y).map((port) => ({
    addr: a,
    port,
    out: { ip: text, port },
  }));
}

/** The every-pod list of a named port, changed in place at the changed addresses. */
function patchEvery(
  index: PodIndex,
  entries: Entry[],
  protocol: Protocol,
  name: string,
  dirty: ReadonlyMap<string, Ip>,
  oneByOne: number,
): Entry[] {
  if (dirty.size > oneByOne) return allEndpoints(index, protocol, name);
  for (const [text, a] of dirty) {
    const [from, to] = entriesAt(entries, a);
    const now = entriesNow(index, text, a, protocol, name);
    if (samePorts(entries, from, to, now)) continue;
    entries.splice(from, to - from, ...now);
  }
  return entries;
}

function samePorts(entries: readonly Entry[], from: number, to: number, now: readonly Entry[]) {
  return to - from === now.length && now.every((e, i) => entries[from + i].port === e.port);
}

/**
 * A named port among `peers` (undefined: every pod) at the changed addresses: the every-pod
 * entries there when the peers hold the address, none when not. A new object too when only the
 * peers changed (`renew`): a named port object belongs to one peers object, and the renderer
 * counts its endpoints against them (nft_rules.ts folds a port every peer has into the peer set).
 */
function patchNamed(
  node: NamedNode,
  every: readonly Entry[],
  peers: AddressSet | undefined,
  dirty: ReadonlyMap<string, Ip>,
  renew: boolean,
): void {
  // Copied on the first change, then changed in place: the plan's endpoints beside the entries.
  let entries: Entry[] | undefined, endpoints: NamedEndpoint[] | undefined;
  const added: NamedEndpoint[] = [], removed: NamedEndpoint[] = [];
  for (const a of dirty.values()) {
    const list = entries ?? node.entries;
    const [from, to] = entriesAt(list, a);
    let want: Entry[] = [];
    if (peers === undefined || inSet(peers, a)) {
      const [f, t] = entriesAt(every, a);
      want = every.slice(f, t);
    }
    if (samePorts(list, from, to, want)) continue;
    entries ??= node.entries.slice();
    endpoints ??= node.port.endpoints.slice();
    for (let i = from; i < to; i++) removed.push(entries[i].out);
    for (const e of want) added.push(e.out);
    entries.splice(from, to - from, ...want);
    endpoints.splice(from, to - from, ...want.map((e) => e.out));
  }
  if (entries === undefined && !renew) return;
  const prev = node.port;
  node.entries = entries ?? node.entries;
  node.port = { ...prev, endpoints: endpoints ?? prev.endpoints };
  recordPortChange(node.port, { prev, added, removed });
}
