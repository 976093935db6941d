// The reconcile step for the agent's nftables table: masquerade for this node's pods and, when
// NetworkPolicy is on, the rules enforcing it, compiled from the cluster state and applied by
// lib/nft/sync.ts. It answers `explain` for the policy state the kernel holds, and reads the drop
// counters for /metrics.
import { type Family, formatIp, gatewayOf, parseCidr } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { LogFields, Logger } from "../log/logger.ts";
import { deleteChains } from "../net/iptables.ts";
import { createTableSync, type TableApplied, type TableSync } from "../nft/sync.ts";
import { createPolicyCompiler as createPlanCompiler, type PolicyState } from "../policy/compile.ts";
import { clusterPolicyCounts } from "../policy/compile_cluster.ts";
import { explainFlow } from "../policy/explain.ts";
import { createPolicyRenderer, DROP_COUNTERS, type PolicyObjects } from "../policy/nft_rules.ts";
import type { Explanation, FlowQuery, PolicyPlan } from "../policy/plan.ts";
import { familiesOf } from "../ip/canonical.ts";
import { desiredTable } from "./desired_table.ts";
import { RECHECK_MS } from "./install_step.ts";
import { LEGACY_CHAINS, type OwnedChain } from "./masq.ts";
import { applyBindings } from "./pod_bindings.ts";
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
  /** `--policy-strict`: the forward rules that keep cut connections cut (lib/node/strict_cut.ts). */
  readonly policyStrict?: boolean;
  /** `--flow-log`, `--flow-log-rate`: deny paths log their flows (lib/node/flow_log_source.ts). */
  readonly flowLog?: "denied" | "none";
  readonly flowLogRate?: number;
}

/** A policy table the kernel now holds: the state it was compiled from and this node's plan. */
export interface AppliedPolicy {
  readonly state: PolicyState;
  readonly plan: PolicyPlan;
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
  /** This node's pods a NetworkPolicy isolates or a ClusterNetworkPolicy selects. */
  readonly targets: number;
  readonly rules: number;
  /** ClusterNetworkPolicies per tier, and those that cannot be enforced exactly. */
  readonly clusterPolicies: { readonly Admin: number; readonly Baseline: number };
  readonly clusterErrors: number;
}

/**
 * Who waits on the bindings a table holds (the admission, lib/node/admission.ts): told the
 * bindings generation of each table the kernel took, or that taking it failed, and asked, just
 * before a table is written, whether it is stale (a write since its snapshot closed something
 * it would open again): then it is not written, and the run after it (already asked for) is.
 */
export interface TableBindings {
  stale(generation: number): boolean;
  applied(generation: number): void;
  failed(generation: number, error: string): void;
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
  deps: {
    readonly tables?: TableSync;
    readonly deleteChains?: DeleteChains;
    /** Called after each policy table the kernel took (strict mode, the flow log's names). */
    readonly onPolicyApplied?: (applied: AppliedPolicy) => void;
    readonly bindings?: TableBindings;
  } = {},
) {
  const tables = deps.tables ?? createTableSync();
  const legacy = createLegacyRemoval(log, deps.deleteChains ?? deleteChains);
  const flowLog = opts.flowLog === "denied" ? { rate: opts.flowLogRate ?? 100 } : undefined;
  const compiler = createPolicyCompiler(opts.nodeName, log, flowLog !== undefined);
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
      try {
        compiled = compiler.compile(state);
      } catch (err) {
        if (state.bindings) deps.bindings?.failed(state.bindings.generation, String(err));
        throw err;
      }
      planned = compiled.planned;
    }
    const table = desiredTable({
      clusterCidrs: input.cluster,
      noMasqueradeCidrs: opts.noMasqueradeCidrs,
      podCIDRs: own.podCIDRs,
      policy: compiled?.objects,
      flowLog,
      strict: opts.policyStrict,
    });
    const rendered = performance.now();
    const gauges = compiled?.gauges;
    let done: TableApplied;
    const generation = state.bindings?.generation;
    const watcher = generation === undefined ? undefined : deps.bindings;
    try {
      done = await tables.apply(table, {
        verify: input.full,
        ...(watcher
          ? {
            stale: () => watcher.stale(generation!),
            // Under the write lock: an admission's patch queued behind this write sees it.
            written: () => watcher.applied(generation!),
          }
          : {}),
      });
    } catch (err) {
      watcher?.failed(generation!, (err as Error).message);
      return { changed: false, gauges, problem: (err as Error).message };
    }
    // Computed before an admission's write that it would undo: the next run (asked for by that
    // admission) applies the newer state instead. Not an error, and the kernel is unchanged.
    if (done.superseded) return { changed: false };
    if (compiled) {
      applied = compiled.state;
      deps.onPolicyApplied?.({ state: compiled.state, plan: compiled.plan });
    }
    reportApplied(log, table.name, done, {
      policyTargets: gauges?.targets,
      ms: Math.round(performance.now() - started),
      // Where it went: compiling the policies, turning them into the table, and applying it,
      // named after how: `elements` (one nfnetlink batch) or `nft` (an `nft -f` transaction).
      stepsMs: {
        plan: Math.round(planned - started),
        rules: Math.round(rendered - planned),
        [done.path ?? "nft"]: Math.round(performance.now() - rendered),
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

/**
 * Compiles NetworkPolicy and ClusterNetworkPolicy for this node; logs each policy that cannot be
 * enforced, once per policy and error.
 */
function createPolicyCompiler(nodeName: string, log: Logger, flowLog: boolean) {
  let reported = new Set<string>();
  const report = (now: Set<string>, key: string, message: string, fields: LogFields) => {
    now.add(key);
    if (!reported.has(key)) log.error(message, fields);
  };
  // Both keep their work between runs: a pod event costs what it changes, not the whole cluster.
  const plans = createPlanCompiler({ node: nodeName });
  const renderer = createPolicyRenderer({ flowLog });
  return {
    compile(state: ClusterState) {
      const policy = state.policy!;
      const listed: PolicyState = {
        ...policy,
        nodes: addressesOf(state.nodes),
        nodeLabels: labelsOf(state.nodes),
      };
      // This node's admissions outrank the API about its addresses (lib/node/pod_bindings.ts).
      const bindings = state.bindings?.bindings;
      const full = bindings && bindings.size > 0
        ? applyBindings(listed, bindings, nodeName)
        : listed;
      const plan = plans.compile(full);
      const planned = performance.now();
      const objects: PolicyObjects = renderer.render(plan);
      const now = new Set<string>();
      for (const e of plan.errors) {
        report(
          now,
          `np\n${e.policy}\n${e.error}`,
          "NetworkPolicy cannot be enforced exactly: its pods are isolated, nothing it " +
            "allows is allowed",
          { policy: e.policy, error: e.error },
        );
      }
      for (const e of plan.clusterErrors ?? []) {
        report(
          now,
          `cnp\n${e.policy}\n${e.error}`,
          "ClusterNetworkPolicy cannot be enforced exactly: its subjects are denied in the " +
            "directions it has rules for, at its tier and priority",
          { clusterNetworkPolicy: e.policy, error: e.error },
        );
      }
      reported = now;
      const counts = clusterPolicyCounts(policy.clusterPolicies);
      const gauges: PolicyGauges = {
        policies: policy.policies.size,
        errors: plan.errors.length,
        targets: plan.targets.length,
        rules: objects.ruleCount,
        clusterPolicies: { Admin: counts.Admin, Baseline: counts.Baseline },
        clusterErrors: counts.errors,
      };
      return { state: full, plan, objects, gauges, planned };
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
const labelMemo = new WeakMap<
  ReadonlyMap<string, NodeInfo>,
  Map<string, Readonly<Record<string, string>>>
>();

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

/** Node name -> its labels (ClusterNetworkPolicy `nodes` peers), once per list. */
function labelsOf(
  nodes: ReadonlyMap<string, NodeInfo>,
): Map<string, Readonly<Record<string, string>>> {
  let m = labelMemo.get(nodes);
  if (!m) {
    labelMemo.set(nodes, m = new Map([...nodes.values()].map((n) => [n.name, n.labels ?? {}])));
  }
  return m;
}
