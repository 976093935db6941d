// `mycni-init explain`: whether one flow is allowed and which policies and rules decide it, from
// the same compiled plan and the same matching the kernel rules are made from (issue 10, item 4).
import { type Family, formatIp, type Ip, parseIp } from "../ip/cidr.ts";
import { type Direction, type PodInfo, PROTOCOLS } from "../kube/policy_objects.ts";
import { compilePolicies, type PolicyState } from "./compile.ts";
import { type StageProbe, tieredVerdict } from "./explain_cluster.ts";
import { allowRuleMatches } from "./match.ts";
import type { DirectionVerdict, Explanation, FlowQuery, PolicyPlan } from "./plan.ts";

/** One end of the flow: a known pod, or an address that is no pod of ours. */
type FlowEnd =
  | { readonly kind: "pod"; readonly key: string; readonly pod: PodInfo; readonly addrs: Ip[] }
  | { readonly kind: "ip"; readonly addr: Ip };

/**
 * Explains a new connection `from` -> `to` (replies of an allowed connection are always allowed,
 * by conntrack, and are not a query): egress on the source when it is a pod, ingress on the
 * destination when it is a pod, each evaluated on `compilePolicies(state, { pods: [src, dst] })`
 * with {@linkcode allowRuleMatches}, as the kernel does. The flow uses the first address family
 * both ends have (IPv4 first). Always allowed, whatever the policies: a pod to itself (same
 * address), and traffic between a pod and its own node (an address `state.nodes` lists for the
 * pod's node). An address of a pod (not host-network) stands for that pod, in that family.
 * With ClusterNetworkPolicies in the state, each direction also says which `stage` decided
 * (Admin, NetworkPolicy, Baseline, default, or always), the ClusterNetworkPolicy rule that did
 * (`decidedBy`: policy, tier, priority, rule index and name, action) and the Pass rules on the
 * way (`passedBy`), in the order of DESIGN.md "ClusterNetworkPolicy" (lib/policy/
 * explain_cluster.ts).
 * The kernel finds a pod's rules by address, so where several pods hold the flow's address (a
 * terminating pod's object still names the address its successor got), the rules of the first
 * of them by key that has rules in the direction decide, as lib/policy/nft_rules.ts maps it.
 * Throws for an unknown pod, a pod without addresses, text that is neither a pod
 * nor an IP address, a bad port or protocol, and ends with no family in common.
 *
 * @example
 * explainFlow(state, { from: "y/b", to: "x/a", protocol: "TCP", port: 80 });
 * // { allowed: false, src: "10.244.2.3", dst: "10.244.1.2",
 * //   egress: { allowed: true, policies: [], allowedBy: [], reason: "not isolated for egress" },
 * //   ingress: { allowed: false, policies: ["x/deny-all"], allowedBy: [],
 * //     reason: "isolated by x/deny-all and no rule allows TCP 80 from 10.244.2.3" } }
 */
export function explainFlow(state: PolicyState, query: FlowQuery): Explanation {
  const what = `Cannot explain ${query.from} -> ${query.to}`;
  if (!PROTOCOLS.includes(query.protocol)) {
    throw new Error(`${what}: protocol ${JSON.stringify(query.protocol)} is not TCP, UDP or SCTP`);
  }
  if (!Number.isInteger(query.port) || query.port < 1 || query.port > 65535) {
    throw new Error(`${what}: port ${query.port} is not 1-65535`);
  }
  const from = flowEnd(state, query.from, what);
  const to = flowEnd(state, query.to, what);
  const [src, dst] = commonFamily(from, to, query, what);

  const srcHolders = holdersOf(state, from, src), dstHolders = holdersOf(state, to, dst);
  const plan = compilePolicies(state, { pods: [...new Set([...srcHolders, ...dstHolders])] });
  const always = alwaysAllowed(state, from, to, src, dst);
  const egressProbe = {
    own: src,
    holders: srcHolders,
    peer: dst,
    text: `${query.protocol} ${query.port} to ${formatIp(dst)}`,
    query,
  };
  const ingressProbe = {
    own: dst,
    holders: dstHolders,
    peer: src,
    text: `${query.protocol} ${query.port} from ${formatIp(src)}`,
    query,
  };
  let egress = verdict(plan, from, "egress", always?.egress, egressProbe);
  let ingress = verdict(plan, to, "ingress", always?.ingress, ingressProbe);
  if (state.clusterPolicies !== undefined && state.clusterPolicies.size > 0) {
    egress = staged(plan, from, "egress", always?.egress, egressProbe, egress);
    ingress = staged(plan, to, "ingress", always?.ingress, ingressProbe, ingress);
  }
  return {
    allowed: egress.allowed && ingress.allowed,
    src: formatIp(src),
    dst: formatIp(dst),
    egress,
    ingress,
  };
}

function flowEnd(state: PolicyState, text: string, what: string): FlowEnd {
  const pod = state.pods.get(text);
  if (pod !== undefined) {
    if (pod.ips.length === 0) throw new Error(`${what}: pod ${text} has no addresses`);
    return { kind: "pod", key: text, pod, addrs: pod.ips.map((ip) => parseIp(ip)) };
  }
  let addr: Ip;
  try {
    addr = parseIp(text);
  } catch {
    if (text.includes("/")) throw new Error(`${what}: pod ${text} is unknown`);
    throw new Error(
      `${what}: ${JSON.stringify(text)} is neither a pod (namespace/name) nor an IP address`,
    );
  }
  // A pod's address is that pod, as far as the kernel rules go: its policies apply. Host-network
  // pods share their node's address, so an address never names one of them.
  const canonical = formatIp(addr);
  const owners = [...state.pods].filter(([, p]) => !p.hostNetwork && p.ips.includes(canonical));
  if (owners.length === 0) return { kind: "ip", addr };
  const [key, owner] = owners.sort(([a], [b]) => (a < b ? -1 : 1))[0];
  return { kind: "pod", key, pod: owner, addrs: [addr] };
}

/**
 * The pods whose policies may judge `end` at `addr`, sorted by key: every pod (not host-network)
 * holding the address; a host-network pod is only itself (never a target).
 */
function holdersOf(state: PolicyState, end: FlowEnd, addr: Ip): string[] {
  if (end.kind !== "pod") return [];
  if (end.pod.hostNetwork) return [end.key];
  const text = formatIp(addr);
  return [...state.pods].filter(([, p]) => !p.hostNetwork && p.ips.includes(text))
    .map(([key]) => key).sort();
}

function addrsOf(end: FlowEnd): readonly Ip[] {
  return end.kind === "pod" ? end.addrs : [end.addr];
}

/** The source and destination addresses of the first family both ends have, IPv4 first. */
function commonFamily(from: FlowEnd, to: FlowEnd, query: FlowQuery, what: string): [Ip, Ip] {
  for (const family of [4, 6] as Family[]) {
    const src = addrsOf(from).find((a) => a.family === family);
    const dst = addrsOf(to).find((a) => a.family === family);
    if (src !== undefined && dst !== undefined) return [src, dst];
  }
  const list = (end: FlowEnd) => addrsOf(end).map(formatIp).join(", ");
  throw new Error(
    `${what}: ${query.from} (${list(from)}) and ${query.to} (${list(to)}) have no address ` +
      `family in common`,
  );
}

/** Reasons the Kubernetes documentation gives for traffic policy never blocks, per direction. */
function alwaysAllowed(
  state: PolicyState,
  from: FlowEnd,
  to: FlowEnd,
  src: Ip,
  dst: Ip,
): { egress?: string; ingress?: string } | undefined {
  if (src.value === dst.value) {
    const reason = "always allowed: a pod to itself";
    return { egress: reason, ingress: reason };
  }
  const ownNode = "always allowed: traffic between a pod and its own node";
  const isNodeOf = (end: FlowEnd, addr: Ip) =>
    end.kind === "pod" &&
    (state.nodes?.get(end.pod.node) ?? []).some((text) => sameAddress(text, addr));
  const out: { egress?: string; ingress?: string } = {};
  if (isNodeOf(from, dst)) out.egress = ownNode;
  if (isNodeOf(to, src)) out.ingress = ownNode;
  return out.egress || out.ingress ? out : undefined;
}

function sameAddress(text: string, addr: Ip): boolean {
  try {
    const ip = parseIp(text);
    return ip.family === addr.family && ip.value === addr.value;
  } catch {
    return false; // a node address we cannot read cannot be this flow's
  }
}

/**
 * The NetworkPolicy verdict `np` placed in the ClusterNetworkPolicy order (issue 19): the stage
 * that decides, and the rule.
 */
function staged(
  plan: PolicyPlan,
  end: FlowEnd,
  direction: Direction,
  always: string | undefined,
  probe: Probe,
  np: DirectionVerdict,
): DirectionVerdict {
  if (always !== undefined) return { ...np, stage: "always" };
  if (end.kind !== "pod" || end.pod.hostNetwork) return { ...np, stage: "default" };
  const decider = deciderOf(plan, probe.holders, direction);
  const target = plan.targets.find((t) => t.pod === decider);
  const stageProbe: StageProbe = {
    peer: probe.peer,
    protocol: probe.query.protocol,
    port: probe.query.port,
    text: probe.text,
  };
  return tieredVerdict(np, {
    tiers: target?.cluster?.[direction],
    isolated: target?.[direction] !== undefined,
    direction,
    probe: stageProbe,
  });
}

/** The flow as one direction sees it: its own address, the pods holding it, the peer. */
interface Probe {
  readonly own: Ip;
  readonly holders: readonly string[];
  readonly peer: Ip;
  readonly text: string;
  readonly query: FlowQuery;
}

/**
 * Of the pods holding an address (sorted by key), the one whose rules the kernel's verdict map
 * sends it to: the first with rules in `direction` (isolated by a NetworkPolicy, or a
 * ClusterNetworkPolicy subject).
 */
function deciderOf(
  plan: PolicyPlan,
  holders: readonly string[],
  direction: Direction,
): string | undefined {
  return holders.find((key) => {
    const t = plan.targets.find((t) => t.pod === key);
    return t?.[direction] !== undefined || t?.cluster?.[direction] !== undefined;
  });
}

/**
 * What one direction says: `end` is the pod whose policies apply (source for egress), at its
 * address `probe.own`, unless another of `probe.holders` (the pods holding it) is isolated first.
 */
function verdict(
  plan: PolicyPlan,
  end: FlowEnd,
  direction: Direction,
  always: string | undefined,
  probe: Probe,
): DirectionVerdict {
  if (end.kind !== "pod") {
    return { allowed: true, policies: [], allowedBy: [], reason: always ?? "not a pod" };
  }
  const decider = deciderOf(plan, probe.holders, direction);
  const isolation = plan.targets.find((t) => t.pod === decider)?.[direction];
  const policies = isolation?.policies ?? [];
  // "x/old holds 10.244.1.5 too: " when a pod sharing the address decides.
  const shared = decider !== undefined && decider !== end.key
    ? `${decider} holds ${formatIp(probe.own)} too: `
    : "";
  if (always !== undefined) return { allowed: true, policies, allowedBy: [], reason: always };
  if (end.pod.hostNetwork) {
    return {
      allowed: true,
      policies,
      allowedBy: [],
      reason: "not isolated: a host-network pod is never a policy target",
    };
  }
  if (isolation === undefined) {
    return { allowed: true, policies, allowedBy: [], reason: `not isolated for ${direction}` };
  }
  const allowedBy = isolation.allow
    .filter((rule) =>
      allowRuleMatches(rule, {
        peer: probe.peer,
        protocol: probe.query.protocol,
        port: probe.query.port,
      })
    )
    .map((rule) => ({ policy: rule.policy, rule: rule.rule }));
  if (allowedBy.length === 0) {
    return {
      allowed: false,
      policies,
      allowedBy,
      reason: `${shared}isolated by ${policies.join(", ")} and no rule allows ${probe.text}`,
    };
  }
  const rules = allowedBy.map((r) => `${r.policy} ${direction} rule ${r.rule}`);
  return { allowed: true, policies, allowedBy, reason: `${shared}allowed by ${rules.join(", ")}` };
}
