// The pods and namespaces the policy compiler reads, kept from one compile to the next: the pods
// policy can see (addresses, not hostNetwork) by key, by namespace and by address, and what
// changed since the last state. The agent's informers replace an object when it changes, so an
// unchanged pod or namespace is the same object again and the difference costs one lookup each.
import { type Ip, parseIp } from "../ip/cidr.ts";
import type { NamespaceInfo, PodInfo } from "../kube/policy_objects.ts";

/** A pod that can be a target or a pod peer: addresses, not hostNetwork. */
export interface PodRecord {
  readonly key: string;
  readonly info: PodInfo;
  readonly addrs: readonly Ip[];
}

/** A pod whose record changed: as it was and as it is (absent: not a pod policy sees). */
export interface PodChange {
  readonly before?: PodRecord;
  readonly after?: PodRecord;
}

/** What changed between the last state and this one. */
export interface IndexChanges {
  /**
   * Pods whose record changed, and every pod of a namespace whose labels changed (its record
   * the same before and after): what a peer or subject selecting them may have to look at again.
   */
  readonly pods: ReadonlyMap<string, PodChange>;
  /** Namespaces whose labels changed (or whose object came or went). */
  readonly namespaces: ReadonlySet<string>;
  /** The addresses of those pods, before and after, by text: where peer sets can differ. */
  readonly dirty: ReadonlyMap<string, Ip>;
}

/** The index between compiles. */
export interface PodIndex {
  /** Policy-visible pods by key. */
  readonly records: ReadonlyMap<string, PodRecord>;
  /** Policy-visible pods by namespace, then key. */
  readonly byNamespace: ReadonlyMap<string, ReadonlyMap<string, PodRecord>>;
  /** Namespace objects of the last state, by name. */
  readonly namespaces: ReadonlyMap<string, NamespaceInfo>;
  /** The labels of namespace `ns` (none when it has no object). */
  labelsOf(ns: string): Readonly<Record<string, string>>;
  /** The policy-visible pods holding address `ip` (usually one; a reused address, two). */
  holders(ip: string): readonly PodRecord[];
  /**
   * Takes the new state: what changed, or "reset" when the index was rebuilt from scratch (the
   * first state, or more than `limit` pods to look at again).
   */
  update(
    pods: ReadonlyMap<string, PodInfo>,
    namespaces: ReadonlyMap<string, NamespaceInfo>,
    limit: number,
  ): IndexChanges | "reset";
}

const NO_LABELS: Readonly<Record<string, string>> = {};
const NO_RECORDS: readonly PodRecord[] = [];

/**
 * An empty index. `parsed` lends the records of pods already parsed (by object) to a rebuild:
 * parsing 20,000 addresses is most of a cold compile.
 *
 * @example
 * const index = createPodIndex();
 * index.update(state.pods, state.namespaces, 256); // "reset"
 * index.update(next.pods, next.namespaces, 256); // { pods: Map(1), namespaces: Set(0), dirty: Map(2) }
 */
export function createPodIndex(parsed?: Map<PodInfo, PodRecord>): PodIndex {
  let infos: ReadonlyMap<string, PodInfo> = new Map();
  let namespaces: ReadonlyMap<string, NamespaceInfo> = new Map();
  const records = new Map<string, PodRecord>();
  const byNamespace = new Map<string, Map<string, PodRecord>>();
  // Built on the first incremental update: a compile from scratch never needs it.
  let byAddress: Map<string, PodRecord[]> | undefined;
  let started = false;

  function add(r: PodRecord): void {
    records.set(r.key, r);
    const list = byNamespace.get(r.info.namespace);
    if (list === undefined) byNamespace.set(r.info.namespace, new Map([[r.key, r]]));
    else list.set(r.key, r);
    if (byAddress !== undefined) { for (const ip of r.info.ips) addHolder(byAddress, ip, r); }
  }

  function remove(r: PodRecord): void {
    records.delete(r.key);
    const list = byNamespace.get(r.info.namespace)!;
    list.delete(r.key);
    if (list.size === 0) byNamespace.delete(r.info.namespace);
    if (byAddress === undefined) return;
    for (const ip of r.info.ips) {
      const rest = byAddress.get(ip)!.filter((h) => h !== r);
      if (rest.length === 0) byAddress.delete(ip);
      else byAddress.set(ip, rest);
    }
  }

  function rebuild(pods: ReadonlyMap<string, PodInfo>): void {
    const reuse = parsed ?? new Map([...records.values()].map((r) => [r.info, r]));
    records.clear();
    byNamespace.clear();
    byAddress = undefined;
    const kept = new Map<PodInfo, PodRecord>();
    for (const [key, info] of pods) {
      if (!visible(info)) continue;
      let r = reuse.get(info);
      if (r === undefined || r.key !== key) r = { key, info, addrs: info.ips.map(parseIp) };
      kept.set(info, r);
      add(r);
    }
    if (parsed !== undefined) {
      parsed.clear();
      for (const [info, r] of kept) parsed.set(info, r);
    }
  }

  return {
    records,
    byNamespace,
    get namespaces() {
      return namespaces;
    },
    labelsOf: (ns) => namespaces.get(ns)?.labels ?? NO_LABELS,
    holders(ip) {
      if (byAddress === undefined) {
        byAddress = new Map();
        for (const r of records.values()) for (const a of r.info.ips) addHolder(byAddress, a, r);
      }
      return byAddress.get(ip) ?? NO_RECORDS;
    },
    update(pods, nextNamespaces, limit) {
      const first = !started;
      started = true;
      const changedPods = first ? undefined : changedKeys(infos, pods, samePod, limit);
      const changedNs = first ? undefined : changedKeys(namespaces, nextNamespaces, sameNs, limit);
      infos = pods;
      namespaces = nextNamespaces;
      if (changedPods === undefined || changedNs === undefined) {
        rebuild(pods);
        return "reset";
      }
      const changes = new Map<string, PodChange>();
      for (const key of changedPods) {
        const before = records.get(key);
        const info = pods.get(key);
        const after = info === undefined || !visible(info)
          ? undefined
          : recordOf(key, info, before);
        if (before === after) continue;
        if (before !== undefined) remove(before);
        if (after !== undefined) add(after);
        changes.set(key, { before, after });
      }
      for (const ns of changedNs) {
        for (const r of byNamespace.get(ns)?.values() ?? []) {
          if (!changes.has(r.key)) changes.set(r.key, { before: r, after: r });
        }
      }
      if (changes.size > limit) {
        rebuild(pods);
        return "reset";
      }
      const dirty = new Map<string, Ip>();
      for (const { before, after } of changes.values()) {
        for (const r of [before, after]) r?.addrs.forEach((a, i) => dirty.set(r.info.ips[i], a));
      }
      return { pods: changes, namespaces: new Set(changedNs), dirty };
    },
  };
}

function visible(info: PodInfo): boolean {
  return !info.hostNetwork && info.ips.length > 0;
}

/** The record for a changed pod, its addresses parsed again only when they changed. */
function recordOf(key: string, info: PodInfo, before: PodRecord | undefined): PodRecord {
  if (before !== undefined && sameList(before.info.ips, info.ips)) {
    return { key, info, addrs: before.addrs };
  }
  return { key, info, addrs: info.ips.map(parseIp) };
}

function addHolder(byAddress: Map<string, PodRecord[]>, ip: string, r: PodRecord): void {
  const list = byAddress.get(ip);
  if (list === undefined) byAddress.set(ip, [r]);
  else list.push(r);
}

/**
 * Keys whose value is not the same (by identity, then by content) in `next` as in `prev`, added
 * and removed ones included; undefined as soon as there are more than `limit`.
 */
function changedKeys<T>(
  prev: ReadonlyMap<string, T>,
  next: ReadonlyMap<string, T>,
  same: (a: T, b: T) => boolean,
  limit: number,
): string[] | undefined {
  const out: string[] = [];
  let kept = 0;
  for (const [key, value] of next) {
    const old = prev.get(key);
    if (old !== undefined) kept++;
    if (old === value || (old !== undefined && same(old, value))) continue;
    out.push(key);
    if (out.length > limit) return undefined;
  }
  if (kept < prev.size) {
    for (const key of prev.keys()) {
      if (next.has(key)) continue;
      out.push(key);
      if (out.length > limit) return undefined;
    }
  }
  return out;
}

/** Whether two pod objects say the same to policy (a resync, a status change policy ignores). */
function samePod(a: PodInfo, b: PodInfo): boolean {
  return a.namespace === b.namespace && a.name === b.name && a.node === b.node &&
    a.hostNetwork === b.hostNetwork && sameList(a.ips, b.ips) && sameLabels(a.labels, b.labels) &&
    a.ports.length === b.ports.length &&
    a.ports.every((p, i) =>
      p.name === b.ports[i].name && p.port === b.ports[i].port &&
      p.protocol === b.ports[i].protocol
    );
}

function sameNs(a: NamespaceInfo, b: NamespaceInfo): boolean {
  return sameLabels(a.labels, b.labels);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameLabels(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
