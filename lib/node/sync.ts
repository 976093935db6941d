// One reconcile of this node's datapath from the cluster state: plugin and conflist, forwarding,
// the agent's nftables table (masquerade, NetworkPolicy), the iptables forward chain, routes.
// Level-triggered: it compares with what the kernel and the disk hold (or, for the nftables table,
// with what it last applied) and changes only the difference, so running it twice changes
// nothing the second time.
import { join } from "node:path";
import type { Family } from "../ip/cidr.ts";
import { deleteChains, ensureChains } from "../net/iptables.ts";
import { BRIDGE_NF_CALL, ensureSysctl, IPV4_FORWARD, IPV6_FORWARD } from "../net/sysctl.ts";
import { compilePolicies, type PolicyState } from "../policy/compile.ts";
import { explainFlow } from "../policy/explain.ts";
import { DROP_COUNTERS, policyObjects } from "../policy/nft_rules.ts";
import type { Explanation, FlowQuery } from "../policy/plan.ts";
import { createDatapath } from "./datapath.ts";
import { clusterCidrs, CONFLIST_NAME, familiesOf, renderConflist } from "./conflist.ts";
import type { AgentStatus } from "./health.ts";
import {
  defaultPluginSource,
  ensureFileContent,
  fileExists,
  installPlugin,
  PLUGIN_NAME,
  pluginProblem,
} from "./install.ts";
import type { Logger } from "../log/logger.ts";
import { forwardChain, LEGACY_CHAINS } from "./masq.ts";
import type { NodeInfo } from "../kube/node.ts";
import { createTableSync } from "../nft/sync.ts";
import { desiredTable } from "./desired_table.ts";
import type { AgentOptions } from "./options.ts";
import { stepRunner } from "./steps.ts";

/** Rules unchanged in our memory are still re-checked against the kernel this often. */
const RULES_RECHECK_MS = 60_000;

/** What the agent reconciles towards. */
export interface ClusterState {
  readonly nodes: ReadonlyMap<string, NodeInfo>;
  /**
   * Pods, namespaces and policies, once every one of them has been listed; undefined before
   * that, and always without `--network-policy` or in static mode.
   */
  readonly policy?: Omit<PolicyState, "nodes">;
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
  /** Answers `explain` from the state of the last run. */
  explain(q: FlowQuery): Explanation;
  /** NetworkPolicy drop counters by direction. */
  drops(): Promise<Record<string, number>>;
}

/** A reconciler for the agent described by `opts`, reporting into `status`. */
export function createNodeSync(opts: AgentOptions, status: AgentStatus, log: Logger): NodeSync {
  const pluginSrc = opts.pluginSrc ?? defaultPluginSource();
  const pluginDst = join(opts.cniBinDir, PLUGIN_NAME);
  const conflistPath = join(opts.cniConfDir, CONFLIST_NAME);
  let pluginInstalled = false;
  let pluginCheckedAt = 0;
  let mtu: number | undefined;
  let ownKey = "";
  const rulesApplied = new Map<Family, string>();
  let rulesCheckedAt = 0;
  const datapath = createDatapath(opts, status, log);
  let missingSelfLogged = false;
  let initialDone = false;
  const tables = createTableSync();
  let tableCheckedAt = 0;
  let legacyRemoved = false;
  let brNetfilterProblem = "";
  let policyWaitLogged = false;
  let reportedPolicyErrors = new Set<string>();
  let lastPolicy: PolicyState | undefined;
  let clusterMemo: { nodes: ReadonlyMap<string, NodeInfo>; cidrs: string[] } | undefined;

  async function ensurePlugin(full: boolean): Promise<void> {
    const recheck = full && Date.now() - pluginCheckedAt >= RULES_RECHECK_MS;
    if (pluginInstalled && status.pluginRuns && !recheck) return;
    const done = await installPlugin(pluginSrc, opts.cniBinDir);
    if (done.runtime?.copied) {
      log.info("plugin runtime installed", { src: pluginSrc, dst: done.runtime.path });
    }
    if (done.copied) log.info("plugin installed", { src: pluginSrc, dst: pluginDst });
    pluginInstalled = true;
    // Run it as a runtime would: a plugin that cannot start breaks every pod on the node. Again
    // after every change, while it fails, and on the periodic re-check.
    if (!done.copied && !done.runtime?.copied && status.pluginRuns && !recheck) return;
    pluginCheckedAt = Date.now();
    const problem = await pluginProblem(pluginDst);
    if (problem === undefined) {
      if (!status.pluginRuns) log.info("installed plugin runs", { path: pluginDst });
      status.pluginRuns = true;
      return;
    }
    status.pluginRuns = false;
    throw new Error(`The installed plugin does not run: ${problem}`);
  }

  async function ensureConflist(own: NodeInfo, full: boolean): Promise<void> {
    const key = own.podCIDRs.join(",");
    // The underlay's MTU, less the VXLAN overhead unless every peer is host-gw (datapath.ts).
    mtu = datapath.mtu(own, mtu === undefined || full || key !== ownKey);
    ownKey = key;
    const text = renderConflist({
      podCIDRs: own.podCIDRs,
      dataDir: opts.cniDataDir,
      logFile: opts.logFile,
      mtu,
      portmap: await fileExists(join(opts.cniBinDir, "portmap")),
    });
    if (await ensureFileContent(conflistPath, text)) {
      log.info("conflist written", { path: conflistPath, podCIDRs: own.podCIDRs, mtu });
    }
  }

  async function ensureForwarding(own: NodeInfo | undefined): Promise<void> {
    if (await ensureSysctl(IPV4_FORWARD, "1")) {
      log.info("sysctl set", { key: IPV4_FORWARD, value: "1" });
    }
    if (own && familiesOf(own.podCIDRs).includes(6) && await ensureSysctl(IPV6_FORWARD, "1")) {
      log.info("sysctl set", { key: IPV6_FORWARD, value: "1" });
    }
    if (status.policyEnabled) await ensureBridgeNetfilter();
  }

  /** Same-node pod traffic is bridged: without br_netfilter it never meets the policy rules. */
  async function ensureBridgeNetfilter(): Promise<void> {
    let problem = "";
    for (const key of BRIDGE_NF_CALL) {
      try {
        if (await ensureSysctl(key, "1")) log.info("sysctl set", { key, value: "1" });
      } catch (err) {
        problem = err instanceof Deno.errors.NotFound
          ? "br_netfilter is not loaded (no /proc/sys/net/bridge): traffic between pods of " +
            "one node is not policed; load it on the host (modprobe br_netfilter)"
          : `Cannot set ${key}: ${(err as Error).message}`;
        break;
      }
    }
    status.brNetfilter = problem === "";
    if (problem && problem !== brNetfilterProblem) {
      log.error("NetworkPolicy is incomplete", { problem });
    }
    brNetfilterProblem = problem;
    if (problem) throw new Error(problem);
  }

  /** The cluster CIDRs of a node list, computed once per list (a policy event reuses them). */
  function clusterOf(nodes: ReadonlyMap<string, NodeInfo>): string[] {
    if (clusterMemo?.nodes !== nodes) {
      clusterMemo = { nodes, cidrs: clusterCidrs(opts.clusterCidrs, nodes.values()) };
    }
    return clusterMemo.cidrs;
  }

  async function ensureRules(
    nodes: ReadonlyMap<string, NodeInfo>,
    own: NodeInfo | undefined,
    full: boolean,
  ) {
    const cluster = clusterOf(nodes);
    const pods = (own?.podCIDRs ?? []).filter((c) => familiesOf([c]).length > 0);
    const recheck = full && Date.now() - rulesCheckedAt >= RULES_RECHECK_MS;
    if (recheck) rulesCheckedAt = Date.now();
    for (const family of familiesOf([...pods, ...cluster])) {
      const chains = [forwardChain(family, { clusterCidrs: cluster, podCIDRs: pods })];
      const key = JSON.stringify(chains);
      if (!recheck && rulesApplied.get(family) === key) continue;
      rulesApplied.delete(family);
      for (const chain of await ensureChains(family, chains)) {
        const rules = chains.find((c) => `${c.table}/${c.chain}` === chain)?.rules.length;
        log.info("iptables chain synced", { family, chain, rules });
      }
      rulesApplied.set(family, key);
    }
  }

  /** The nftables table: masquerade, and NetworkPolicy for this node's pods when enforced. */
  async function syncTable(state: ClusterState, own: NodeInfo | undefined, full: boolean) {
    if (!own) return; // no podCIDR known: nothing to masquerade, and no pod of ours to police
    const started = performance.now();
    let planned = started;
    let policy;
    if (status.policyEnabled) {
      if (!state.policy) {
        // Enforcing half-listed state could open an isolated pod: keep the kernel's table. Not an
        // error (every start passes through it): the run is simply not done yet.
        status.policySynced = false;
        if (!policyWaitLogged) log.info("waiting for pods, namespaces and policies to be listed");
        policyWaitLogged = true;
        return;
      }
      lastPolicy = { ...state.policy, nodes: addressesOf(state.nodes) };
      const plan = compilePolicies(lastPolicy, { node: opts.nodeName });
      planned = performance.now();
      policy = policyObjects(plan);
      reportPolicyErrors(plan.errors);
      status.policies = state.policy.policies.size;
      status.policyErrors = plan.errors.length;
      status.policyTargets = plan.targets.length;
      status.policyRules = policy.ruleCount;
    }
    const table = desiredTable({
      clusterCidrs: clusterOf(state.nodes),
      noMasqueradeCidrs: opts.noMasqueradeCidrs,
      podCIDRs: own.podCIDRs,
      policy,
    });
    const legacyRecheck = full && Date.now() - tableCheckedAt >= RULES_RECHECK_MS;
    if (legacyRecheck) tableCheckedAt = Date.now();
    const compiled = performance.now();
    const done = await tables.apply(table, { verify: full });
    if (done.differences.length > 0) {
      log.warn("nftables table differs from the one applied: loading it whole", {
        table: table.name,
        differences: done.differences,
      });
    }
    if (done.countersLost !== undefined) {
      log.warn("drop counters lost: they could not be read before the table was reloaded", {
        table: table.name,
        error: done.countersLost,
      });
    }
    if (done.changed) {
      status.nftChanges++;
      log.info("nftables table synced", {
        table: table.name,
        whole: done.whole,
        policyTargets: policy ? status.policyTargets : undefined,
        ms: Math.round(performance.now() - started),
        // Where it went: compiling the policies, turning them into the table, nft applying it.
        stepsMs: {
          plan: Math.round(planned - started),
          rules: Math.round(compiled - planned),
          nft: Math.round(performance.now() - compiled),
        },
      });
    }
    if (status.policyEnabled) {
      status.policySynced = true;
      status.lastPolicySyncSeconds = (performance.now() - started) / 1000;
    }
    // Masquerade lived in iptables before: remove that chain only now that the table NATs.
    if (!legacyRemoved || legacyRecheck) {
      for (const family of familiesOf(own.podCIDRs)) {
        for (const chain of await deleteChains(family, LEGACY_CHAINS)) {
          log.info("legacy iptables chain removed", { family, chain });
        }
      }
      legacyRemoved = true;
    }
  }

  function reportPolicyErrors(errors: readonly { policy: string; error: string }[]) {
    const now = new Set<string>();
    for (const e of errors) {
      const key = `${e.policy}\n${e.error}`;
      now.add(key);
      if (!reportedPolicyErrors.has(key)) {
        log.error(
          "NetworkPolicy cannot be enforced exactly: its pods are isolated, nothing it " +
            "allows is allowed",
          { policy: e.policy, error: e.error },
        );
      }
    }
    reportedPolicyErrors = now;
  }

  return {
    async run(state, runOpts) {
      const nodes = state.nodes;
      let full = runOpts.full;
      const started = performance.now();
      let selfKnown = true;
      const steps = stepRunner(log, (message) => {
        status.errors++;
        status.lastError = message;
      });
      const { step } = steps;
      full ||= !initialDone;
      const own = nodes.get(opts.nodeName);
      if (!own) {
        selfKnown = false;
        status.lastError =
          `Node ${opts.nodeName} is not in the node list (or has no podCIDR/address)`;
        if (!missingSelfLogged) {
          log.warn("this node is not in the node list yet", { node: opts.nodeName });
        }
        missingSelfLogged = true;
      } else missingSelfLogged = false;
      await step("install the plugin", () => ensurePlugin(full));
      if (own) await step("write the conflist", () => ensureConflist(own, full));
      await step("enable forwarding", () => ensureForwarding(own));
      await step("sync the nftables table", () => syncTable(state, own, full));
      await step("sync the iptables forward chain", () => ensureRules(nodes, own, full));
      // Routes to every peer (host-gw or VXLAN), the VXLAN device, its neighbours and FDB.
      if (full || runOpts.nodesChanged) {
        await step("reconcile routes", () => datapath.reconcile(nodes));
      }
      status.nodesKnown = nodes.size;
      status.reconciles++;
      status.lastReconcileSeconds = (performance.now() - started) / 1000;
      // A peer no backend can reach is a sync that did not do its job (DESIGN.md "Backends"), and
      // so is one that could not enforce NetworkPolicy yet.
      const waiting = status.policyEnabled && !status.policySynced;
      const ok = selfKnown && steps.ok && status.unreachable.length === 0 && !waiting;
      if (selfKnown && steps.ok && !ok) {
        status.lastError = waiting
          ? "Waiting for pods, namespaces and NetworkPolicies to be listed"
          : `${status.unreachable.length} peer podCIDR(s) unreachable, first: ${
            status.unreachable[0]
          }`;
      }
      status.synced = ok;
      if (ok) {
        status.lastSyncTime = Date.now() / 1000;
        status.lastError = "";
        if (!initialDone) {
          log.info("initial sync done", {
            nodes: nodes.size,
            routes: status.routesProgrammed,
            msSinceStart: Math.round(performance.now()),
          });
        }
        initialDone = true;
      }
      return ok;
    },
    explain(q) {
      if (!lastPolicy) throw new Error("NetworkPolicy state is not synced yet");
      return explainFlow(lastPolicy, q);
    },
    async drops() {
      const counters = await tables.counters();
      const out: Record<string, number> = {};
      for (const [direction, name] of Object.entries(DROP_COUNTERS)) {
        out[direction] = counters.get(name) ?? 0;
      }
      return out;
    },
  };
}

const addressMemo = new WeakMap<ReadonlyMap<string, NodeInfo>, Map<string, readonly string[]>>();

/** Node name -> its addresses (what explain needs to know a pod's own node), once per list. */
function addressesOf(nodes: ReadonlyMap<string, NodeInfo>): Map<string, readonly string[]> {
  let m = addressMemo.get(nodes);
  if (!m) addressMemo.set(nodes, m = new Map([...nodes.values()].map((n) => [n.name, n.ips])));
  return m;
}
