// This node's address -> pod bindings, as ADD told the agent (DESIGN.md "Pod lifecycle"), and
// the pods policy is compiled from once they are applied. Pure: maps in, maps out.
//
// On this node what ADD said outranks the API: the API learns a pod's addresses only after the
// sandbox exists (and may still list a terminating pod with an address ADD has just handed to a
// new one). So a bound pod gets exactly the addresses bound to it, even before the API reports
// them, and every other pod loses them.
//
// "Isolated until known": a binding whose Pod object the agent does not know (or whose CNI_ARGS
// named no pod, or whose Pod object now lives on another node: an older incarnation) becomes a
// synthetic pod in ISOLATED_NAMESPACE, a name no Kubernetes namespace can have, and that
// namespace gets one synthetic policy, ISOLATION_POLICY: every pod, both directions, no rules.
// The compiler (lib/policy/compile.ts) needs no change for it: it makes the synthetic pod a target
// of a deny-all in both directions, like any pod a deny-all policy selects, and its addresses land
// in the ingress and egress maps like any target's. Being a peer of other policies gives such a
// pod nothing: its own side drops everything it sends and everything sent to it (bar replies,
// its own node and itself, which are always allowed). The flow log and explain name it
// `mycni:isolated/<pod>` and the policy `mycni:isolated/isolated-until-known`.
import type { Allocation } from "../ipam/store.ts";
import { type Family, formatIp, parseIp } from "../ip/cidr.ts";
import {
  type NetworkPolicy,
  objectKey,
  type PodInfo,
  type PolicyEntry,
} from "../kube/policy_objects.ts";
import type { PolicyState } from "../policy/compile.ts";
import type { AdmitRequest, PodRef } from "../plugin/admission_protocol.ts";

/** One attachment's addresses, as its ADD (or the IPAM store) named them. */
export interface PodBinding {
  readonly containerId: string;
  readonly ifname: string;
  /** From CNI_ARGS; absent when the runtime named no pod. */
  readonly pod?: PodRef;
  /** Canonical text, IPv4 first. */
  readonly ips: readonly string[];
}

/** This node's bindings, keyed by {@linkcode attachmentKey}. */
export type PodBindings = ReadonlyMap<string, PodBinding>;

/**
 * The bindings at one moment and their generation: it grows by one with every change, so a
 * reconcile can say which bindings the table it applied was computed from.
 */
export interface BindingsView {
  readonly bindings: PodBindings;
  readonly generation: number;
}

/** Namespace of the synthetic pods isolated until their Pod object is known (":" is no DNS label). */
export const ISOLATED_NAMESPACE = "mycni:isolated";

/** The synthetic policy isolating every pod of {@linkcode ISOLATED_NAMESPACE} both ways. */
export const ISOLATION_POLICY: PolicyEntry = {
  policy: {
    namespace: ISOLATED_NAMESPACE,
    name: "isolated-until-known",
    podSelector: { matchLabels: {}, matchExpressions: [] },
    types: { ingress: true, egress: true },
    ingress: [],
    egress: [],
  } satisfies NetworkPolicy,
};

const ISOLATION_KEY = objectKey(ISOLATED_NAMESPACE, ISOLATION_POLICY.policy.name);

/** `containerId@ifname`: container IDs cannot hold "@" (lib/cni/env.ts). */
export function attachmentKey(containerId: string, ifname: string): string {
  return `${containerId}@${ifname}`;
}

/** The binding an admit request asks for. */
export function bindingOf(req: AdmitRequest): PodBinding {
  return {
    containerId: req.containerId,
    ifname: req.ifname,
    ...(req.pod ? { pod: req.pod } : {}),
    ips: v4First(req.ips),
  };
}

/**
 * `bindings` with `binding` in place of its attachment's previous one; any other binding holding
 * one of its addresses loses it (the newest ADD of an address wins: an older one whose DEL the
 * agent missed is stale), and is dropped when left with none.
 *
 * @example
 * let b: PodBindings = new Map();
 * b = bindPod(b, { containerId: "c1", ifname: "eth0", ips: ["10.244.1.5"] });
 */
export function bindPod(bindings: PodBindings, binding: PodBinding): PodBindings {
  const taken = new Set(binding.ips);
  const key = attachmentKey(binding.containerId, binding.ifname);
  const out = new Map<string, PodBinding>();
  for (const [k, b] of bindings) {
    if (k === key) continue;
    if (!b.ips.some((ip) => taken.has(ip))) {
      out.set(k, b);
      continue;
    }
    const ips = b.ips.filter((ip) => !taken.has(ip));
    if (ips.length > 0) out.set(k, { ...b, ips });
  }
  out.set(key, binding);
  return out;
}

/** `bindings` without the attachment (unchanged when it is not there: DEL repeats). */
export function releasePod(
  bindings: PodBindings,
  containerId: string,
  ifname: string,
): PodBindings {
  const key = attachmentKey(containerId, ifname);
  if (!bindings.has(key)) return bindings;
  const out = new Map(bindings);
  out.delete(key);
  return out;
}

/**
 * Bindings from the built-in IPAM's allocations (DiskStore.list()): one per attachment, its pod
 * from the record's "namespace/name" line when it has a valid one. What an agent restart starts
 * from, so it loses nothing ADD told the agent before.
 *
 * @example
 * bindingsFromAllocations([{ ip: "10.244.1.5", owner: { containerId: "c1", ifname: "eth0",
 *   pod: "default/web-0" } }]);
 */
export function bindingsFromAllocations(allocations: readonly Allocation[]): PodBindings {
  const grouped = new Map<string, { owner: Allocation["owner"]; ips: string[] }>();
  for (const { ip, owner } of allocations) {
    let text: string;
    try {
      text = formatIp(parseIp(ip));
    } catch {
      continue; // not an address: nothing to bind
    }
    const key = attachmentKey(owner.containerId, owner.ifname);
    const group = grouped.get(key);
    if (group === undefined) grouped.set(key, { owner, ips: [text] });
    else if (!group.ips.includes(text)) group.ips.push(text);
  }
  const out = new Map<string, PodBinding>();
  for (const [key, { owner, ips }] of [...grouped].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const pod = parsePodRef(owner.pod);
    out.set(key, {
      containerId: owner.containerId,
      ifname: owner.ifname,
      ...(pod ? { pod } : {}),
      ips: v4First(ips),
    });
  }
  return out;
}

/**
 * Whether policy can treat the binding's pod as itself: CNI_ARGS named it, the agent knows its
 * Pod object, and that object is on this node (or not yet scheduled in the agent's view). Else
 * the pod is isolated until it is known (the agent's bounded wait at admission polls this).
 */
export function isPodKnown(
  binding: PodBinding,
  pods: ReadonlyMap<string, PodInfo>,
  node: string,
): boolean {
  if (binding.pod === undefined) return false;
  const info = pods.get(objectKey(binding.pod.namespace, binding.pod.name));
  return info !== undefined && (info.node === node || info.node === "");
}

/**
 * The key the binding's pod has in {@linkcode podsWithBindings}' map (and so in a compiled plan):
 * `namespace/name` when the pod is known, else its synthetic pod's key in
 * {@linkcode ISOLATED_NAMESPACE}. For compiling just the admitted pod (`CompileOptions.pods`).
 *
 * @example
 * podKeyOf(binding, state.pods, "n1"); // "x/web-0", or "mycni:isolated/x_web-0"
 */
export function podKeyOf(
  binding: PodBinding,
  pods: ReadonlyMap<string, PodInfo>,
  node: string,
): string {
  return isPodKnown(binding, pods, node)
    ? objectKey(binding.pod!.namespace, binding.pod!.name)
    : objectKey(ISOLATED_NAMESPACE, isolatedName(binding));
}

/**
 * The pods policy is compiled from on `node`: the API's pods, each pod bound here with exactly
 * the addresses bound to it (and on this node), every address bound here taken from every other
 * pod, and a synthetic pod in {@linkcode ISOLATED_NAMESPACE} per pod that is not known yet. Pods
 * untouched by the bindings keep their objects (the compiler caches its work per object).
 *
 * @example
 * podsWithBindings(state.pods, bindings, "n1").get("default/web-0")?.ips; // ["10.244.1.5"]
 */
export function podsWithBindings(
  pods: ReadonlyMap<string, PodInfo>,
  bindings: PodBindings,
  node: string,
): Map<string, PodInfo> {
  const bound = new Set<string>();
  const known = new Map<string, string[]>(); // pod key -> its bound addresses
  const unknown = new Map<string, string[]>(); // synthetic pod key -> its addresses
  for (const b of bindings.values()) {
    for (const ip of b.ips) bound.add(ip);
    const into = isPodKnown(b, pods, node) ? known : unknown;
    const key = podKeyOf(b, pods, node);
    const ips = into.get(key);
    if (ips === undefined) into.set(key, [...b.ips]);
    else ips.push(...b.ips.filter((ip) => !ips.includes(ip)));
  }
  const out = new Map<string, PodInfo>();
  for (const [key, info] of pods) {
    const mine = known.get(key);
    if (mine !== undefined) {
      out.set(key, { ...info, node, ips: v4First(mine) });
    } else if (info.ips.some((ip) => bound.has(ip))) {
      out.set(key, { ...info, ips: info.ips.filter((ip) => !bound.has(ip)) });
    } else {
      out.set(key, info);
    }
  }
  for (const [key, ips] of unknown) {
    out.set(key, {
      namespace: ISOLATED_NAMESPACE,
      name: key.slice(ISOLATED_NAMESPACE.length + 1),
      labels: {},
      node,
      ips: v4First(ips),
      hostNetwork: false,
      ports: [],
    });
  }
  return out;
}

/**
 * `state` with the bindings applied: the pods of {@linkcode podsWithBindings}, and
 * {@linkcode ISOLATION_POLICY} among the policies while any pod is isolated until known (only
 * then, so a node without such pods compiles exactly what it did before).
 *
 * @example
 * compilePolicies(applyBindings(state, bindings, "n1"), { node: "n1" });
 */
export function applyBindings(
  state: PolicyState,
  bindings: PodBindings,
  node: string,
): PolicyState {
  const pods = podsWithBindings(state.pods, bindings, node);
  const anyIsolated = [...bindings.values()].some((b) => !isPodKnown(b, state.pods, node));
  if (!anyIsolated) return { ...state, pods };
  const policies = new Map(state.policies);
  policies.set(ISOLATION_KEY, ISOLATION_POLICY);
  return { ...state, pods, policies };
}

/**
 * The synthetic pod's name: the pod CNI_ARGS named, as `namespace_name` ("_" is in no Kubernetes
 * name, so it cannot be mistaken for one), else the attachment.
 */
function isolatedName(b: PodBinding): string {
  return b.pod ? `${b.pod.namespace}_${b.pod.name}` : attachmentKey(b.containerId, b.ifname);
}

/** "namespace/name" from an IPAM record, when both parts are Kubernetes names. */
function parsePodRef(text: string | undefined): PodRef | undefined {
  const m = text === undefined ? null : /^([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(text);
  return m ? { namespace: m[1], name: m[2] } : undefined;
}

function v4First(ips: readonly string[]): string[] {
  const family = (ip: string): Family => (ip.includes(":") ? 6 : 4);
  return [...ips].sort((a, b) => family(a) - family(b));
}
