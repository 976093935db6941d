// The reconcile step for the agent's nftables table: masquerade for this node's pods and, when
// NetworkPolicy is on, the rules enforcing it, compiled from the cluster state and applied by
// lib/nft/sync.ts. It answers `explain` for the policy state the kernel holds, and reads the drop
// counters for /metrics.
import { type Family, formatIp, gatewayOf, parseCidr } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import { deleteChains } from "../net/iptables.ts";
import { createTableSync, type TableApplied, type TableSync } from "../nft/sync.ts";
import { createPolicyCompiler as createPlanCompiler, type PolicyState } from "../policy/compile.ts";
import { explainFlow } from "../policy/explain.ts";
import { createPolicyRenderer, DROP_COUNTERS, type PolicyObjects } from "../policy/nft_rules.ts";
import type { Explanation, FlowQuery } from "../policy/plan.ts";
import { familiesOf } from "../ip/canonical.ts";
import { desiredTable } from "./desired_table.ts";
import { RECHECK_MS } from "./install_step.ts";
import { LEGACY_CHAINS, type OwnedChain } from "./masq.ts";
import type { StepReport } from "./steps.ts";
import type { ClusterState } from "./sync.ts";

/** Removes our jumps and chains for `family`; the ones it removed (lib/net/iptables.ts). */
export type DeleteChains = (
  family: Family,
  chains: readonly Omit<OwnedChain, "rules">[],
) => Promise<string[]>;

/** What the table step works from. */
export interface TableStepOptions {
  readonly nodeName: string;
  readonly noMasqueradeCidrs: readonly string[];
  /** NetworkPolicy is enforced (`--network-policy` in API mode). */
  readonly policy: boolean;
}

/** What one run of the table step did. */
export interface TableReport extends StepReport {
  /** An nftables transaction ran. */
  readonly changed: boolean;
  /** The compiled policy in numbers (/metrics), when it was compiled. */
  readonly gauges?: PolicyGauges;
  /** With NetworkPolicy: whether the kernel enforces the listed state (undefined: unchanged). */
  readonly policySynced?: boolean;
  /** Compile and apply time of this policy change, in seconds. */
  readonly policySeconds?: number;
}

/** The compiled policy in numbers. */
export interface PolicyGauges {
  readonly policies: number;
  /** Policies that cannot be enforced exactly (enforced fail-closed). */
  readonly errors: number;
  readonly targets: number;
  readonly rules: number;
}

/** One run's input. */
export interface TableInput {
  readonly state: ClusterState;
  /** This node; without it (no podCIDR known) there is nothing to masquerade or police. */
  readonly own: NodeInfo | undefined;
  /** The cluster CIDRs of `state.nodes`. */
  readonly cluster: readonly string[];
  /** A full resync: the kernel's table is read back and repaired. */
  readonly full: boolean;
}

/**
 * The nftables table step.
 *
 * @example
 * const table = createTableStep({ nodeName: "n1", noMasqueradeCidrs: [], policy: true }, log);
 * await table.run({ state, own, cluster, full: true }); // { changed: true, policySynced: true, ... }
 */
export function createTableStep(
  opts: TableStepOptions,
  log: Logger,
  deps: { readonly tables?: TableSync; readonly deleteChains?: DeleteChains } = {},
) {
  const tables = deps.tables ?? createTableSync();
  const legacy = createLegacyRemoval(log, deps.deleteChains ?? deleteChains);
  const compiler = createPolicyCompiler(opts.nodeName, log);
  let waitLogged = false;
  // The policy state the kernel's table was made from: what `explain` answers for.
  let applied: PolicyState | undefined;

  async function run(input: TableInput): Promise<TableReport> {
    const { state, own } = input;
    if (!own) return { changed: false };
    const started = performance.now();
    let planned = started;
    let compiled;
    if (opts.policy) {
      if (!state.policy) {
        // Enforcing half-listed state could open an isolated pod: keep the kernel's table. Not an
        // error (every start passes through it): the run is simply not done yet.
        if (!waitLogged) log.info("waiting for pods, namespaces and policies to be listed");
        waitLogged = true;
        return { changed: false, policySynced: false };
      }
      compiled = compiler.compile(state);
      planned = compiled.planned;
    }
    const table = desiredTable({
      clusterCidrs: input.cluster,
      noMasqueradeCidrs: opts.noMasqueradeCidrs,
      podCIDRs: own.podCIDRs,
      policy: compiled?.objects,
    });
    const rendered = performance.now();
    const gauges = compiled?.gauges;
    let done: TableApplied;
    try {
      done = await tables.apply(table, { verify: input.full });
    } catch (err) {
      return { changed: false, gauges, problem: (err as Error).message };
    }
    if (compiled) applied = compiled.state;
    reportApplied(log, table.name, done, {
      policyTargets: gauges?.targets,
      ms: Math.round(performance.now() - started),
      // Where it went: compiling the policies, turning them into the table, nft applying it.
      stepsMs: {
        plan: Math.round(planned - started),
        rules: Math.round(rendered - planned),
        nft: Math.round(performance.now() - rendered),
      },
    });
    const report = {
      changed: done.changed,
      gauges,
      ...(opts.policy
        ? { policySynced: true, policySeconds: (performance.now() - started) / 1000 }
        : {}),
    };
    // Masquerade lived in iptables before: remove that chain only now that the table NATs.
    const problem = await legacy.remove(own, input.full);
    return problem === undefined ? report : { ...report, problem };
  }

  return {
    run,
    /** Answers `explain` for the policy state the kernel holds. */
    explain(q: FlowQuery): Explanation {
      if (!applied) throw new Error("NetworkPolicy state is not synced yet");
      return explainFlow(applied, q);
    },
    /** NetworkPolicy drop counters by direction. */
    async drops(): Promise<Record<string, number>> {
      const counters = await tables.counters();
      const out: Record<string, number> = {};
      for (const [direction, name] of Object.entries(DROP_COUNTERS)) {
        out[direction] = counters.get(name) ?? 0;
      }
      return out;
    },
  };
}

/** The log lines of one apply: a repair, lost counters, the transaction. */
function reportApplied(
  log: Logger,
  table: string,
  done: TableApplied,
  fields: Record<string, unknown>,
): void {
  if (done.differences.length > 0) {
    log.warn("nftables table differs from the one applied: loading it whole", {
      table,
      differences: done.differences,
    });
  }
  if (done.countersLost !== undefined) {
    log.warn("drop counters lost: they could not be read before the table was reloaded", {
      table,
      error: done.countersLost,
    });
  }
  if (done.changed) log.info("nftables table synced", { table, whole: done.whole, ...fields });
}

/** Compiles NetworkPolicy for this node; logs each policy that cannot be enforced, once. */
function createPolicyCompiler(nodeName: string, log: Logger) {
  let reported = new Set<string>();
  // Both keep their work between runs: a pod event costs what it changes, not the whole cluster.
  const plans = createPlanCompiler({ node: nodeName });
  const renderer = createPolicyRenderer();
  return {
    compile(state: ClusterState) {
      const policy = state.policy!;
      const full: PolicyState = { ...policy, nodes: addressesOf(state.nodes) };
      const plan = plans.compile(full);
      const planned = performance.now();
      const objects: PolicyObjects = renderer.render(plan);
      const now = new Set<string>();
      for (const e of plan.errors) {
        const key = `${e.policy}\n${e.error}`;
        now.add(key);
        if (!reported.has(key)) {
          log.error(
            "NetworkPolicy cannot be enforced exactly: its pods are isolated, nothing it " +
              "allows is allowed",
            { policy: e.policy, error: e.error },
          );
        }
      }
      reported = now;
      const gauges: PolicyGauges = {
        policies: policy.policies.size,
        errors: plan.errors.length,
        targets: plan.targets.length,
        rules: objects.ruleCount,
      };
      return { state: full, objects, gauges, planned };
    },
  };
}

/**
 * Removes the iptables masquerade chain of older versions: after the first table applied, and
 * on a full resync once a {@linkcode RECHECK_MS}. Returns why it could not, if it could not.
 */
function createLegacyRemoval(log: Logger, remove: DeleteChains, now: () => number = Date.now) {
  let removed = false;
  let checkedAt = 0;
  return {
    async remove(own: NodeInfo, full: boolean): Promise<string | undefined> {
      const recheck = full && now() - checkedAt >= RECHECK_MS;
      if (removed && !recheck) return undefined;
      if (recheck) checkedAt = now();
      try {
        for (const family of familiesOf(own.podCIDRs)) {
          for (const chain of await remove(family, LEGACY_CHAINS)) {
            log.info("legacy iptables chain removed", { family, chain });
          }
        }
      } catch (err) {
        return (err as Error).message;
      }
      removed = true;
      return undefined;
    },
  };
}

const addressMemo = new WeakMap<ReadonlyMap<string, NodeInfo>, Map<string, readonly string[]>>();

/**
 * Node name -> its addresses (what explain needs to know a pod's own node), once per list: its
 * node addresses and its bridge's (the first of each podCIDR), which the node's own traffic to
 * its pods (kubelet probes) leaves from and which the forward hook never sees.
 */
function addressesOf(nodes: ReadonlyMap<string, NodeInfo>): Map<string, readonly string[]> {
  let m = addressMemo.get(nodes);
  if (!m) {
    m = new Map([...nodes.values()].map((n) => [n.name, [...n.ips, ...bridgeAddresses(n)]]));
    addressMemo.set(nodes, m);
  }
  return m;
}

function bridgeAddresses(node: NodeInfo): string[] {
  return node.podCIDRs.flatMap((c) => {
    try {
      return [formatIp(gatewayOf(parseCidr(c)))];
    } catch {
      return []; // a podCIDR we cannot read has no bridge of ours
    }
  });
}
