// One reconcile of this node's datapath from the cluster state, as a list of steps: plugin and
// conflist, forwarding, the agent's nftables table (masquerade, NetworkPolicy), the iptables
// forward chain, routes. Level-triggered: each step compares with what the kernel and the disk
// hold (or with what it last did, re-checked on full resyncs) and changes only the difference,
// so running it twice changes nothing the second time. Each step keeps its own memo and returns
// a report; the reports become the agent's status here, in one place.
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import type { PolicyState } from "../policy/compile.ts";
import type { Explanation, FlowQuery } from "../policy/plan.ts";
import type { BindingsView } from "./pod_bindings.ts";
import { clusterCidrs } from "./masq.ts";
import { createDatapath, type Datapath, type RoutesReport } from "./datapath.ts";
import {
  createForwardChainStep,
  createForwardingStep,
  type ForwardingReport,
} from "./forwarding_step.ts";
import type { AgentStatus } from "./health.ts";
import { defaultPluginSource } from "./install.ts";
import {
  type ConflistOptions,
  createConflistStep,
  createPluginStep,
  type PluginReport,
} from "./install_step.ts";
import type { AgentOptions } from "./options.ts";
import { stepRunner } from "./steps.ts";
import { createTableStep, type TableReport } from "./table_step.ts";

/** What the agent reconciles towards. */
export interface ClusterState {
  readonly nodes: ReadonlyMap<string, NodeInfo>;
  /**
   * Pods, namespaces and policies, once every one of them has been listed; undefined before
   * that, and always without `--network-policy` or in static mode.
   */
  readonly policy?: Omit<PolicyState, "nodes">;
  /**
   * This node's address -> pod bindings (admission, lib/node/pod_bindings.ts) as the snapshot
   * was taken: applied to `policy` before it is compiled. Absent without admission.
   */
  readonly bindings?: BindingsView;
}

/** What changed since the last run. */
export interface RunOptions {
  /** Also re-verify what memory says is in place (periodic resync, first run, retry). */
  readonly full: boolean;
  /** The node list may have changed (routes and rules that depend on it are reconciled). */
  readonly nodesChanged: boolean;
}

/** Runs reconciles for one agent; remembers what it did to keep no-op reconciles cheap. */
export interface NodeSync {
  /** Reconciles towards `state`; returns whether everything succeeded. */
  run(state: ClusterState, opts: RunOptions): Promise<boolean>;
  /** Answers `explain` from the policy state the kernel holds. */
  explain(q: FlowQuery): Explanation;
  /** NetworkPolicy drop counters by direction. */
  drops(): Promise<Record<string, number>>;
}

/** The steps of a reconcile, each with its own memo (the real ones unless a test gives fakes). */
export interface NodeSteps {
  readonly plugin: ReturnType<typeof createPluginStep>;
  readonly conflist: ReturnType<typeof createConflistStep>;
  readonly forwarding: ReturnType<typeof createForwardingStep>;
  readonly table: ReturnType<typeof createTableStep>;
  readonly forwardChain: ReturnType<typeof createForwardChainStep>;
  readonly routes: Pick<Datapath, "run">;
}

/**
 * The real steps for the agent `opts` describes (`policy`: NetworkPolicy is enforced);
 * `tableDeps` for the table step: the table sync the admission patches and its bindings tracker
 * (pod admission), strict mode and the flow log (lib/node/policy_sight.ts).
 *
 * @example
 * const sync = createNodeSync(opts, status, log, nodeSteps(opts, status.policyEnabled, log));
 */
export function nodeSteps(
  opts: AgentOptions,
  policy: boolean,
  log: Logger,
  tableDeps: Parameters<typeof createTableStep>[2] = {},
): NodeSteps {
  const datapath = createDatapath(opts, log);
  return {
    plugin: createPluginStep({
      src: opts.pluginSrc ?? defaultPluginSource(),
      binDir: opts.cniBinDir,
    }, log),
    conflist: createConflistStep(conflistOptions(opts, policy), datapath.mtu, log),
    forwarding: createForwardingStep(policy, log),
    table: createTableStep({ ...opts, policy }, log, tableDeps),
    forwardChain: createForwardChainStep(log),
    routes: datapath,
  };
}

/**
 * What the conflist says besides the node's podCIDRs: with policy (API mode) the agent admits
 * every pod, so the plugin must ask it (DESIGN.md "Pod lifecycle"); otherwise nobody.
 *
 * @example
 * conflistOptions(opts, true).agentSocket; // "/run/mycni/agent.sock"
 */
export function conflistOptions(opts: AgentOptions, policy: boolean): ConflistOptions {
  const { cniConfDir, cniBinDir, cniDataDir, logFile } = opts;
  return {
    cniConfDir,
    cniBinDir,
    cniDataDir,
    logFile,
    ...(policy ? { agentSocket: opts.agentSocket } : {}),
  };
}

/** Reports of steps; a step that threw, or did not run, has none. */
interface RunReports {
  readonly plugin?: PluginReport;
  readonly forwarding?: ForwardingReport;
  readonly table?: TableReport;
  readonly routes?: RoutesReport;
}

/**
 * A reconciler for node `opts.nodeName`, reporting into `status` (read by /healthz and
 * /metrics).
 *
 * @example
 * const sync = createNodeSync(opts, status, log);
 * await sync.run({ nodes }, { full: true, nodesChanged: true }); // true
 */
export function createNodeSync(
  opts: AgentOptions,
  status: AgentStatus,
  log: Logger,
  steps: NodeSteps = nodeSteps(opts, status.policyEnabled, log),
): NodeSync {
  let initialDone = false;
  let missingSelfLogged = false;
  let clusterMemo: { nodes: ReadonlyMap<string, NodeInfo>; cidrs: string[] } | undefined;

  /** The cluster CIDRs of a node list, computed once per list (a policy event reuses them). */
  function clusterOf(nodes: ReadonlyMap<string, NodeInfo>): string[] {
    if (clusterMemo?.nodes !== nodes) {
      clusterMemo = { nodes, cidrs: clusterCidrs(opts.clusterCidrs, nodes.values()) };
    }
    return clusterMemo.cidrs;
  }

  /** This node, warned about once while it is missing. */
  function ownNode(nodes: ReadonlyMap<string, NodeInfo>): NodeInfo | undefined {
    const own = nodes.get(opts.nodeName);
    if (!own && !missingSelfLogged) {
      log.warn("this node is not in the node list yet", { node: opts.nodeName });
    }
    missingSelfLogged = !own;
    return own;
  }

  return {
    async run(state, runOpts) {
      const started = performance.now();
      const { nodes } = state;
      const full = runOpts.full || !initialDone;
      const own = ownNode(nodes);
      const cluster = clusterOf(nodes);
      if (!own) status.lastError = missingSelf(opts.nodeName);
      // Each step's report goes into the status as soon as the step is done, its failure too:
      // /healthz tells what went wrong while the rest of the run goes on.
      const runner = stepRunner(log, (message) => {
        status.errors++;
        status.lastError = message;
      });
      const { step } = runner;
      record(status, { plugin: await step("install the plugin", () => steps.plugin.run(full)) });
      if (own) await step("write the conflist", () => steps.conflist.run(own, full));
      record(status, {
        forwarding: await step("enable forwarding", () => steps.forwarding.run(own)),
      });
      const table = await step(
        "sync the nftables table",
        () => steps.table.run({ state, own, cluster, full }),
      );
      // A refused transaction: the kernel keeps rules for an older state than the listed one.
      const refused = status.policyEnabled ? { changed: false, policySynced: false } : undefined;
      record(status, { table: table ?? refused });
      await step(
        "sync the iptables forward chain",
        () => steps.forwardChain.run(cluster, own, full),
      );
      // Routes to every peer (host-gw or VXLAN), the VXLAN device, its neighbours and FDB.
      if (full || runOpts.nodesChanged) {
        record(status, { routes: await step("reconcile routes", () => steps.routes.run(nodes)) });
      }
      const ok = finish(status, runner.failures, own !== undefined, opts.nodeName);
      status.nodesKnown = nodes.size;
      status.reconciles++;
      status.lastReconcileSeconds = (performance.now() - started) / 1000;
      if (ok && !initialDone) {
        log.info("initial sync done", {
          nodes: nodes.size,
          routes: status.routesProgrammed,
          msSinceStart: Math.round(performance.now()),
        });
      }
      initialDone ||= ok;
      return ok;
    },
    explain: (q) => steps.table.explain(q),
    drops: () => steps.table.drops(),
  };
}

/** What steps found, into the status: the one place that turns reports into it. */
function record(status: AgentStatus, r: RunReports): void {
  if (r.plugin) status.pluginRuns = r.plugin.runs;
  if (r.forwarding?.brNetfilter !== undefined) status.brNetfilter = r.forwarding.brNetfilter;
  const t = r.table;
  if (t?.gauges) {
    status.policies = t.gauges.policies;
    status.policyErrors = t.gauges.errors;
    status.policyTargets = t.gauges.targets;
    status.policyRules = t.gauges.rules;
    status.clusterPoliciesAdmin = t.gauges.clusterPolicies.Admin;
    status.clusterPoliciesBaseline = t.gauges.clusterPolicies.Baseline;
    status.clusterPolicyErrors = t.gauges.clusterErrors;
  }
  if (t?.changed) status.nftChanges++;
  if (t?.policySynced !== undefined) status.policySynced = t.policySynced;
  if (t?.policySeconds !== undefined) status.lastPolicySyncSeconds = t.policySeconds;
  if (r.routes) {
    status.routeChanges += r.routes.changes;
    status.routesProgrammed = r.routes.routes;
    status.routesHostGw = r.routes.hostGw;
    status.routesVxlan = r.routes.vxlan;
    status.unreachable = [...r.routes.unreachable];
  }
}

/**
 * Whether the run did its job, into the status with why not: every step succeeded, this node
 * is known, every peer is reachable (DESIGN.md "Backends") and, with NetworkPolicy, the policy
 * sources were listed and enforced.
 */
function finish(
  status: AgentStatus,
  failures: readonly string[],
  selfKnown: boolean,
  nodeName: string,
): boolean {
  const waiting = status.policyEnabled && !status.policySynced;
  const ok = selfKnown && failures.length === 0 && status.unreachable.length === 0 && !waiting;
  status.synced = ok;
  if (ok) {
    status.lastSyncTime = Date.now() / 1000;
    status.lastError = "";
  } else if (failures.length === 0) {
    // (After a failure, lastError is that failure already.)
    status.lastError = !selfKnown
      ? missingSelf(nodeName)
      : waiting
      ? "Waiting for pods, namespaces and NetworkPolicies to be listed"
      : `${status.unreachable.length} peer podCIDR(s) unreachable, first: ${status.unreachable[0]}`;
  }
  return ok;
}

function missingSelf(nodeName: string): string {
  return `Node ${nodeName} is not in the node list (or has no podCIDR/address)`;
}
