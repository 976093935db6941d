// The reconcile steps that let pod traffic be forwarded: the forwarding sysctls (and, with
// NetworkPolicy, br_netfilter's, so bridged traffic meets the rules), and the one iptables chain
// the agent owns, accepting pod traffic where the host's FORWARD policy is DROP.
import type { Family } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import { ensureChains, type OwnedChain } from "../net/iptables.ts";
import { BRIDGE_NF_CALL, ensureSysctl, IPV4_FORWARD, IPV6_FORWARD } from "../net/sysctl.ts";
import { familiesOf } from "../ip/canonical.ts";
import { RECHECK_MS } from "./install_step.ts";
import { forwardChain } from "./masq.ts";
import type { StepReport } from "./steps.ts";

/** Sets `/proc/sys/<key>` to `value`; whether it changed it (lib/net/sysctl.ts). */
export type EnsureSysctl = (key: string, value: string) => Promise<boolean>;

/** What the forwarding step found. */
export interface ForwardingReport extends StepReport {
  /** Bridged traffic reaches the forward hook; undefined when NetworkPolicy is off. */
  readonly brNetfilter?: boolean;
}

/**
 * Enables IPv4 forwarding (IPv6 too when this node has an IPv6 podCIDR) and, when `policy`,
 * bridged traffic through netfilter: same-node pod traffic is bridged, and without
 * br_netfilter it never meets the policy rules.
 *
 * @example
 * const forwarding = createForwardingStep(true, log);
 * await forwarding.run(own); // { brNetfilter: true }
 */
export function createForwardingStep(
  policy: boolean,
  log: Logger,
  sysctl: EnsureSysctl = ensureSysctl,
) {
  let lastProblem = "";
  const set = async (key: string) => {
    if (await sysctl(key, "1")) log.info("sysctl set", { key, value: "1" });
  };

  /** Why bridged traffic is not policed, or "" when it is. */
  async function bridgeProblem(): Promise<string> {
    for (const key of BRIDGE_NF_CALL) {
      try {
        await set(key);
      } catch (err) {
        return err instanceof Deno.errors.NotFound
          ? "br_netfilter is not loaded (no /proc/sys/net/bridge): traffic between pods of " +
            "one node is not policed; load it on the host (modprobe br_netfilter)"
          : `Cannot set ${key}: ${(err as Error).message}`;
      }
    }
    return "";
  }

  return {
    async run(own: NodeInfo | undefined): Promise<ForwardingReport> {
      await set(IPV4_FORWARD);
      if (own && familiesOf(own.podCIDRs).includes(6)) await set(IPV6_FORWARD);
      if (!policy) return {};
      const problem = await bridgeProblem();
      if (problem && problem !== lastProblem) {
        log.error("NetworkPolicy is incomplete", { problem });
      }
      lastProblem = problem;
      return problem ? { brNetfilter: false, problem } : { brNetfilter: true };
    },
  };
}

/** Makes the kernel hold exactly `chains` for `family`; the chains it changed (lib/net/iptables.ts). */
export type EnsureChains = (family: Family, chains: readonly OwnedChain[]) => Promise<string[]>;

/**
 * The iptables filter chain accepting forwarded traffic from and to the cluster's pods, per
 * family in use: written when its rules change, and re-checked on a full resync once a
 * {@linkcode RECHECK_MS}.
 *
 * @example
 * const chain = createForwardChainStep(log);
 * await chain.run(["10.244.0.0/16"], own, false);
 */
export function createForwardChainStep(
  log: Logger,
  iptables: EnsureChains = ensureChains,
  now: () => number = Date.now,
) {
  const applied = new Map<Family, string>();
  let checkedAt = 0;
  return {
    async run(
      cluster: readonly string[],
      own: NodeInfo | undefined,
      full: boolean,
    ): Promise<StepReport> {
      const pods = (own?.podCIDRs ?? []).filter((c) => familiesOf([c]).length > 0);
      const recheck = full && now() - checkedAt >= RECHECK_MS;
      if (recheck) checkedAt = now();
      for (const family of familiesOf([...pods, ...cluster])) {
        const chains = [forwardChain(family, { clusterCidrs: cluster, podCIDRs: pods })];
        const key = JSON.stringify(chains);
        if (!recheck && applied.get(family) === key) continue;
        applied.delete(family);
        for (const chain of await iptables(family, chains)) {
          const rules = chains.find((c) => `${c.table}/${c.chain}` === chain)?.rules.length;
          log.info("iptables chain synced", { family, chain, rules });
        }
        applied.set(family, key);
      }
      return {};
    },
  };
}
