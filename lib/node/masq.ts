// Masquerade for this node's pods, as nftables objects in the agent's table, and the one
// iptables chain the agent still owns: forwarded pod traffic accepted in the filter table, for
// hosts whose FORWARD policy is DROP (Docker sets it; an accept in our own nftables table cannot
// overrule a drop in another table at the same hook). Pure. The rule count depends on the
// families in use, never on the number of nodes: the exempt destinations are an interval set.
import { validCidrs } from "../ip/canonical.ts";
import {
  aggregateCidrs,
  type Cidr,
  type Family,
  formatCidr,
  MULTICAST,
  parseCidr,
} from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import { NFT_ADDR, NFT_IP, type NftChain, type NftSet } from "../nft/ruleset.ts";
import type { OwnedChain } from "../net/iptables.ts";

export type { OwnedChain };

/** filter chain: forwarded pod traffic is accepted even when FORWARD's policy is DROP (Docker). */
export const FORWARD_CHAIN = "MYCNI-FWD";
/** The iptables nat chain masquerade lived in before it moved to nftables: removed on start. */
export const LEGACY_MASQ_CHAIN = "MYCNI-POSTRTG";

/** What the rules are computed from. */
export interface MasqInput {
  /** Destinations never masqueraded: every pod in the cluster. */
  readonly clusterCidrs: readonly string[];
  /** More destinations never masqueraded (`--no-masquerade-cidr`: VPNs, peered networks). */
  readonly noMasqueradeCidrs?: readonly string[];
  /** This node's podCIDRs: their traffic to anywhere else is masqueraded. */
  readonly podCIDRs: readonly string[];
}

const FORWARD_SKELETON: Omit<OwnedChain, "rules"> = {
  table: "filter",
  chain: FORWARD_CHAIN,
  hook: "FORWARD",
  jump: `-A FORWARD -m comment --comment "mycni forward" -j ${FORWARD_CHAIN}`,
};

/** The iptables chain skeletons the agent owns now or owned before: what `--uninstall` removes. */
export const OWNED_CHAINS: readonly Omit<OwnedChain, "rules">[] = [
  FORWARD_SKELETON,
  {
    table: "nat",
    chain: LEGACY_MASQ_CHAIN,
    hook: "POSTROUTING",
    jump: `-A POSTROUTING -m comment --comment "mycni masquerade" -j ${LEGACY_MASQ_CHAIN}`,
  },
];

/** The legacy chains an upgrade must remove (the agent masqueraded in iptables before). */
export const LEGACY_CHAINS: readonly Omit<OwnedChain, "rules">[] = OWNED_CHAINS.slice(1);

/**
 * The destinations never masqueraded: `--cluster-cidr` when given, else the union of every
 * node's podCIDRs, aggregated so a cluster allocated from one range costs a handful of rules.
 *
 * @example
 * clusterCidrs([], [{ name: "a", ips: [], podCIDRs: ["10.244.0.0/24", "10.244.1.0/24"] }]);
 * // ["10.244.0.0/23"]
 */
export function clusterCidrs(given: readonly string[], nodes: Iterable<NodeInfo>): string[] {
  if (given.length > 0) return aggregateCidrs(given.map((c) => parseCidr(c))).map(formatCidr);
  const all: Cidr[] = [];
  for (const node of nodes) all.push(...validCidrs(node.podCIDRs));
  return aggregateCidrs(all).map(formatCidr);
}

/**
 * The iptables filter chain for `family`: forwarded traffic from or to any pod is accepted.
 *
 * @example
 * forwardChain(4, { clusterCidrs: ["10.244.0.0/16"], podCIDRs: ["10.244.1.0/24"] });
 * // { ...FORWARD_SKELETON, rules: ["-A MYCNI-FWD -s 10.244.0.0/16 -j ACCEPT", "-A MYCNI-FWD -d 10.244.0.0/16 -j ACCEPT"] }
 */
export function forwardChain(family: Family, input: MasqInput): OwnedChain {
  const pods = exempt(family, { ...input, noMasqueradeCidrs: [] });
  return {
    ...FORWARD_SKELETON,
    rules: [
      ...pods.map((c) => `-A ${FORWARD_CHAIN} -s ${c} -j ACCEPT`),
      ...pods.map((c) => `-A ${FORWARD_CHAIN} -d ${c} -j ACCEPT`),
    ],
  };
}

/** Whether `name` is one of the masquerade sets {@linkcode masqueradeObjects} declares. */
export function isMasqueradeSet(name: string): boolean {
  return /^(podnets|nomasq)[46]$/.test(name);
}

/**
 * The masquerade part of the agent's nftables table: per family in use, the set of this node's
 * podCIDRs, the set of destinations never masqueraded, and one rule in a nat postrouting chain.
 * Packets kube-proxy marked for its own masquerade are left to it.
 *
 * @example
 * masqueradeObjects({ clusterCidrs: ["10.244.0.0/16"], podCIDRs: ["10.244.1.0/24"] }).chain.rules;
 * // ["meta mark & 0x4000 == 0x4000 return",
 * //  "ip saddr @podnets4 ip daddr != @nomasq4 ip daddr != 224.0.0.0/4 masquerade fully-random"]
 */
export function masqueradeObjects(
  input: MasqInput,
): { sets: Map<string, NftSet>; chain: NftChain } {
  const sets = new Map<string, NftSet>();
  const rules = ["meta mark & 0x4000 == 0x4000 return"];
  for (const f of [4, 6] as const) {
    const pods = ofFamily(input.podCIDRs, f).map(formatCidr);
    if (pods.length === 0) continue;
    const set = (items: readonly string[]): NftSet => ({
      kind: "set",
      type: NFT_ADDR[f],
      interval: true,
      elements: new Map(items.map((c) => [c, c])),
    });
    sets.set(`podnets${f}`, set(aggregateCidrs(ofFamily(pods, f)).map(formatCidr)));
    sets.set(`nomasq${f}`, set(exempt(f, input)));
    rules.push(
      `${NFT_IP[f]} saddr @podnets${f} ${NFT_IP[f]} daddr != @nomasq${f} ${NFT_IP[f]} daddr != ${
        MULTICAST[f]
      } masquerade fully-random`,
    );
  }
  return {
    sets,
    chain: { decl: "type nat hook postrouting priority srcnat; policy accept;", rules },
  };
}

/**
 * Destinations of `family` that keep the pod's address: the cluster CIDRs, this node's
 * podCIDRs when `--cluster-cidr` forgot them, and the `--no-masquerade-cidr` list, aggregated
 * into disjoint networks (an nftables interval set refuses overlapping elements).
 */
function exempt(family: Family, input: MasqInput): string[] {
  const all = [
    ...ofFamily(input.clusterCidrs, family),
    ...ofFamily(input.podCIDRs, family),
    ...ofFamily(input.noMasqueradeCidrs ?? [], family),
  ];
  return aggregateCidrs(all).map(formatCidr);
}

function ofFamily(texts: readonly string[], family: Family): Cidr[] {
  return validCidrs(texts).filter((c) => c.family === family);
}
