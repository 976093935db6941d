// Pure masquerade and forward rules for one address family, as chains iptables-restore can load.
// The rule count depends on the cluster CIDRs, never on the number of nodes.
import type { Family } from "../ip/cidr.ts";
import { type Cidr, cidrContains } from "../ip/cidr.ts";
import type { OwnedChain } from "../net/iptables.ts";
import { canonicalCidr } from "./desired.ts";

export type { OwnedChain };

/** nat chain: pods -> outside the cluster are masqueraded, everything else keeps its source. */
export const MASQ_CHAIN = "MYCNI-POSTRTG";
/** filter chain: forwarded pod traffic is accepted even when FORWARD's policy is DROP (Docker). */
export const FORWARD_CHAIN = "MYCNI-FWD";

/** What the rules are computed from. */
export interface MasqInput {
  /** Destinations never masqueraded (every pod in the cluster). */
  readonly clusterCidrs: readonly string[];
  /** This node's podCIDRs: their traffic to the outside is masqueraded. */
  readonly podCIDRs: readonly string[];
}

/** The chain skeletons without rules: what `--uninstall` removes. */
export const OWNED_CHAINS: readonly Omit<OwnedChain, "rules">[] = [
  {
    table: "nat",
    chain: MASQ_CHAIN,
    hook: "POSTROUTING",
    jump: `-A POSTROUTING -m comment --comment "mycni masquerade" -j ${MASQ_CHAIN}`,
  },
  {
    table: "filter",
    chain: FORWARD_CHAIN,
    hook: "FORWARD",
    jump: `-A FORWARD -m comment --comment "mycni forward" -j ${FORWARD_CHAIN}`,
  },
];

const MULTICAST: Record<Family, string> = { 4: "224.0.0.0/4", 6: "ff00::/8" };

/**
 * The chains for `family`. Order matters in the nat chain: packets kube-proxy marked for its own
 * masquerade return first, then anything to a pod returns (pod->pod and node->pod keep their
 * source), then this node's pods going anywhere else are masqueraded with `--random-fully`.
 *
 * @example
 * desiredChains(4, { clusterCidrs: ["10.244.0.0/16"], podCIDRs: ["10.244.1.0/24"] });
 */
export function desiredChains(family: Family, input: MasqInput): OwnedChain[] {
  const cluster = input.clusterCidrs.filter((c) => parsed(c)?.family === family);
  const pods = input.podCIDRs.filter((c) => parsed(c)?.family === family);
  const nat = [
    `-A ${MASQ_CHAIN} -m mark --mark 0x4000/0x4000 -j RETURN`,
    ...[...cluster, ...uncovered(pods, cluster)].map((c) => `-A ${MASQ_CHAIN} -d ${c} -j RETURN`),
    ...pods.map((c) =>
      `-A ${MASQ_CHAIN} -s ${c} ! -d ${MULTICAST[family]} -j MASQUERADE --random-fully`
    ),
  ];
  const accept = [...cluster, ...uncovered(pods, cluster)];
  const filter = [
    ...accept.map((c) => `-A ${FORWARD_CHAIN} -s ${c} -j ACCEPT`),
    ...accept.map((c) => `-A ${FORWARD_CHAIN} -d ${c} -j ACCEPT`),
  ];
  const [natChain, filterChain] = OWNED_CHAINS;
  return [{ ...natChain, rules: nat }, { ...filterChain, rules: filter }];
}

/** This node's podCIDRs that `--cluster-cidr` forgot: they still must never be NATed. */
function uncovered(pods: readonly string[], cluster: readonly string[]): string[] {
  return pods.filter((p) => {
    const pc = parsed(p)!;
    return !cluster.some((c) => {
      const cc = parsed(c)!;
      return cc.prefix <= pc.prefix && cidrContains(cc, { family: pc.family, value: pc.network });
    });
  });
}

function parsed(text: string): Cidr | undefined {
  const c = canonicalCidr(text);
  return "cidr" in c ? c.cidr : undefined;
}
