// The agent's one nftables table (`inet mycni`, DESIGN.md "NetworkPolicy"): masquerade for this
// node's pods and, when NetworkPolicy is on, the forward-hook rules that enforce it. Pure:
// desired state in, an NftTable out; lib/nft/sync.ts applies it.
import { NFT_TABLE, type NftChain, type NftSet, type NftTable } from "../nft/ruleset.ts";
import { flowLogObjects } from "../policy/flow_log_rules.ts";
import type { Direction } from "../kube/policy_objects.ts";
import { DROP_COUNTERS, type PolicyObjects } from "../policy/nft_rules.ts";
import { strictForwardRules, strictObjects } from "../policy/strict_rules.ts";
import { type MasqInput, masqueradeObjects } from "./masq.ts";

/**
 * Chains that only drop (counted), one per direction: where the admission's fast path maps a
 * new pod's address in a direction it is isolated in, until the reconcile that follows maps it
 * to its own chain (lib/node/fast_admission.ts). Always in the table with NetworkPolicy, so the
 * fast path writes elements only. (Names no chain of lib/policy has: theirs end in a digest.)
 */
export const ISOLATED_CHAINS = { ingress: "ing_isolated", egress: "egr_isolated" } as const;

/** What the table is computed from. */
export interface TableInput extends MasqInput {
  /** The policy objects for this node's pods; absent with `--network-policy=false`. */
  readonly policy?: PolicyObjects;
  /**
   * With `policy` rendered with the flow log (`--flow-log denied`): the objects its rules use,
   * at `rate` records a second (`--flow-log-rate`).
   */
  readonly flowLog?: { readonly rate: number };
  /** With `policy`, `--policy-strict`: the rules that keep cut connections cut. */
  readonly strict?: boolean;
}

/**
 * The whole table for this node.
 *
 * @example
 * desiredTable({ clusterCidrs: ["10.244.0.0/16"], podCIDRs: ["10.244.1.0/24"] });
 */
export function desiredTable(input: TableInput): NftTable {
  const masq = masqueradeObjects(input);
  const sets = new Map<string, NftSet>(masq.sets);
  const chains = new Map<string, NftChain>();
  const counters = Object.values(DROP_COUNTERS);
  const limits = new Map<string, string>();
  if (input.policy) {
    const strict = input.strict ? strictObjects() : new Map<string, NftSet>();
    const log = input.flowLog && flowLogObjects(input.flowLog.rate);
    for (const [name, set] of [...input.policy.sets, ...strict, ...log?.sets ?? []]) {
      sets.set(name, set);
    }
    for (const [name, spec] of log?.limits ?? []) limits.set(name, spec);
    counters.push(...log?.counters ?? []);
    for (const [name, chain] of input.policy.chains) chains.set(name, chain);
    for (const [dir, name] of Object.entries(ISOLATED_CHAINS)) {
      chains.set(name, { rules: [`counter name ${DROP_COUNTERS[dir as Direction]} drop`] });
    }
    chains.set("forward", {
      decl: "type filter hook forward priority filter; policy accept;",
      // Replies of connections a policy allowed (and of connections older than the policy).
      rules: [
        "ct state established,related accept",
        ...(input.strict ? strictForwardRules() : []),
        ...input.policy.forwardRules,
      ],
    });
  }
  chains.set("postrouting", masq.chain);
  return {
    name: `${NFT_TABLE.family} ${NFT_TABLE.name}`,
    counters,
    limits,
    sets,
    chains,
  };
}
